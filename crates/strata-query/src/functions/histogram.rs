//! Classic (`le` bucket) histograms: Prometheus's `BucketQuantile` behind `histogram_quantile` and
//! `BucketFraction` behind `histogram_fraction`.
//!
//! Buckets are `(upper_bound, cumulative_count)` pairs in any order.

use std::cmp::Ordering;

use super::stats::almost_equal;

/// Relative difference between neighbouring cumulative counts below which `histogram_quantile`
/// treats them as equal, taking the difference for a floating point artefact (Prometheus's
/// `smallDeltaTolerance`).
pub const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// The result of [`bucket_quantile`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketQuantile {
    pub value: f64,
    /// Some bucket counted fewer observations than a lower one and was raised to it; Prometheus
    /// reports this with the info "input to histogram_quantile needed to be fixed for
    /// monotonicity".
    pub forced_monotonic: bool,
    /// Some neighbouring counts differed by a relative amount of at most
    /// [`SMALL_DELTA_TOLERANCE`] and were made equal (silently, no annotation).
    pub fixed_precision: bool,
}

/// Where monotonicity had to be forced, as the newest Prometheus puts it into its info text:
/// the lowest and highest upper bound of a raised bucket and the largest decrease removed.
/// With nothing forced, `min_bucket` is +Inf and `max_bucket` -Inf (or both 0 when the
/// buckets were never examined), and `max_diff` is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonotonicityDetail {
    pub min_bucket: f64,
    pub max_bucket: f64,
    pub max_diff: f64,
}

/// Prometheus's `BucketQuantile`: the `q`-quantile of a classic histogram.
///
/// Sorts `buckets` by upper bound and merges buckets with equal bounds (in place). Then:
/// NaN for a NaN `q`, -Inf for `q < 0`, +Inf for `q > 1`, NaN without a `+Inf` bucket, with fewer
/// than two buckets or with no observations. Counts are made monotonic (see
/// [`BucketQuantile::forced_monotonic`] and [`BucketQuantile::fixed_precision`]); the quantile is
/// interpolated linearly within its bucket, with 0 as the lower bound of the first bucket if
/// that bucket's upper bound is positive, and the first bucket's upper bound itself if it is not;
/// a quantile in the `+Inf` bucket is the second highest upper bound.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> BucketQuantile {
    bucket_quantile_with_detail(q, buckets).0
}

/// [`bucket_quantile`], also telling where monotonicity was forced.
pub fn bucket_quantile_with_detail(q: f64, buckets: &mut Vec<(f64, f64)>) -> (BucketQuantile, MonotonicityDetail) {
    let unexamined = MonotonicityDetail { min_bucket: 0.0, max_bucket: 0.0, max_diff: 0.0 };
    let plain = |value: f64| BucketQuantile { value, forced_monotonic: false, fixed_precision: false };
    if q.is_nan() {
        return (plain(f64::NAN), unexamined);
    }
    if q < 0.0 {
        return (plain(f64::NEG_INFINITY), unexamined);
    }
    if q > 1.0 {
        return (plain(f64::INFINITY), unexamined);
    }
    sort_and_coalesce(buckets);
    if buckets.last().is_none_or(|&(le, _)| le != f64::INFINITY) {
        return (plain(f64::NAN), unexamined);
    }
    let (fix, detail) = ensure_monotonic_and_ignore_small_deltas(buckets, SMALL_DELTA_TOLERANCE);
    let result = |value: f64| BucketQuantile { value, ..fix };

    let n = buckets.len();
    if n < 2 {
        return (result(f64::NAN), detail);
    }
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return (result(f64::NAN), detail);
    }
    let mut rank = q * observations;
    let b = go_search(n - 1, |i| buckets[i].1 >= rank);
    if b == n - 1 {
        return (result(buckets[n - 2].0), detail);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return (result(buckets[0].0), detail);
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    (result(bucket_start + (bucket_end - bucket_start) * (rank / count)), detail)
}

