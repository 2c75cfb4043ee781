//! Prometheus remote write 1.0: `POST /api/v1/write`, a snappy-compressed (block format) protobuf
//! `WriteRequest`. Every sample becomes a metric point in the `metrics` topic, like the native path.
//! Answers follow the protocol: 204 when all samples were stored; 400 when some or all were bad
//! (the good ones are stored; a sender drops a 400 batch rather than retrying it); 429 and 503 with
//! `Retry-After` when the sender should retry.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_model::{Kind, RecordError, check_timestamp, validate_series};

use crate::ha::Verdict;
use crate::ingest::{Decoded, MetricBatches, ingest_decoded};
use crate::{ApiError, Gateway};

/// The remote write 1.0 messages, as in Prometheus' `prompb/types.proto` and `remote.proto`.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Unix milliseconds.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// A valid series of a request: ranges of the shared label, sample and index vectors.
struct Valid<'a> {
    name: &'a str,
    fingerprint: u64,
    labels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
    taken: std::ops::Range<usize>,
}

/// Decodes and validates a remote write body into per-partition batches.
fn decode(
    gw: &Gateway,
    raw: Vec<u8>,
    permit: &mut tokio::sync::OwnedSemaphorePermit,
    tenant: &strata_model::TenantId,
    partitions: u32,
    mut out: Decoded,
) -> Result<Decoded, ApiError> {
    let body = crate::body::snappy_block(&raw, gw.cfg.decompressed_bytes_max, "body", |n| gw.grow(permit, n))?;
    drop(raw);
    let req = crate::wire::parse(&body, &mut out.budget).map_err(|e| match out.budget.refused() {
        Some(refused) => refused.clone(),
        None => ApiError::bad_request(format!("body is not a remote write WriteRequest: {e}")),
    })?;
    let now = now_ns();
    let replica_label = gw.ha.replica_label();
    if let Some(replica_label) = replica_label
        && let Some((cluster, replica)) = ha_labels(&req, replica_label, gw.ha.cluster_label())
    {
        match gw.ha.check(tenant.as_str(), cluster, replica, now / 1_000_000) {
            Verdict::Accept => {}
            Verdict::NotElected { elected } => {
                let samples = req.samples.len() + req.histograms.iter().sum::<usize>();
                metrics::counter!("strata_ingest_ha_dropped_samples_total", "tenant" => tenant.to_string())
                    .increment(samples as u64);
                out.dropped = Some(format!(
                    "{samples} samples of replica {replica:?} of cluster {cluster:?} dropped: {elected:?} is the elected one"
                ));
                return Ok(out);
            }
            Verdict::TooManyClusters { max } => {
                return Err(ApiError::bad_request(format!(
                    "tenant {tenant} has {max} HA clusters sending already (ingest.ha.clusters_per_tenant_max); \
                     cluster {cluster:?} is refused until one of them is silent"
                )));
            }
        }
    }
    let limits = &gw.cfg.record;
    let mut batches = MetricBatches::new(gw, tenant);
    // First every series is validated and fingerprinted, then the request's series are admitted
    // against the active-series limit together, then batched. Labels (sorted, without the name),
    // samples and request indexes of valid series go into shared vectors.
    // What the vectors below and the metric batches take, before they are allocated.
    out.budget.spend(
        req.series.len().saturating_mul(std::mem::size_of::<Valid>() + std::mem::size_of::<&Valid>())
            + req.labels.len().saturating_mul(std::mem::size_of::<(&str, &str)>())
            + req.samples.len().saturating_mul(std::mem::size_of::<(i64, f64)>() * 2 + std::mem::size_of::<usize>()),
    )?;
    let mut valid: Vec<Valid> = Vec::with_capacity(req.series.len());
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(req.labels.len());
    let mut samples = Vec::with_capacity(req.samples.len());
    let mut taken = Vec::with_capacity(req.samples.len());
    let mut index = 0usize;
    for ((label_range, sample_range), &histograms) in req.series.iter().zip(&req.histograms) {
        // Native histogram samples are refused by name: stored nowhere, they must not vanish.
        for _ in 0..histograms {
            out.errors.push((index, RecordError::Unsupported("native histogram samples")));
            out.total += 1;
            index += 1;
        }
        let series_samples = &req.samples[sample_range.clone()];
        let first = index;
        index += series_samples.len();
        out.total += series_samples.len();
        let mut name = None;
        let mut repeated_name = false;
        let l0 = labels.len();
        for &(n, v) in &req.labels[label_range.clone()] {
            if Some(n) == replica_label {
                // Stored as one sender's series (see `ha.rs`).
                continue;
            }
            if n == "__name__" {
                repeated_name |= name.replace(v).is_some();
            } else {
                labels.push((n, v));
            }
        }
        let checked = match name {
            _ if repeated_name => Err(RecordError::DuplicateLabel("__name__".to_string())),
            None => Err(RecordError::Missing("__name__")),
            Some(n) => validate_series(n, &labels[l0..], limits).map(|()| n),
        };
        let name = match checked {
            Ok(n) => n,
            Err(e) => {
                labels.truncate(l0);
                out.errors.extend((first..index).map(|i| (i, e.clone())));
                continue;
            }
        };
        let (s0, t0) = (samples.len(), taken.len());
        for (i, &(ts, value)) in series_samples.iter().enumerate() {
            let checked = ts
                .checked_mul(1_000_000)
                .filter(|t| *t >= 0)
                .ok_or(RecordError::Timestamp(strata_model::TimestampError::Range(ts.to_string())))
                .and_then(|t| check_timestamp(t, now, limits));
            match checked {
                Ok(_) => {
                    samples.push((ts, value));
                    taken.push(first + i);
                }
                Err(e) => out.errors.push((first + i, e)),
            }
        }
        if samples.len() == s0 {
            labels.truncate(l0);
            continue;
        }
        let series_labels = &mut labels[l0..];
        series_labels.sort_unstable();
        let fingerprint = strata_model::series_fingerprint(name, series_labels.iter().copied());
        valid.push(Valid {
            name,
            fingerprint,
            labels: l0..labels.len(),
            samples: s0..samples.len(),
            taken: t0..taken.len(),
        });
    }
    let admitted = batches.admit(valid.iter().map(|v| v.fingerprint));
    let mut kept = Vec::with_capacity(valid.len());
    for (v, admitted) in valid.iter().zip(admitted) {
        match admitted {
            Ok(()) => kept.push(v),
            Err(e) => out.errors.extend(taken[v.taken.clone()].iter().map(|&i| (i, e.clone()))),
        }
    }
    let ids = batches.assign(kept.iter().map(|v| (v.fingerprint, v.name, &labels[v.labels.clone()])));
    for (v, id) in kept.iter().zip(ids) {
        let series_labels = &labels[v.labels.clone()];
        let source_id = series_labels.iter().find(|(k, _)| *k == "instance").map_or("", |(_, v)| *v);
        batches.add_admitted(source_id, id, &samples[v.samples.clone()], taken[v.taken.clone()].iter().copied());
    }
    batches.finish(&mut out, tenant, partitions);
    Ok(out)
}

