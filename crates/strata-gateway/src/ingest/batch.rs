//! A request's records grouped into one batch per partition, metric samples into one batch
//! record per source that names its series by registry number, with the definitions of the
//! series the request is the first to use.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_log::EncodedRecords;
use strata_model::{RecordError, SeriesDefs, SeriesRegistry, TenantId, partition_for};

use crate::budget::Budget;

/// The bytes of a stored record's frame besides its fields: length, timestamp, and the lengths
/// of tenant, source, headers and payload (`EncodedRecords::push`).
const RECORD_FRAME_BYTES: usize = 4 + 8 + 2 + 2 + 2 + 4;

/// The bytes of a header besides its name's and value's: their lengths.
const RECORD_HEADER_BYTES: usize = 2 + 4;

/// The records of one partition, with the request indexes they came from.
pub(crate) struct PartitionBatch {
    pub records: EncodedRecords,
    pub indexes: Vec<usize>,
}

/// Metric samples of one request grouped into one batch record per source (`MetricBatch`).
pub(crate) struct MetricBatches {
    by_source: BTreeMap<String, (strata_model::MetricBatchBuilder, Vec<usize>)>,
    series: Arc<std::sync::Mutex<crate::series::TenantSeries>>,
    registry: Arc<SeriesRegistry>,
    tenant: TenantId,
    defs: SeriesDefs,
    now_s: u32,
}

impl MetricBatches {
    pub fn new(gw: &crate::Gateway, tenant: &TenantId) -> MetricBatches {
        MetricBatches {
            by_source: BTreeMap::new(),
            series: gw.series.tenant(tenant.as_str()),
            registry: gw.registry.clone(),
            tenant: tenant.clone(),
            defs: SeriesDefs::default(),
            now_s: crate::series::now_s(),
        }
    }

    /// The registry numbers of admitted series, given as (fingerprint, name, sorted labels
    /// without the name), in order; the definitions the request must write go with its batches.
    pub fn assign<'a>(
        &mut self,
        series: impl Iterator<Item = (u64, &'a str, &'a [(&'a str, &'a str)])> + Clone,
    ) -> Vec<u64> {
        let mut ids = Vec::new();
        self.registry.assign(self.tenant.as_str(), series, &mut ids, &mut self.defs);
        ids
    }

    /// Adds the samples of one series, validated, with the request indexes they came from; labels
    /// are sorted and without `__name__`. Refused if the series is new and the tenant is at its
    /// limit of active series.
    pub fn add(
        &mut self,
        source_id: &str,
        name: &str,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
        indexes: impl Iterator<Item = usize>,
    ) -> Result<(), RecordError> {
        let fp = strata_model::series_fingerprint(name, labels.iter().copied());
        let mut series = self.series.lock().expect("tenant series lock");
        if !series.admit(fp, self.now_s) {
            return Err(RecordError::SeriesLimit(series.max()));
        }
        drop(series);
        let id = self.assign(std::iter::once((fp, name, labels)))[0];
        self.add_admitted(source_id, id, samples, indexes);
        Ok(())
    }

    /// Admits series by fingerprint against the tenant's active-series limit, in one lock.
    pub fn admit(&self, fingerprints: impl Iterator<Item = u64>) -> Vec<Result<(), RecordError>> {
        let mut series = self.series.lock().expect("tenant series lock");
        let refused = RecordError::SeriesLimit(series.max());
        fingerprints.map(|fp| if series.admit(fp, self.now_s) { Ok(()) } else { Err(refused.clone()) }).collect()
    }

    /// Adds the samples of a series that `admit` took and `assign` numbered, as `add` does.
    pub fn add_admitted(
        &mut self,
        source_id: &str,
        id: u64,
        samples: &[(i64, f64)],
        indexes: impl Iterator<Item = usize>,
    ) {
        let entry = match self.by_source.get_mut(source_id) {
            Some(e) => e,
            None => self
                .by_source
                .entry(source_id.to_string())
                .or_insert_with(|| (strata_model::MetricBatchBuilder::with_refs(), Vec::new())),
        };
        entry.0.add_series_ref(id, samples);
        entry.1.extend(indexes);
    }

    /// One record per source into `out`, and the series definitions.
    pub fn finish(self, out: &mut Decoded, tenant: &TenantId, partitions: u32) {
        out.series_defs = self.defs;
        for (source_id, (batch, indexes)) in self.by_source {
            let ts_ns = batch.max_ts_ms().saturating_mul(1_000_000);
            out.push_many(indexes, tenant, &source_id, ts_ns, &batch.finish(), partitions);
        }
    }
}

