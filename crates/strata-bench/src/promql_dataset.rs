//! The data set of the PromQL query benchmark: a fleet of HTTP services, exactly [`SERIES`] series
//! scraped every interval, as counters only (`rate`, `sum by`, `topk` and `histogram_quantile` all
//! read counters).
//!
//! - 9,000 `http_requests_total{code, instance, job, method}`: 5 jobs of 100 instances each, 3
//!   status codes and 6 methods per instance.
//! - 1,000 `http_request_duration_seconds_bucket{instance, job, le}`: the 100 instances of job
//!   `api`, 10 buckets each (`+Inf` included), cumulative and counting the requests of the same
//!   instance's `http_requests_total`, so `+Inf` of an instance equals the sum of its counters'
//!   increases.
//!
//! Traffic is Zipf-skewed over instances (the busiest serve far more than the rest, so a `topk` has
//! clear winners), follows a daily cycle, and a few instances restart once, their counters falling
//! to zero. Every instance is scraped at its own offset within the interval; a slice holds one
//! scrape of every instance, and slices come in time order. Everything is a pure function of the
//! seed, the interval and the start.

use std::f64::consts::TAU;

use anyhow::ensure;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Binomial, Distribution as _, StandardNormal};

/// Name of the request counters.
pub const COUNTER_NAME: &str = "http_requests_total";

/// Name of the latency histogram's bucket counters.
pub const BUCKET_NAME: &str = "http_request_duration_seconds_bucket";

/// Jobs, each with [`INSTANCES_PER_JOB`] instances of its own.
const JOBS: [&str; 5] = ["api", "web", "checkout", "auth", "search"];

/// Instances of each job.
const INSTANCES_PER_JOB: usize = 100;

/// The job whose instances also expose the latency histogram.
const HISTOGRAM_JOB: usize = 0;

/// Status codes and the share of requests answered with each.
const CODES: [(&str, f64); 3] = [("200", 0.92), ("404", 0.06), ("500", 0.02)];

/// Methods and the share of requests made with each.
const METHODS: [(&str, f64); 6] =
    [("GET", 0.62), ("POST", 0.2), ("PUT", 0.07), ("DELETE", 0.05), ("PATCH", 0.04), ("HEAD", 0.02)];

/// Histogram buckets: the `le` label and the share of requests that took at most that long.
const BUCKETS: [(&str, f64); 10] = [
    ("0.005", 0.01),
    ("0.01", 0.04),
    ("0.025", 0.15),
    ("0.05", 0.42),
    ("0.1", 0.7),
    ("0.25", 0.9),
    ("0.5", 0.96),
    ("1", 0.985),
    ("2.5", 0.997),
    ("+Inf", 1.0),
];

/// Instances of every job together.
pub const INSTANCES: usize = JOBS.len() * INSTANCES_PER_JOB;
const COUNTERS_PER_INSTANCE: usize = CODES.len() * METHODS.len();
const COUNTERS: usize = INSTANCES * COUNTERS_PER_INSTANCE;

/// Series of the data set: 9,000 counters and 1,000 buckets.
pub const SERIES: usize = COUNTERS + INSTANCES_PER_JOB * BUCKETS.len();

/// Requests per second of the busiest instance; the one of rank `r` (from 0) serves
/// `RATE_TOP_PER_S / (r + 1)^RATE_SKEW`, and never less than [`RATE_FLOOR_PER_S`].
const RATE_TOP_PER_S: f64 = 1500.0;
const RATE_SKEW: f64 = 1.1;
const RATE_FLOOR_PER_S: f64 = 0.5;

/// How far traffic swings either way around its mean over a day, as a share of it.
const DAILY_SWING: f64 = 0.35;

const DAY_MS: i64 = 86_400_000;

/// Share of instances that restart once during the period.
const RESTART_SHARE: f64 = 0.05;

/// Longest time an instance has been up when the period starts, in seconds; its counters start
/// where its traffic would have taken them.
const UPTIME_MAX_S: f64 = 30.0 * 86_400.0;

