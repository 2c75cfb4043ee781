//! OTLP metrics into Prometheus series, as Prometheus' own OTLP receiver names them:
//!
//! - names and label names with every character outside `[a-zA-Z0-9_:]` (labels: `[a-zA-Z0-9_]`)
//!   replaced by `_`; no unit suffix is added;
//! - labels: the resource's attributes (`service.name` → `service`, `service.instance.id` →
//!   `instance`), `otel_scope_name` and `otel_scope_version`, then the data point's attributes,
//!   which win over the resource's of the same name; the source is the `instance` label, else
//!   `host.name`, else the service;
//! - gauge and non-monotonic sum: the series as it is; monotonic sum: a counter named `<name>_total`;
//! - histogram: classic `<name>_bucket{le}` (cumulative), `<name>_sum`, `<name>_count`;
//! - summary: `<name>{quantile}`, `<name>_sum`, `<name>_count`;
//! - exponential histogram, approximated: its buckets merged to at most scale 0 (upper bounds that
//!   are powers of two, the same for every point whatever scale the sender chose) and written as a
//!   classic histogram: negative buckets, then the zero bucket (`le` = the zero threshold), then
//!   positive buckets, then `+Inf`;
//! - delta temporality (sums and histograms) is refused per data point: the store keeps
//!   cumulative series; configure the exporter for cumulative temporality;
//! - a data point flagged "no recorded value" is skipped.
//!
//! A data point is one item of the answer: refused if any of its series is.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
    metric::Data, number_data_point,
};
use strata_model::{Limits, RecordError, check_timestamp, validate_series};

use super::{any_to_string, attribute};
use crate::ingest::{Decoded, MetricBatches};

const NO_RECORDED_VALUE: u32 = 1;

/// The messages of a metrics request, for `decoded_bytes`: 256 bytes a data point (prost's
/// structure, and the samples and labels it becomes), 128 for any other message.
mod shape {
    use super::super::logs_wire::{KEY_VALUE, RESOURCE, SCOPE};
    use crate::wire::{LEAF, Shape};

    pub static REQUEST: Shape = Shape { bytes: 128, fields: &[(1, &RESOURCE_METRICS)] };
    static RESOURCE_METRICS: Shape = Shape { bytes: 128, fields: &[(1, &RESOURCE), (2, &SCOPE_METRICS)] };
    static SCOPE_METRICS: Shape = Shape { bytes: 128, fields: &[(1, &SCOPE), (2, &METRIC)] };
    static METRIC: Shape = Shape {
        bytes: 128,
        fields: &[(5, &POINTS), (7, &SUM), (9, &HISTOGRAM), (10, &EXPONENTIAL), (11, &SUMMARY), (12, &KEY_VALUE)],
    };
    /// A gauge, and a sum: their number data points.
    static POINTS: Shape = Shape { bytes: 128, fields: &[(1, &NUMBER_POINT)] };
    static SUM: Shape = Shape { bytes: 128, fields: &[(1, &NUMBER_POINT)] };
    static HISTOGRAM: Shape = Shape { bytes: 128, fields: &[(1, &HISTOGRAM_POINT)] };
    static EXPONENTIAL: Shape = Shape { bytes: 128, fields: &[(1, &EXPONENTIAL_POINT)] };
    static SUMMARY: Shape = Shape { bytes: 128, fields: &[(1, &SUMMARY_POINT)] };
    static NUMBER_POINT: Shape = Shape { bytes: 256, fields: &[(5, &EXEMPLAR), (7, &KEY_VALUE)] };
    static HISTOGRAM_POINT: Shape = Shape { bytes: 256, fields: &[(8, &EXEMPLAR), (9, &KEY_VALUE)] };
    static EXPONENTIAL_POINT: Shape =
        Shape { bytes: 256, fields: &[(1, &KEY_VALUE), (8, &LEAF), (9, &LEAF), (11, &EXEMPLAR)] };
    static SUMMARY_POINT: Shape = Shape { bytes: 256, fields: &[(6, &LEAF), (7, &KEY_VALUE)] };
    static EXEMPLAR: Shape = Shape { bytes: 128, fields: &[(7, &KEY_VALUE)] };
}