/// The records a body holds that cannot be taken: every one counted by reason, and the first
/// `keep` by index kept with their errors for the answer. A body of millions of bad records
/// held an error for each (72 bytes for a record of two) before the answer listed 100 of them.
pub(crate) struct Rejected {
    first: Vec<(usize, RecordError)>,
    keep: usize,
    count: usize,
    reasons: BTreeMap<&'static str, u64>,
}

impl Rejected {
    fn new() -> Rejected {
        Rejected { first: Vec::new(), keep: usize::MAX, count: 0, reasons: BTreeMap::new() }
    }

    pub fn push(&mut self, (index, e): (usize, RecordError)) {
        self.count += 1;
        *self.reasons.entry(e.reason()).or_default() += 1;
        self.first.push((index, e));
        // Cut back to the first `keep` whenever twice that are held: sorting is paid once per
        // `keep` records, and memory stays within twice `keep`.
        if self.first.len() >= self.keep.saturating_mul(2).max(1) {
            self.first.sort_by_key(|(i, _)| *i);
            self.first.truncate(self.keep);
        }
    }

    pub fn extend(&mut self, errors: impl IntoIterator<Item = (usize, RecordError)>) {
        for e in errors {
            self.push(e);
        }
    }

    /// How many records were refused.
    pub fn len(&self) -> usize {
        self.count
    }

    /// How many were refused for each reason (`RecordError::reason`).
    pub fn reasons(&self) -> &BTreeMap<&'static str, u64> {
        &self.reasons
    }

    /// The first `keep` by index, in order.
    pub fn first(&mut self) -> &[(usize, RecordError)] {
        self.first.sort_by_key(|(i, _)| *i);
        self.first.truncate(self.keep);
        &self.first
    }

    /// The kept ones, in the order they were refused (all of them unless `keep` was set).
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &(usize, RecordError)> {
        self.first.iter()
    }
}

/// A decoded and validated body, ready to append.
pub(crate) struct Decoded {
    pub batches: BTreeMap<u32, PartitionBatch>,
    pub total: usize,
    pub errors: Rejected,
    /// Series definitions to make durable before the batches are appended.
    pub series_defs: SeriesDefs,
    /// The request's `Idempotency-Key`, written as a header of each partition's first record.
    key: Option<String>,
    /// Where a JSON body's metric points go, one batch record per source.
    pub metrics: Option<MetricBatches>,
    /// Why the whole body was dropped, answered with 202: the samples of an HA replica that is
    /// not its cluster's elected one (see `ha.rs`).
    pub dropped: Option<String>,
    /// What the records and the decoder's structures take from the memory budget. Once it
    /// refuses, no more records are kept and the request is answered with the refusal.
    pub budget: Budget,
}

impl Decoded {
    pub fn new(key: Option<String>) -> Decoded {
        Decoded {
            batches: BTreeMap::new(),
            total: 0,
            errors: Rejected::new(),
            series_defs: SeriesDefs::default(),
            key,
            metrics: None,
            dropped: None,
            budget: Budget::counting(usize::MAX),
        }
    }

    /// The same, with what it builds taken from `budget`.
    pub fn with_budget(mut self, budget: Budget) -> Decoded {
        self.budget = budget;
        self
    }