/// Scrape offsets within the interval are whole multiples of this, in milliseconds, and at most
/// one interval minus this: a time that is not such a multiple never coincides with a sample.
pub const OFFSET_STEP_MS: i64 = 100;

/// Shape of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Scrape interval, in milliseconds.
    pub interval_ms: i64,
    /// Start of the first slice, in Unix milliseconds.
    pub start_ms: i64,
    /// Slices (scrape intervals) in the period.
    pub slices: u64,
}

impl DatasetConfig {
    /// Start of slice `slice`: every sample of it is in `start..start + interval_ms`.
    pub fn slice_start_ms(&self, slice: u64) -> i64 {
        self.start_ms + slice as i64 * self.interval_ms
    }

    /// End of the period: later than every sample.
    pub fn end_ms(&self) -> i64 {
        self.slice_start_ms(self.slices)
    }

    /// Samples of the whole period: one per series and slice.
    pub fn samples(&self) -> u64 {
        self.slices * SERIES as u64
    }
}

/// One instance: what it serves and when it is scraped.
struct Instance {
    /// Mean requests per second over a day.
    rate_per_s: f64,
    /// Where in each interval it is scraped, in milliseconds.
    offset_ms: i64,
    /// The slice at whose scrape its counters have restarted from zero.
    restart_slice: Option<u64>,
}

/// The generator: labels of every series and, slice by slice, their samples.
pub struct Dataset {
    config: DatasetConfig,
    instances: Vec<Instance>,
    /// Current value of every series, by series index.
    values: Vec<f64>,
    next_slice: u64,
    rng: StdRng,
}

impl Dataset {
    /// A data set for `config`; fails if a parameter is out of range.
    pub fn new(config: DatasetConfig) -> anyhow::Result<Dataset> {
        ensure!(
            config.interval_ms >= 10 * OFFSET_STEP_MS,
            "the scrape interval must be at least {} ms, got {} ms",
            10 * OFFSET_STEP_MS,
            config.interval_ms
        );
        ensure!(config.slices >= 1, "the period must hold at least one slice, got {}", config.slices);
        let mut rng = StdRng::seed_from_u64(config.seed ^ 0x243f_6a88_85a3_08d3);
        // Ranks shuffled over jobs, so that every job has busy and quiet instances.
        let mut ranks: Vec<usize> = (0..INSTANCES).collect();
        for i in (1..INSTANCES).rev() {
            ranks.swap(i, rng.random_range(0..=i));
        }
        let offsets = config.interval_ms / OFFSET_STEP_MS;
        let instances: Vec<Instance> = (0..INSTANCES)
            .map(|index| {
                let rank = ranks[index] as f64;
                Instance {
                    rate_per_s: (RATE_TOP_PER_S / (rank + 1.0).powf(RATE_SKEW)).max(RATE_FLOOR_PER_S),
                    offset_ms: rng.random_range(0..offsets) * OFFSET_STEP_MS,
                    restart_slice: rng.random_bool(RESTART_SHARE).then(|| rng.random_range(0..config.slices)),
                }
            })
            .collect();
        let mut values = vec![0.0; SERIES];
        for (index, instance) in instances.iter().enumerate() {
            let uptime_s = rng.random_range(3600.0..UPTIME_MAX_S);
            let served = (instance.rate_per_s * uptime_s).round();
            let counters = index * COUNTERS_PER_INSTANCE;
            for (code, (_, code_share)) in CODES.iter().enumerate() {
                for (method, (_, method_share)) in METHODS.iter().enumerate() {
                    values[counters + code * METHODS.len() + method] = (served * code_share * method_share).round();
                }
            }
            if let Some(buckets) = bucket_series(index) {
                for (bucket, (_, share)) in BUCKETS.iter().enumerate() {
                    values[buckets + bucket] = (served * share).round();
                }
            }
        }
        Ok(Dataset { config, instances, values, next_slice: 0, rng })
    }

