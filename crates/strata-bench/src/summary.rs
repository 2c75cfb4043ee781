//! Percentiles of a small set of measured latencies, kept exactly rather than in a histogram.

use serde::Serialize;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Measurements summarised.
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// The summary of `samples_ms`; every figure is 0 when there are none.
    pub fn of(mut samples_ms: Vec<f64>) -> Summary {
        samples_ms.sort_by(f64::total_cmp);
        let count = samples_ms.len();
        let mean = if count == 0 { 0.0 } else { samples_ms.iter().sum::<f64>() / count as f64 };
        Summary {
            count,
            p50: percentile(&samples_ms, 0.50),
            p99: percentile(&samples_ms, 0.99),
            max: samples_ms.last().copied().unwrap_or(0.0),
            mean,
        }
    }
}

/// The nearest-rank percentile `q` (0 to 1) of ascending `sorted`: the smallest sample with at least
/// a share `q` of the samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(sorted.is_sorted_by(|a, b| a <= b), "samples must be sorted");
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let fifty: Vec<f64> = (1..=50).map(f64::from).collect();
        let cases: [(&[f64], f64, f64); 10] = [
            (&[], 0.5, 0.0),
            (&[7.0], 0.0, 7.0),
            (&[7.0], 0.99, 7.0),
            (&[1.0, 2.0], 0.5, 1.0),
            (&[1.0, 2.0], 0.51, 2.0),
            (&hundred, 0.5, 50.0),
            (&hundred, 0.99, 99.0),
            (&hundred, 1.0, 100.0),
            // With 50 samples the 99th percentile is the largest one.
            (&fifty, 0.99, 50.0),
            (&fifty, 0.5, 25.0),
        ];
        for (samples, q, expected) in cases {
            assert_eq!(percentile(samples, q), expected, "q {q} of {} samples", samples.len());
        }
    }

    #[test]
    fn summary_sorts_its_samples() {
        let summary = Summary::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(summary, Summary { count: 4, p50: 2.0, p99: 4.0, max: 4.0, mean: 2.5 });
        assert_eq!(Summary::of(Vec::new()), Summary { count: 0, p50: 0.0, p99: 0.0, max: 0.0, mean: 0.0 });
    }
}