/// What decoding a protobuf metrics request may take in memory beyond its own bytes: see
/// `wire::decoded_bytes`.
pub(super) fn decoded_bytes(body: &[u8]) -> usize {
    crate::wire::decoded_bytes(body, &shape::REQUEST)
}

/// One series of a data point: its name suffix, an extra label (`le`, `quantile`), its value.
type Part = (&'static str, Option<(&'static str, String)>, f64);

pub(super) fn decode(
    request: ExportMetricsServiceRequest,
    batches: &mut MetricBatches,
    limits: &Limits,
    out: &mut Decoded,
) {
    let now = crate::ingest::now_ns();
    let mut index = 0usize;
    for resource_metrics in request.resource_metrics {
        let resource = resource_metrics.resource.map(|r| r.attributes).unwrap_or_default();
        let mut base = BTreeMap::new();
        for kv in &resource {
            let name = match kv.key.as_str() {
                "service.name" => "service".to_string(),
                "service.instance.id" => "instance".to_string(),
                key => label_name(key),
            };
            base.insert(name, kv.value.clone().map(any_to_string).unwrap_or_default());
        }
        let host = attribute(&resource, "host.name").map(str::to_string);
        for scope_metrics in resource_metrics.scope_metrics {
            let mut scoped = base.clone();
            if let Some(scope) = &scope_metrics.scope {
                if !scope.name.is_empty() {
                    scoped.insert("otel_scope_name".into(), scope.name.clone());
                }
                if !scope.version.is_empty() {
                    scoped.insert("otel_scope_version".into(), scope.version.clone());
                }
            }
            let source =
                scoped.get("instance").or(host.as_ref()).or(scoped.get("service")).cloned().unwrap_or_default();
            let mut point = Point { batches, out: &mut *out, scoped: &scoped, source: &source, limits, now };
            for metric in scope_metrics.metrics {
                let name = metric_name(&metric.name);
                let Some(data) = metric.data else { continue };
                match data {
                    Data::Gauge(g) => {
                        for p in g.data_points {
                            point.add(&mut index, &name, &p.attributes, p.time_unix_nano, p.flags, number(&p));
                        }
                    }
                    Data::Sum(s) => {
                        let delta = s.aggregation_temporality == AggregationTemporality::Delta as i32;
                        let name =
                            if s.is_monotonic && !name.ends_with("_total") { format!("{name}_total") } else { name };
                        for p in s.data_points {
                            let parts = if delta { Err(delta_refused()) } else { number(&p) };
                            point.add(&mut index, &name, &p.attributes, p.time_unix_nano, p.flags, parts);
                        }
                    }
                    Data::Histogram(h) => {
                        let delta = h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        for p in h.data_points {
                            let parts = if delta { Err(delta_refused()) } else { histogram(&p) };
                            point.add(&mut index, &name, &p.attributes, p.time_unix_nano, p.flags, parts);
                        }
                    }
                    Data::ExponentialHistogram(h) => {
                        let delta = h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        for p in h.data_points {
                            let parts = if delta { Err(delta_refused()) } else { Ok(exponential(&p)) };
                            point.add(&mut index, &name, &p.attributes, p.time_unix_nano, p.flags, parts);
                        }
                    }
                    Data::Summary(s) => {
                        for p in s.data_points {
                            point.add(&mut index, &name, &p.attributes, p.time_unix_nano, p.flags, Ok(summary(&p)));
                        }
                    }
                }
            }
        }
    }
}

fn delta_refused() -> RecordError {
    RecordError::Unsupported("delta temporality metrics (configure the exporter for cumulative temporality)")
}

/// What every data point of one scope shares while it is added.
struct Point<'a> {
    batches: &'a mut MetricBatches,
    out: &'a mut Decoded,
    scoped: &'a BTreeMap<String, String>,
    source: &'a str,
    limits: &'a Limits,
    now: i64,
}