    /// Labels of series `series` (0 to [`SERIES`]), `__name__` included, sorted by name as
    /// Prometheus sends them.
    pub fn labels(series: usize) -> Vec<(String, String)> {
        let own = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        let instance = Dataset::instance_of(series);
        let job = JOBS[instance / INSTANCES_PER_JOB];
        let instance_label = format!("{job}-{:02}:8080", instance % INSTANCES_PER_JOB);
        if series < COUNTERS {
            let within = series % COUNTERS_PER_INSTANCE;
            let (code, method) = (CODES[within / METHODS.len()].0, METHODS[within % METHODS.len()].0);
            vec![
                own("__name__", COUNTER_NAME),
                own("code", code),
                own("instance", &instance_label),
                own("job", job),
                own("method", method),
            ]
        } else {
            let le = BUCKETS[(series - COUNTERS) % BUCKETS.len()].0;
            vec![own("__name__", BUCKET_NAME), own("instance", &instance_label), own("job", job), own("le", le)]
        }
    }

    /// The instance (0 to 500) that exposes series `series`.
    pub fn instance_of(series: usize) -> usize {
        if series < COUNTERS {
            series / COUNTERS_PER_INSTANCE
        } else {
            HISTOGRAM_JOB * INSTANCES_PER_JOB + (series - COUNTERS) / BUCKETS.len()
        }
    }

    /// Generates the next slice: calls `sample(series, timestamp_ms, value)` once for every series.
    /// Returns false, without calling it, once every slice has been generated.
    pub fn next_slice(&mut self, mut sample: impl FnMut(usize, i64, f64)) -> bool {
        let slice = self.next_slice;
        if slice >= self.config.slices {
            return false;
        }
        self.next_slice += 1;
        let start_ms = self.config.slice_start_ms(slice);
        let daily = 1.0 + DAILY_SWING * (TAU * start_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64).sin();
        let interval_s = self.config.interval_ms as f64 / 1000.0;
        for (index, instance) in self.instances.iter().enumerate() {
            let timestamp_ms = start_ms + instance.offset_ms;
            let counters = index * COUNTERS_PER_INSTANCE;
            let buckets = bucket_series(index);
            if instance.restart_slice == Some(slice) {
                self.values[counters..counters + COUNTERS_PER_INSTANCE].fill(0.0);
                if let Some(buckets) = buckets {
                    self.values[buckets..buckets + BUCKETS.len()].fill(0.0);
                }
            }
            let expected = instance.rate_per_s * daily * interval_s;
            let mut served = 0u64;
            for (code, (_, code_share)) in CODES.iter().enumerate() {
                for (method, (_, method_share)) in METHODS.iter().enumerate() {
                    let series = counters + code * METHODS.len() + method;
                    let increase = noisy(expected * code_share * method_share, &mut self.rng);
                    served += increase as u64;
                    self.values[series] += increase;
                    sample(series, timestamp_ms, self.values[series]);
                }
            }
            if let Some(buckets) = buckets {
                // The instance's requests spread over the buckets: a multinomial draw as a chain of
                // binomials, each bucket taking its share of what the ones below left.
                let (mut left, mut below_share, mut cumulative) = (served, 0.0, 0u64);
                for (bucket, (_, share)) in BUCKETS.iter().enumerate() {
                    let here = if bucket + 1 == BUCKETS.len() {
                        left
                    } else {
                        let p = ((share - below_share) / (1.0 - below_share)).clamp(0.0, 1.0);
                        Binomial::new(left, p).expect("p is within 0..=1").sample(&mut self.rng)
                    };
                    left -= here;
                    below_share = *share;
                    cumulative += here;
                    self.values[buckets + bucket] += cumulative as f64;
                    sample(buckets + bucket, timestamp_ms, self.values[buckets + bucket]);
                }
            }
        }
        true
    }
}