/// The cluster and replica of an HA pair's request, from its first series: a Prometheus sender
/// puts its external labels on every series, so one series tells (as Mimir's tracker reads it).
/// Looking further would scan every label of every request that is not from a pair. The cluster
/// is "" when the series has no cluster label.
fn ha_labels<'a>(
    req: &crate::wire::Parsed<'a>,
    replica_label: &str,
    cluster_label: &str,
) -> Option<(&'a str, &'a str)> {
    let labels = &req.labels[req.series.first()?.0.clone()];
    let replica = labels.iter().find(|(n, _)| *n == replica_label)?.1;
    let cluster = labels.iter().find(|(n, _)| *n == cluster_label).map_or("", |(_, v)| *v);
    Some((cluster, replica))
}

/// `POST /api/v1/write`.
pub(crate) async fn write(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("snappy");
    let result = if !encoding.eq_ignore_ascii_case("snappy") {
        Err(ApiError::unsupported(format!("content encoding {encoding:?} is not supported; remote write uses snappy")))
    } else {
        ingest_decoded(&gw, Kind::Metrics, &headers, body, true, decode).await.map(|(status, resp, _)| (status, resp))
    };
    let response = match result {
        // Mimir's answer to a replica that is not elected: a success, so the sender moves on.
        Ok((StatusCode::ACCEPTED, _)) => {
            (StatusCode::ACCEPTED, "samples of a replica that is not its cluster's elected one are dropped\n")
                .into_response()
        }
        Ok((_, r)) if r.rejected == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok((_, r)) => {
            let first = r.errors.first().map(|e| e.error.as_str()).unwrap_or("");
            let msg = format!("{} of {} samples rejected; first: {first}", r.rejected, r.rejected + r.accepted);
            ApiError::bad_request(msg).into_response()
        }
        Err(e) => e.into_response(),
    };
    metrics::counter!("strata_ingest_requests_total", "kind" => "remote_write", "status" => response.status().as_str().to_string())
        .increment(1);
    metrics::histogram!("strata_ingest_request_seconds", "kind" => "remote_write")
        .record(started.elapsed().as_secs_f64());
    response
}