impl Point<'_> {
    /// Adds the series of one data point as item `index`, or its error.
    fn add(
        &mut self,
        index: &mut usize,
        name: &str,
        attributes: &[KeyValue],
        time_unix_nano: u64,
        flags: u32,
        parts: Result<Vec<Part>, RecordError>,
    ) {
        let item = *index;
        *index += 1;
        self.out.total += 1;
        if flags & NO_RECORDED_VALUE != 0 {
            return;
        }
        if let Err(e) = self.try_add(item, name, attributes, time_unix_nano, parts) {
            self.out.errors.push((item, e));
        }
    }

    fn try_add(
        &mut self,
        item: usize,
        name: &str,
        attributes: &[KeyValue],
        time_unix_nano: u64,
        parts: Result<Vec<Part>, RecordError>,
    ) -> Result<(), RecordError> {
        let parts = parts?;
        let ts_ns = match time_unix_nano {
            0 => self.now,
            t => {
                let t = i64::try_from(t)
                    .map_err(|_| RecordError::Timestamp(strata_model::TimestampError::Range(t.to_string())))?;
                check_timestamp(t, self.now, self.limits)?
            }
        };
        let ts_ms = ts_ns / 1_000_000;
        let mut labels = self.scoped.clone();
        for kv in attributes {
            labels.insert(label_name(&kv.key), kv.value.clone().map(any_to_string).unwrap_or_default());
        }
        labels.retain(|_, v| !v.is_empty());
        let mut first = true;
        for (suffix, extra, value) in parts {
            let series = format!("{name}{suffix}");
            let mut pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Some((k, v)) = &extra {
                pairs.retain(|(name, _)| name != k);
                pairs.push((k, v.as_str()));
                pairs.sort_unstable();
            }
            validate_series(&series, &pairs, self.limits)?;
            // The point counts once among the accepted, with its first series.
            let indexes = first.then_some(item);
            self.batches.add(self.source, &series, &pairs, &[(ts_ms, value)], indexes.into_iter())?;
            first = false;
        }
        Ok(())
    }
}

fn number(p: &NumberDataPoint) -> Result<Vec<Part>, RecordError> {
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => return Err(RecordError::Missing("value")),
    };
    Ok(vec![("", None, value)])
}

fn histogram(p: &HistogramDataPoint) -> Result<Vec<Part>, RecordError> {
    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        return Err(RecordError::Value(format!(
            "a histogram point with {} bounds needs {} bucket counts, got {}",
            p.explicit_bounds.len(),
            p.explicit_bounds.len() + 1,
            p.bucket_counts.len()
        )));
    }
    let mut parts = Vec::with_capacity(p.explicit_bounds.len() + 3);
    let mut cumulative = 0u64;
    for (bound, count) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
        cumulative = cumulative.saturating_add(*count);
        parts.push(("_bucket", Some(("le", float_label(*bound))), cumulative as f64));
    }
    parts.push(("_bucket", Some(("le", "+Inf".to_string())), p.count as f64));
    if let Some(sum) = p.sum {
        parts.push(("_sum", None, sum));
    }
    parts.push(("_count", None, p.count as f64));
    Ok(parts)
}

fn summary(p: &SummaryDataPoint) -> Vec<Part> {
    let mut parts: Vec<Part> =
        p.quantile_values.iter().map(|q| ("", Some(("quantile", float_label(q.quantile))), q.value)).collect();
    parts.push(("_sum", None, p.sum));
    parts.push(("_count", None, p.count as f64));
    parts
}