/// Prometheus's `BucketFraction`: the estimated fraction of a classic histogram's observations
/// between `lower` and `upper`, interpolating linearly within buckets (the lowest bucket starts
/// at 0 if its upper bound is positive, else at -Inf, where nothing is interpolated).
///
/// Sorts and merges `buckets` in place. NaN without buckets, without a `+Inf` bucket, without
/// observations or with a NaN bound; 0 if `lower >= upper`.
pub fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    sort_and_coalesce(buckets);
    let Some(&(last_le, count)) = buckets.last() else {
        return f64::NAN;
    };
    if last_le != f64::INFINITY {
        return f64::NAN;
    }
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].0 <= 0.0 { f64::NEG_INFINITY } else { 0.0 };
    for (i, &(upper_bound, cumulative)) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].0;
        }
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                cumulative
            } else {
                rank + (cumulative - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = cumulative;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Sorts by upper bound and merges buckets with equal upper bounds by adding their counts
/// (Prometheus's `coalesceBuckets`, which runs after the sort).
fn sort_and_coalesce(buckets: &mut Vec<(f64, f64)>) {
    // Prometheus does not expect NaN bounds; this order keeps the sort total (NaN last).
    buckets.sort_by(|a, b| compare_bounds(a.0, b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, count) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => merged.push((le, count)),
        }
    }
    *buckets = merged;
}

/// Prometheus's `ensureMonotonicAndIgnoreSmallDeltas`: a count that differs from the last
/// accepted one by a relative `tolerance` or less is set to it (in either direction), and a count
/// below the last accepted one is raised to it.
fn ensure_monotonic_and_ignore_small_deltas(
    buckets: &mut [(f64, f64)],
    tolerance: f64,
) -> (BucketQuantile, MonotonicityDetail) {
    let mut fix = BucketQuantile { value: 0.0, forced_monotonic: false, fixed_precision: false };
    let mut detail = MonotonicityDetail { min_bucket: f64::INFINITY, max_bucket: f64::NEG_INFINITY, max_diff: 0.0 };
    let Some(&(_, first)) = buckets.first() else {
        return (fix, detail);
    };
    let mut prev = first;
    for bucket in buckets.iter_mut().skip(1) {
        let curr = bucket.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, tolerance) {
            bucket.1 = prev;
            fix.fixed_precision = true;
            continue;
        }
        if curr < prev {
            bucket.1 = prev;
            fix.forced_monotonic = true;
            if bucket.0 < detail.min_bucket {
                detail.min_bucket = bucket.0;
            }
            if bucket.0 > detail.max_bucket {
                detail.max_bucket = bucket.0;
            }
            if prev - curr > detail.max_diff {
                detail.max_diff = prev - curr;
            }
            continue;
        }
        prev = curr;
    }
    (fix, detail)
}

/// Go's `sort.Search`: the smallest index in `0..n` for which `pred` holds, assuming it holds
/// for a suffix, or `n`. The same bisection as Go's, so that it lands where Go's does even on
/// inputs (with NaN) where `pred` does not hold for a suffix.
fn go_search(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0, n);
    while i < j {
        let h = i + (j - i) / 2;
        if pred(h) {
            j = h;
        } else {
            i = h + 1;
        }
    }
    i
}

