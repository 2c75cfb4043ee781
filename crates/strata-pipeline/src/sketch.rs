//! A mergeable quantile sketch with a relative error bound (DDSketch's log-spaced buckets): a
//! value `x > 0` is counted in bucket `ceil(log_γ x)` with `γ = (1 + α) / (1 − α)`, and a bucket
//! answers with the value whose relative distance to every value of the bucket is at most `α`.
//! Sketches of the same `α` merge by adding bucket counts, so panes of a hopping window and the
//! partials of several partitions combine exactly as one sketch of all their values would.
//!
//! Memory is bounded: past `BUCKETS_MAX` buckets the lowest are folded together, which keeps the
//! bound for every quantile above the folded values (the rollups' p50 to p99 of latencies).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The relative error of the rollups' quantiles: 1%.
pub const RELATIVE_ERROR: f64 = 0.01;

/// Buckets a sketch keeps per sign; 1% error spans about twenty decades in 2,048 buckets.
const BUCKETS_MAX: usize = 2048;

/// Counts of values in log-spaced buckets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sketch {
    /// Bucket index to count, for positive values.
    #[serde(default)]
    pos: BTreeMap<i32, u64>,
    /// The same for the magnitudes of negative values.
    #[serde(default)]
    neg: BTreeMap<i32, u64>,
    #[serde(default)]
    zero: u64,
}

fn gamma() -> f64 {
    (1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR)
}

/// Values below this magnitude count as zero.
const MIN_MAGNITUDE: f64 = 1e-12;

fn index(magnitude: f64) -> i32 {
    (magnitude.ln() / gamma().ln()).ceil() as i32
}

fn value(index: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(index) / (g + 1.0)
}

impl Sketch {
    /// Counts `v`; NaNs are not values and are left out.
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        let m = v.abs();
        if m < MIN_MAGNITUDE {
            self.zero += 1;
            return;
        }
        let m = m.min(f64::MAX / 2.0);
        let buckets = if v > 0.0 { &mut self.pos } else { &mut self.neg };
        *buckets.entry(index(m)).or_default() += 1;
        fold(buckets);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        for (&i, &n) in &other.pos {
            *self.pos.entry(i).or_default() += n;
        }
        for (&i, &n) in &other.neg {
            *self.neg.entry(i).or_default() += n;
        }
        self.zero += other.zero;
        fold(&mut self.pos);
        fold(&mut self.neg);
    }

    pub fn count(&self) -> u64 {
        self.zero + self.pos.values().sum::<u64>() + self.neg.values().sum::<u64>()
    }

    /// The `q` quantile (0 to 1) as the value of rank `q × (count − 1)` in sorted order, within
    /// the relative error; `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Ascending: the most negative first.
        for (&i, &n) in self.neg.iter().rev() {
            seen += n;
            if seen > rank {
                return Some(-value(i));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (&i, &n) in &self.pos {
            seen += n;
            if seen > rank {
                return Some(value(i));
            }
        }
        None
    }
}

/// Folds the lowest magnitudes together while there are too many buckets.
fn fold(buckets: &mut BTreeMap<i32, u64>) {
    while buckets.len() > BUCKETS_MAX {
        let (_, n) = buckets.pop_first().expect("more than BUCKETS_MAX buckets");
        *buckets.first_entry().expect("more than one bucket").get_mut() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact value of rank `q × (n − 1)`, as `quantile` defines it.
    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    #[test]
    fn quantiles_of_latencies_are_within_one_percent() {
        let mut s = Sketch::default();
        let mut values: Vec<f64> = (1..=10_000).map(|i| (i as f64 * 0.37).powf(1.7) / 1000.0).collect();
        for &v in &values {
            s.add(v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let (got, want) = (s.quantile(q).unwrap(), exact(&values, q));
            assert!((got - want).abs() <= RELATIVE_ERROR * want, "q{q}: {got} against {want}");
        }
        assert_eq!(s.count(), 10_000);
        assert_eq!(Sketch::default().quantile(0.5), None);
    }

    proptest! {
        /// Any values, added in any split, merge into the same sketch, and every quantile is
        /// within the relative error of the exact one.
        #[test]
        fn merged_halves_answer_within_the_bound(
            values in proptest::collection::vec(prop_oneof![-1e6f64..1e6, 1e-3f64..10.0, Just(0.0)], 1..300),
            split in 0usize..300,
            q in 0.0f64..=1.0,
        ) {
            let split = split.min(values.len());
            let (mut a, mut b, mut whole) = (Sketch::default(), Sketch::default(), Sketch::default());
            for &v in &values[..split] { a.add(v); }
            for &v in &values[split..] { b.add(v); }
            for &v in &values { whole.add(v); }
            a.merge(&b);
            prop_assert_eq!(&a, &whole);
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let want = exact(&sorted, q);
            let got = whole.quantile(q).unwrap();
            let bound = if want.abs() < MIN_MAGNITUDE { MIN_MAGNITUDE } else { RELATIVE_ERROR * want.abs() * 1.000_001 };
            prop_assert!((got - want).abs() <= bound, "q{} of {:?}: {} against {}", q, sorted, got, want);
        }
    }
}