    /// The same, keeping only the first `keep` rejected records' errors (all are counted).
    pub fn keeping_errors(mut self, keep: usize) -> Decoded {
        self.errors.keep = keep;
        self
    }

    /// The same, with metric batches for a body of metric points.
    pub fn with_metrics(mut self, metrics: Option<MetricBatches>) -> Decoded {
        self.metrics = metrics;
        self
    }

    /// Adds one valid record's stored form to its partition's batch.
    pub fn push(
        &mut self,
        index: usize,
        tenant: &TenantId,
        source_id: &str,
        timestamp_ns: i64,
        payload: &[u8],
        partitions: u32,
    ) {
        self.push_many(std::iter::once(index), tenant, source_id, timestamp_ns, payload, partitions)
    }

    /// Adds one valid log line in its stored form, serialised in `payload` (a buffer the caller
    /// keeps across lines).
    pub fn push_line(
        &mut self,
        index: usize,
        tenant: &TenantId,
        line: &strata_model::LogLine,
        partitions: u32,
        payload: &mut Vec<u8>,
    ) {
        payload.clear();
        line.write_stored(payload);
        self.push(index, tenant, &line.source_id, line.timestamp_ns, payload, partitions);
    }

    /// Adds one record that carries the items `indexes` of the request (a metric batch).
    pub fn push_many(
        &mut self,
        indexes: impl IntoIterator<Item = usize>,
        tenant: &TenantId,
        source_id: &str,
        timestamp_ns: i64,
        payload: &[u8],
        partitions: u32,
    ) {
        let p = partition_for(tenant.as_str(), source_id, partitions);
        let batch = self
            .batches
            .entry(p)
            .or_insert_with(|| PartitionBatch { records: EncodedRecords::new(), indexes: Vec::new() });
        let key_header;
        let headers: &[(&str, &[u8])] = match &self.key {
            Some(key) if batch.records.is_empty() => {
                key_header = [(strata_model::headers::IDEMPOTENCY_KEY, key.as_bytes())];
                &key_header
            }
            _ => &[],
        };
        // The record as its batch holds it, twice over for the slack of the growing buffer (and
        // for its compressed copy), taken before it is written.
        let headers_len: usize = headers.iter().map(|(k, v)| RECORD_HEADER_BYTES + k.len() + v.len()).sum();
        let record_bytes = RECORD_FRAME_BYTES + tenant.as_str().len() + source_id.len() + headers_len + payload.len();
        if self.budget.spend(record_bytes.saturating_mul(2)).is_err() {
            return;
        }
        match batch.records.push(timestamp_ns, tenant.as_str(), source_id, headers, payload) {
            Ok(()) => {
                let before = batch.indexes.len();
                batch.indexes.extend(indexes);
                let _ = self.budget.spend((batch.indexes.len() - before) * 2 * std::mem::size_of::<usize>());
            }
            Err(_) => {
                let e = RecordError::TooLong { field: "record".into(), len: payload.len(), max: u32::MAX as usize };
                self.errors.extend(indexes.into_iter().map(|i| (i, e.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_records_are_all_counted_and_the_first_by_index_kept() {
        let mut r = Rejected::new();
        r.keep = 10;
        // Refused out of order, as metric batches and remote write refuse them.
        let order: Vec<usize> = (0..1000).map(|i| (i * 379) % 1000).collect();
        for &i in &order {
            let e = if i % 3 == 0 { RecordError::Json("x".into()) } else { RecordError::Missing("source_id") };
            r.push((i, e));
            assert!(r.first.len() < 20, "at most twice `keep` held");
        }
        assert_eq!(r.len(), 1000);
        assert_eq!(r.reasons().values().sum::<u64>(), 1000);
        assert_eq!(r.reasons()[RecordError::Json(String::new()).reason()], 334);
        let first: Vec<usize> = r.first().iter().map(|(i, _)| *i).collect();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
    }
}