/// The order [`bucket_quantile`] and [`bucket_fraction`] sort upper bounds in: ascending, NaN last.
pub fn compare_bounds(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::stats::almost_equal;

    fn quantile(q: f64, buckets: &[(f64, f64)]) -> BucketQuantile {
        bucket_quantile(q, &mut buckets.to_vec())
    }

    fn value(q: f64, buckets: &[(f64, f64)]) -> f64 {
        quantile(q, buckets).value
    }

    fn close(a: f64, b: f64) -> bool {
        almost_equal(a, b, 1e-12)
    }

    const INF: f64 = f64::INFINITY;

    // histograms.test at 50m (sample index 10).
    const POSITIVE: [(f64, f64); 4] = [(0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 120.0)];
    const NEGATIVE: [(f64, f64); 4] = [(-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (INF, 30.0)];
    const POSITIVE3: [(f64, f64); 5] = [(0.0, 0.0), (0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 110.0)];
    const NEGATIVE3: [(f64, f64); 5] = [(-0.25, 0.0), (-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (INF, 20.0)];

    #[test]
    fn quantiles_of_testhistogram() {
        assert_eq!(value(0.0, &POSITIVE), 0.0);
        assert_eq!(value(0.0, &NEGATIVE), -0.2);
        assert_eq!(value(1.0, &POSITIVE), 1.0);
        assert_eq!(value(1.0, &NEGATIVE), 0.3);
        assert!(close(value(0.2, &POSITIVE), 0.048));
        assert_eq!(value(0.2, &NEGATIVE), -0.2);
        assert!(close(value(0.5, &POSITIVE), 0.15));
        assert!(close(value(0.5, &NEGATIVE), -0.15));
        assert!(close(value(0.8, &POSITIVE), 0.72));
        assert_eq!(value(0.8, &NEGATIVE), 0.3);
        for q in [0.0, 0.2, 0.5, 0.8, 1.0] {
            let r = quantile(q, &POSITIVE);
            assert!(!r.forced_monotonic && !r.fixed_precision);
        }
    }

    #[test]
    fn quantiles_of_testhistogram3() {
        assert_eq!(value(0.0, &POSITIVE3), 0.0);
        assert_eq!(value(0.0, &NEGATIVE3), -0.25);
        assert!(close(value(0.25, &POSITIVE3), 0.055));
        assert!(close(value(0.25, &NEGATIVE3), -0.225));
        assert!(close(value(0.5, &POSITIVE3), 0.125));
        assert!(close(value(0.5, &NEGATIVE3), -0.2));
        assert!(close(value(0.75, &POSITIVE3), 0.45));
        assert!(close(value(0.75, &NEGATIVE3), -0.15));
        assert_eq!(value(1.0, &POSITIVE3), 1.0);
        assert_eq!(value(1.0, &NEGATIVE3), -0.1);
    }

    #[test]
    fn out_of_range_and_nan_quantiles() {
        assert_eq!(value(-0.1, &POSITIVE), f64::NEG_INFINITY);
        assert_eq!(value(1.01, &NEGATIVE), INF);
        assert!(value(f64::NAN, &POSITIVE).is_nan());
        // These are decided before the buckets are looked at.
        assert_eq!(value(-0.1, &[(1.0, 1.0)]), f64::NEG_INFINITY);
        assert_eq!(value(2.0, &[]), INF);
    }

    #[test]
    fn quantiles_in_the_middle_of_buckets() {
        // testhistogram2 at 7m: counts 0 1 2 3 3 for le 0 2 4 6 +Inf.
        let b = [(0.0, 0.0), (2.0, 1.0), (4.0, 2.0), (6.0, 3.0), (INF, 3.0)];
        assert!(close(value(1.0 / 6.0, &b), 1.0));
        assert!(close(value(0.5, &b), 3.0));
        assert!(close(value(5.0 / 6.0, &b), 5.0));
    }

    #[test]
    fn quantiles_of_aggregated_rates() {
        // sum(rate(request_duration_seconds_bucket[10m])) by (le) at 50m, times 600.
        let all = [(0.1, 10.0), (0.2, 19.0), (INF, 25.0)];
        assert!(close(value(0.3, &all), 0.075));
        assert!(almost_equal(value(0.5, &all), 0.1277777777777778, 1e-12));
        // by (job)
        assert!(close(value(0.3, &[(0.1, 3.0), (0.2, 8.0), (INF, 10.0)]), 0.1));
        assert!(close(value(0.3, &[(0.1, 7.0), (0.2, 11.0), (INF, 15.0)]), 0.0642857142857143));
        assert!(close(value(0.5, &[(0.1, 3.0), (0.2, 8.0), (INF, 10.0)]), 0.14));
        assert!(close(value(0.5, &[(0.1, 7.0), (0.2, 11.0), (INF, 15.0)]), 0.1125));
        // unaggregated
        assert!(close(value(0.5, &[(0.1, 2.0), (0.2, 5.0), (INF, 6.0)]), 0.13333333333333333));
        assert!(close(value(0.5, &[(0.1, 4.0), (0.2, 7.0), (INF, 9.0)]), 0.11666666666666667));
    }

    #[test]
    fn unsorted_input_is_sorted() {
        let mut b = vec![(INF, 120.0), (0.2, 70.0), (1.0, 110.0), (0.1, 50.0)];
        assert!(close(bucket_quantile(0.5, &mut b).value, 0.15));
        assert_eq!(b, POSITIVE.to_vec());
    }

    #[test]
    fn equal_bounds_are_merged() {
        // mixed_bucket: le="0.2", "2e-1" and "2.0e-1" are one bound; rates over 10m are 1/300 each.
        let r = 1.0 / 300.0;
        let b = [(0.1, r), (0.2, r), (0.2, r), (0.2, r), (INF, 4.0 * r)];
        assert!(close(value(0.5, &b), 0.15));
        assert!(close(value(0.75, &b), 0.2));
        assert!(close(value(1.0, &b), 0.2));
        // le="+inf" and "+Inf" with no observations.
        assert!(value(0.5, &[(INF, 0.0), (INF, 0.0)]).is_nan());
    }

    #[test]
    fn nan_without_inf_bucket_or_observations_or_with_one_bucket() {
        assert!(value(0.5, &[(0.1, 1.0), (0.2, 2.0)]).is_nan());
        assert!(value(0.5, &[(0.1, 0.0), (INF, 0.0)]).is_nan());
        assert!(value(0.5, &[(INF, 5.0)]).is_nan());
        assert!(value(0.5, &[]).is_nan());
    }

    #[test]
    fn nonmonotonic_buckets_are_fixed_and_flagged() {
        // nonmonotonic_bucket at 50m.
        let b = [(0.1, 20.0), (1.0, 10.0), (10.0, 50.0), (100.0, 40.0), (1000.0, 90.0), (INF, 80.0)];
        for (q, want) in [(0.01, 0.0045), (0.5, 8.5), (0.99, 979.75)] {
            let r = quantile(q, &b);
            assert!(close(r.value, want), "q={q}: {} want {want}", r.value);
            assert!(r.forced_monotonic);
            assert!(!r.fixed_precision);
        }
        let (_, detail) = bucket_quantile_with_detail(0.5, &mut b.to_vec());
        assert_eq!(detail, MonotonicityDetail { min_bucket: 1.0, max_bucket: INF, max_diff: 10.0 });
        let (r, detail) = bucket_quantile_with_detail(0.5, &mut POSITIVE.to_vec());
        assert!(!r.forced_monotonic);
        assert_eq!(detail, MonotonicityDetail { min_bucket: INF, max_bucket: f64::NEG_INFINITY, max_diff: 0.0 });
    }

    #[test]
    fn tiny_deltas_are_ignored_in_both_directions() {
        // A float error of 1e-15 relative makes the +Inf bucket a hair smaller: not a forced fix.
        let c = 1e12;
        let b = [(1.0, c), (2.0, c + 1e-3), (INF, c)];
        let r = quantile(0.5, &b);
        assert!(r.fixed_precision);
        assert!(!r.forced_monotonic);
        assert!(close(r.value, 0.5));
        // The ignored delta does not move the reference count: a later count is compared with c.
        let b = [(1.0, 10.0), (2.0, 10.0 * (1.0 + 1e-13)), (3.0, 10.0 * (1.0 - 1e-13)), (INF, 20.0)];
        let r = quantile(0.5, &b);
        assert!(r.fixed_precision && !r.forced_monotonic);
        assert!(close(r.value, 1.0));
        // A real decrease is forced.
        let b = [(1.0, 10.0), (2.0, 9.0), (INF, 20.0)];
        let r = quantile(0.25, &b);
        assert!(r.forced_monotonic && !r.fixed_precision);
        assert!(close(r.value, 0.5));
    }

    #[test]
    fn quantile_in_first_bucket_with_non_positive_bound() {
        let b = [(-1.0, 5.0), (0.0, 10.0), (INF, 10.0)];
        assert_eq!(value(0.2, &b), -1.0);
        assert!(close(value(0.75, &b), -0.5));
        let b = [(0.0, 5.0), (1.0, 10.0), (INF, 10.0)];
        assert_eq!(value(0.2, &b), 0.0);
    }

    #[test]
    fn quantile_in_inf_bucket_is_second_highest_bound() {
        let b = [(1.0, 1.0), (2.0, 2.0), (INF, 10.0)];
        assert_eq!(value(0.9, &b), 2.0);
        assert_eq!(value(1.0, &b), 2.0);
        // NaN observations: every comparison fails and the search ends at the +Inf bucket.
        assert_eq!(value(0.5, &[(1.0, 1.0), (2.0, 2.0), (INF, f64::NAN)]), 2.0);
    }

    #[test]
    fn go_search_bisects_like_go() {
        assert_eq!(go_search(0, |_| true), 0);
        assert_eq!(go_search(5, |i| i >= 3), 3);
        assert_eq!(go_search(5, |_| false), 5);
        assert_eq!(go_search(5, |_| true), 0);
        // Not a suffix: Go's bisection probes 2 (true), then 1 (false), and stops at 2.
        assert_eq!(go_search(5, |i| i == 2 || i == 0), 2);
        assert_eq!(go_search(5, |i| i == 3), 5);
    }

    fn fraction(lower: f64, upper: f64, buckets: &[(f64, f64)]) -> f64 {
        bucket_fraction(lower, upper, &mut buckets.to_vec())
    }

    #[test]
    fn fractions_like_histograms_test() {
        let pos = [(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (INF, 100.0)];
        let neg = [(-3.0, 10.0), (-2.0, 12.0), (-1.0, 15.0), (INF, 100.0)];
        assert!(close(fraction(0.0, 1.5, &pos), 0.02));
        assert!(close(fraction(-4.0, -2.0, &neg), 0.02));
        assert!(close(fraction(f64::NEG_INFINITY, -1.5, &neg), 0.135));
        assert_eq!(fraction(f64::NEG_INFINITY, INF, &pos), 1.0);
        assert_eq!(fraction(f64::NEG_INFINITY, INF, &neg), 1.0);
        assert_eq!(fraction(4.0, 5.0, &pos), 0.0);
        assert_eq!(fraction(0.0, 1.0, &neg), 0.0);
        assert!(close(fraction(2.0, 5.0, &pos), 0.03));
        assert!(close(fraction(400.0, INF, &pos), 0.94));
        assert_eq!(fraction(2.0, 2.0, &pos), 0.0);
        assert_eq!(fraction(3.0, 2.0, &pos), 0.0);
        assert_eq!(fraction(0.0, 1.0, &[(INF, 100.0)]), 0.0);
        assert!(fraction(0.0, 5.0, &[(1.0, 0.0), (2.0, 0.0), (INF, 0.0)]).is_nan());
        assert!(close(fraction(2.0, 3.5, &pos), 0.03));
        assert!(close(fraction(0.5, 2.0, &pos), 0.025));
        assert!(close(fraction(1.0, 3.0, &pos), 0.05));
        assert!(close(fraction(0.1, 0.75, &[(0.5, 2.5), (1.0, 7.5), (INF, 100.0)]), 0.045));
        let crossing = [(-2.0, 5.0), (-1.0, 10.0), (0.0, 15.0), (1.0, 20.0), (INF, 100.0)];
        assert!(close(fraction(-1.0, 1.0, &crossing), 0.1));
        assert!(fraction(f64::NAN, 1.0, &[(1.0, 1.0), (INF, 100.0)]).is_nan());
        assert!(fraction(0.0, f64::NAN, &[(1.0, 1.0), (INF, 100.0)]).is_nan());
        let small = [(1.0, 1.0), (2.0, 3.0), (INF, 10.0)];
        assert_eq!(fraction(-10.0, -5.0, &small), 0.0);
        assert_eq!(fraction(5.0, 10.0, &small), 0.0);
        assert!(fraction(0.0, 1.0, &[]).is_nan());
        assert!(fraction(0.0, 1.0, &[(1.0, 1.0)]).is_nan());
    }

    #[test]
    fn fractions_of_testhistogram2_and_3() {
        // testhistogram2 at 50m: le 0 2 4 6 +Inf, counts 0 10 20 30 30.
        let b = [(0.0, 0.0), (2.0, 10.0), (4.0, 20.0), (6.0, 30.0), (INF, 30.0)];
        assert!(close(fraction(0.0, 4.0, &b), 2.0 / 3.0));
        assert!(close(fraction(0.0, 6.0, &b), 1.0));
        assert!(close(fraction(0.0, 3.5, &b), 0.5833333333333334));
        assert!(close(fraction(0.0, 0.2, &POSITIVE3), 0.6363636363636364));
        assert_eq!(fraction(0.0, 0.2, &NEGATIVE3), 0.0);
    }

    #[test]
    fn compare_bounds_orders_nan_last() {
        assert_eq!(compare_bounds(1.0, 2.0), Ordering::Less);
        assert_eq!(compare_bounds(f64::NAN, INF), Ordering::Greater);
        assert_eq!(compare_bounds(INF, f64::NAN), Ordering::Less);
        assert_eq!(compare_bounds(f64::NAN, f64::NAN), Ordering::Equal);
    }
}