/// An exponential histogram as a classic one, at scale 0 or coarser (see the module's notes).
fn exponential(p: &ExponentialHistogramDataPoint) -> Vec<Part> {
    let scale = p.scale.min(0);
    let shift = p.scale.max(0) as u32;
    // Upper bound of bucket `i` at `scale`: 2^((i + 1) * 2^-scale).
    let upper = |i: i64| 2f64.powf((i + 1) as f64 * 2f64.powi(-scale));
    let merge =
        |buckets: &Option<opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets>| {
            let mut merged: BTreeMap<i64, u64> = BTreeMap::new();
            if let Some(b) = buckets {
                for (k, count) in b.bucket_counts.iter().enumerate() {
                    if *count > 0 {
                        let i = (i64::from(b.offset) + k as i64) >> shift;
                        *merged.entry(i).or_default() += count;
                    }
                }
            }
            merged
        };
    let (negative, positive) = (merge(&p.negative), merge(&p.positive));
    let mut parts = Vec::with_capacity(negative.len() + positive.len() + 4);
    let mut cumulative = 0u64;
    // A negative bucket `i` holds values in [-upper(i), -upper(i - 1)): its le is -upper(i - 1).
    for (&i, &count) in negative.iter().rev() {
        cumulative = cumulative.saturating_add(count);
        parts.push(("_bucket", Some(("le", float_label(-upper(i - 1)))), cumulative as f64));
    }
    cumulative = cumulative.saturating_add(p.zero_count);
    parts.push(("_bucket", Some(("le", float_label(p.zero_threshold))), cumulative as f64));
    for (&i, &count) in &positive {
        cumulative = cumulative.saturating_add(count);
        parts.push(("_bucket", Some(("le", float_label(upper(i)))), cumulative as f64));
    }
    parts.push(("_bucket", Some(("le", "+Inf".to_string())), p.count as f64));
    if let Some(sum) = p.sum {
        parts.push(("_sum", None, sum));
    }
    parts.push(("_count", None, p.count as f64));
    parts
}

/// A bound as Prometheus writes `le` and `quantile`: shortest decimal form, `+Inf`, `-Inf`, `NaN`.
fn float_label(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

fn metric_name(name: &str) -> String {
    let mut s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn label_name(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

    fn values(parts: &[Part]) -> Vec<(String, String, f64)> {
        parts
            .iter()
            .map(|(s, extra, v)| (s.to_string(), extra.as_ref().map(|(_, v)| v.clone()).unwrap_or_default(), *v))
            .collect()
    }

    #[test]
    fn histogram_buckets_become_cumulative() {
        let p = HistogramDataPoint {
            count: 6,
            sum: Some(12.5),
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![0.5, 10.0],
            ..Default::default()
        };
        let got = values(&histogram(&p).unwrap());
        assert_eq!(
            got,
            vec![
                ("_bucket".into(), "0.5".into(), 1.0),
                ("_bucket".into(), "10".into(), 3.0),
                ("_bucket".into(), "+Inf".into(), 6.0),
                ("_sum".into(), String::new(), 12.5),
                ("_count".into(), String::new(), 6.0),
            ]
        );
        let bad = HistogramDataPoint { bucket_counts: vec![1], explicit_bounds: vec![1.0, 2.0], ..Default::default() };
        assert!(histogram(&bad).is_err());
    }

    #[test]
    fn exponential_buckets_merge_to_powers_of_two() {
        // Scale 1: bucket i covers (2^(i/2), 2^((i+1)/2)]. Buckets 2 and 3 merge into scale-0
        // bucket 1, (2, 4]; bucket 4 into bucket 2, (4, 8].
        let p = ExponentialHistogramDataPoint {
            scale: 1,
            count: 7,
            sum: Some(30.0),
            zero_count: 1,
            positive: Some(Buckets { offset: 2, bucket_counts: vec![1, 2, 3] }),
            negative: None,
            ..Default::default()
        };
        let got = values(&exponential(&p));
        assert_eq!(
            got,
            vec![
                ("_bucket".into(), "0".into(), 1.0),
                ("_bucket".into(), "4".into(), 4.0),
                ("_bucket".into(), "8".into(), 7.0),
                ("_bucket".into(), "+Inf".into(), 7.0),
                ("_sum".into(), String::new(), 30.0),
                ("_count".into(), String::new(), 7.0),
            ]
        );
        // A negative bucket 0 holds (-2, -1]: its le is -1.
        let p = ExponentialHistogramDataPoint {
            count: 1,
            negative: Some(Buckets { offset: 0, bucket_counts: vec![1] }),
            ..Default::default()
        };
        assert_eq!(values(&exponential(&p))[0], ("_bucket".into(), "-1".into(), 1.0));
    }

    #[test]
    fn names_are_made_prometheus_names() {
        assert_eq!(metric_name("http.server.duration"), "http_server_duration");
        assert_eq!(metric_name("1xx"), "_1xx");
        assert_eq!(label_name("http.method"), "http_method");
        assert_eq!(label_name("2fa"), "key_2fa");
        assert_eq!(float_label(0.005), "0.005");
        assert_eq!(float_label(1e6), "1000000");
    }
}