/// The first bucket series of instance `instance`, if it has a histogram.
fn bucket_series(instance: usize) -> Option<usize> {
    let job = instance / INSTANCES_PER_JOB;
    (job == HISTOGRAM_JOB).then(|| COUNTERS + (instance % INSTANCES_PER_JOB) * BUCKETS.len())
}

/// A whole number of events around `expected`: its Poisson spread, by the normal approximation.
fn noisy(expected: f64, rng: &mut StdRng) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    (expected + expected.sqrt() * z).round().max(0.0)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn config(slices: u64) -> DatasetConfig {
        DatasetConfig { seed: 7, interval_ms: 15_000, start_ms: 1_700_000_000_000, slices }
    }

    fn generate(config: DatasetConfig) -> Vec<Vec<(usize, i64, f64)>> {
        let mut dataset = Dataset::new(config).unwrap();
        let mut slices = Vec::new();
        loop {
            let mut slice = Vec::new();
            if !dataset.next_slice(|series, timestamp_ms, value| slice.push((series, timestamp_ms, value))) {
                return slices;
            }
            slices.push(slice);
        }
    }

    #[test]
    fn series_are_distinct_with_the_promised_shape() {
        let labels: BTreeSet<Vec<(String, String)>> = (0..SERIES).map(Dataset::labels).collect();
        assert_eq!(labels.len(), 10_000);
        assert!(labels.iter().all(|set| set.is_sorted()));
        let by_name = |name: &str| labels.iter().filter(|set| set[0].1 == name).count();
        assert_eq!((by_name(COUNTER_NAME), by_name(BUCKET_NAME)), (9000, 1000));
        let instances: BTreeSet<String> =
            labels.iter().map(|set| set.iter().find(|(k, _)| k == "instance").unwrap().1.clone()).collect();
        assert_eq!(instances.len(), 500);
        assert_eq!(Dataset::labels(COUNTERS)[1].1, "api-00:8080");
        assert_eq!(Dataset::instance_of(COUNTERS + 10), 1);
    }

    #[test]
    fn slices_hold_every_series_once_in_time_order_and_repeat_for_a_seed() {
        let config = config(30);
        let slices = generate(config);
        assert_eq!(slices.len(), 30);
        for (index, slice) in slices.iter().enumerate() {
            let series: BTreeSet<usize> = slice.iter().map(|sample| sample.0).collect();
            assert_eq!(series.len(), SERIES);
            let start = config.slice_start_ms(index as u64);
            assert!(slice.iter().all(|&(_, ts, _)| (start..start + config.interval_ms - 50).contains(&ts)));
        }
        assert_eq!(generate(config), slices, "the same seed gives the same samples");
        assert_ne!(generate(DatasetConfig { seed: 8, ..config }), slices);
    }

    #[test]
    fn counters_only_fall_at_a_restart_and_buckets_are_cumulative() {
        let config = config(200);
        let restarts: BTreeSet<(usize, u64)> = Dataset::new(config)
            .unwrap()
            .instances
            .iter()
            .enumerate()
            .filter_map(|(index, instance)| Some((index, instance.restart_slice?)))
            .collect();
        assert!(!restarts.is_empty(), "some instance restarts within 200 slices of seed 7");
        let mut last: BTreeMap<usize, f64> = BTreeMap::new();
        for (slice, samples) in generate(config).iter().enumerate() {
            for &(series, _, value) in samples {
                let previous = last.insert(series, value).unwrap_or(0.0);
                let restarted = restarts.contains(&(Dataset::instance_of(series), slice as u64));
                assert!(value >= previous || restarted, "series {series} fell at slice {slice} without a restart");
            }
            let mut values = vec![0.0; SERIES];
            for &(series, _, value) in samples {
                values[series] = value;
            }
            for (instance, buckets) in values[COUNTERS..].chunks(BUCKETS.len()).enumerate() {
                assert!(buckets.is_sorted(), "buckets of instance {instance} are cumulative: {buckets:?}");
            }
        }
    }
}
