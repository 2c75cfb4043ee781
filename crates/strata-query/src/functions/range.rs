//! Functions of a range vector (`rate(x[5m])`, `avg_over_time(x[1h])`, ...): one output value
//! per series and step, computed from the series' float samples in the range, with Prometheus's
//! arithmetic (extrapolated rates, Kahan-compensated sums and means, its regression and
//! smoothing).

use super::stats::{self, KahanSum, Mean, kahan_add};
use crate::value::Annotations;

/// A PromQL function over a range vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    DoubleExponentialSmoothing,
    Changes,
    Resets,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    MadOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    TsOfLastOverTime,
    TsOfFirstOverTime,
    AbsentOverTime,
}

const ALL: [RangeFn; 27] = [
    RangeFn::Rate,
    RangeFn::Increase,
    RangeFn::Delta,
    RangeFn::Irate,
    RangeFn::Idelta,
    RangeFn::Deriv,
    RangeFn::PredictLinear,
    RangeFn::DoubleExponentialSmoothing,
    RangeFn::Changes,
    RangeFn::Resets,
    RangeFn::AvgOverTime,
    RangeFn::SumOverTime,
    RangeFn::CountOverTime,
    RangeFn::MinOverTime,
    RangeFn::MaxOverTime,
    RangeFn::StddevOverTime,
    RangeFn::StdvarOverTime,
    RangeFn::QuantileOverTime,
    RangeFn::LastOverTime,
    RangeFn::FirstOverTime,
    RangeFn::PresentOverTime,
    RangeFn::MadOverTime,
    RangeFn::TsOfMaxOverTime,
    RangeFn::TsOfMinOverTime,
    RangeFn::TsOfLastOverTime,
    RangeFn::TsOfFirstOverTime,
    RangeFn::AbsentOverTime,
];

impl RangeFn {
    /// The function of PromQL name `name`; `holt_winters` (Prometheus 2.x's name) is
    /// [`RangeFn::DoubleExponentialSmoothing`].
    pub fn from_name(name: &str) -> Option<RangeFn> {
        if name == "holt_winters" {
            return Some(RangeFn::DoubleExponentialSmoothing);
        }
        ALL.into_iter().find(|f| f.name() == name)
    }

    /// The PromQL name (Prometheus 3's: `double_exponential_smoothing`).
    pub fn name(self) -> &'static str {
        match self {
            RangeFn::Rate => "rate",
            RangeFn::Increase => "increase",
            RangeFn::Delta => "delta",
            RangeFn::Irate => "irate",
            RangeFn::Idelta => "idelta",
            RangeFn::Deriv => "deriv",
            RangeFn::PredictLinear => "predict_linear",
            RangeFn::DoubleExponentialSmoothing => "double_exponential_smoothing",
            RangeFn::Changes => "changes",
            RangeFn::Resets => "resets",
            RangeFn::AvgOverTime => "avg_over_time",
            RangeFn::SumOverTime => "sum_over_time",
            RangeFn::CountOverTime => "count_over_time",
            RangeFn::MinOverTime => "min_over_time",
            RangeFn::MaxOverTime => "max_over_time",
            RangeFn::StddevOverTime => "stddev_over_time",
            RangeFn::StdvarOverTime => "stdvar_over_time",
            RangeFn::QuantileOverTime => "quantile_over_time",
            RangeFn::LastOverTime => "last_over_time",
            RangeFn::FirstOverTime => "first_over_time",
            RangeFn::PresentOverTime => "present_over_time",
            RangeFn::MadOverTime => "mad_over_time",
            RangeFn::TsOfMaxOverTime => "ts_of_max_over_time",
            RangeFn::TsOfMinOverTime => "ts_of_min_over_time",
            RangeFn::TsOfLastOverTime => "ts_of_last_over_time",
            RangeFn::TsOfFirstOverTime => "ts_of_first_over_time",
            RangeFn::AbsentOverTime => "absent_over_time",
        }
    }

    /// Whether the output keeps the input's metric name. Prometheus keeps it only for
    /// `last_over_time` and `first_over_time`, which pick a sample as it is; every other range
    /// function, `ts_of_*_over_time` included, drops `__name__`. (`absent_over_time` builds its
    /// labels from the selector instead.)
    pub fn keeps_name(self) -> bool {
        matches!(self, RangeFn::LastOverTime | RangeFn::FirstOverTime)
    }

    /// How many scalar arguments the function takes besides the range vector: φ of
    /// `quantile_over_time` (before the range), the duration of `predict_linear` and the two
    /// factors of `double_exponential_smoothing` (after it).
    pub fn scalar_args(self) -> usize {
        match self {
            RangeFn::QuantileOverTime | RangeFn::PredictLinear => 1,
            RangeFn::DoubleExponentialSmoothing => 2,
            _ => 0,
        }
    }
}

/// One output value of `f` for one series at one step.
///
/// `samples` are the series' float samples in `(range_start, range_end]` (ms), in time order,
/// staleness markers removed. `eval_t` is the step's evaluation time in ms (`predict_linear`
/// extrapolates from it). `args` are the scalar arguments in order (see
/// [`RangeFn::scalar_args`]).
///
/// Returns None where Prometheus has no output sample: for an empty range (except
/// `absent_over_time`, which is 1 exactly then), for `rate`, `increase`, `delta`, `irate`,
/// `idelta`, `deriv`, `predict_linear` and `double_exponential_smoothing` with fewer than two
/// samples. Prometheus's warnings go into `ann`; an invalid smoothing or trend factor is an
/// evaluation error (only raised for a non-empty range, as in Prometheus).
pub fn eval(
    f: RangeFn,
    samples: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    eval_t: i64,
    args: &[f64],
    ann: &mut Annotations,
) -> Result<Option<f64>, String> {
    if args.len() < f.scalar_args() {
        return Err(format!("expected {} scalar argument(s) for {}, got {}", f.scalar_args(), f.name(), args.len()));
    }
    // Prometheus does not call range functions for ranges without samples; absent_over_time is
    // the one that answers exactly then.
    let (Some(&(first_t, first_v)), Some(&(last_t, last_v))) = (samples.first(), samples.last()) else {
        return Ok((f == RangeFn::AbsentOverTime).then_some(1.0));
    };
    let values = || samples.iter().map(|&(_, v)| v);
    let v = match f {
        RangeFn::Rate => extrapolated_rate(samples, range_start, range_end, true, true),
        RangeFn::Increase => extrapolated_rate(samples, range_start, range_end, true, false),
        RangeFn::Delta => extrapolated_rate(samples, range_start, range_end, false, false),
        RangeFn::Irate => instant_value(samples, true),
        RangeFn::Idelta => instant_value(samples, false),
        RangeFn::Deriv => {
            if samples.len() < 2 {
                return Ok(None);
            }
            // Regressing around the first sample's time keeps the numbers small.
            Some(linear_regression(samples, first_t).0)
        }
        RangeFn::PredictLinear => {
            if samples.len() < 2 {
                return Ok(None);
            }
            let (slope, intercept) = linear_regression(samples, eval_t);
            Some(slope * args[0] + intercept)
        }
        RangeFn::DoubleExponentialSmoothing => double_exponential_smoothing(samples, args[0], args[1])?,
        RangeFn::Changes => {
            // NaN to NaN is no change.
            let changed = |w: &&[(i64, f64)]| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan());
            Some(samples.windows(2).filter(changed).count() as f64)
        }
        RangeFn::Resets => Some(samples.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
        RangeFn::AvgOverTime => {
            let mut mean = Mean::new(first_v);
            values().skip(1).for_each(|v| mean.add(v));
            Some(mean.value())
        }
        RangeFn::SumOverTime => {
            let mut sum = KahanSum::new();
            values().for_each(|v| sum.add(v));
            Some(sum.value())
        }
        RangeFn::CountOverTime => Some(samples.len() as f64),
        RangeFn::MinOverTime => Some(select(samples, |cur, best| cur < best || best.is_nan()).1),
        RangeFn::MaxOverTime => Some(select(samples, |cur, best| cur > best || best.is_nan()).1),
        RangeFn::TsOfMinOverTime => Some(seconds(select(samples, |cur, best| cur <= best || best.is_nan()).0)),
        RangeFn::TsOfMaxOverTime => Some(seconds(select(samples, |cur, best| cur >= best || best.is_nan()).0)),
        RangeFn::StdvarOverTime => Some(stats::variance_over_time(values())),
        RangeFn::StddevOverTime => Some(stats::variance_over_time(values()).sqrt()),
        RangeFn::QuantileOverTime => {
            let q = args[0];
            if !stats::is_valid_quantile(q) {
                ann.warn(stats::invalid_quantile_warning(q));
            }
            Some(stats::quantile(q, &mut values().collect::<Vec<_>>()))
        }
        RangeFn::MadOverTime => Some(median_absolute_deviation(values().collect())),
        RangeFn::LastOverTime => Some(last_v),
        RangeFn::FirstOverTime => Some(first_v),
        RangeFn::TsOfLastOverTime => Some(seconds(last_t)),
        RangeFn::TsOfFirstOverTime => Some(seconds(first_t)),
        RangeFn::PresentOverTime => Some(1.0),
        RangeFn::AbsentOverTime => None,
    };
    Ok(v)
}

/// A timestamp in ms as the seconds Prometheus outputs (`float64(t) / 1000`).
fn seconds(t: i64) -> f64 {
    t as f64 / 1000.0
}

/// Go's `time.Duration.Seconds()` of a duration of `ms` milliseconds: whole seconds plus the
/// fraction, each converted separately.
fn duration_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}

/// Prometheus's `extrapolatedRate` for floats (rate, increase, delta).
///
/// The difference between the last and the first sample (for counters, plus the value before each
/// decrease, a counter reset) is extrapolated towards the range boundaries: all the way to a
/// boundary if the first (last) sample lies within 1.1 average sample intervals of it, else by
/// half an average interval; for counters, never below the point where the counter would have
/// been zero. Rates are per second of the range.
fn extrapolated_rate(
    samples: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    // The evaluator's sliding windows use the prefix sums; one window takes their last.
    let resets = if is_counter { reset_prefix(samples).last().copied().unwrap_or(0.0) } else { 0.0 };
    extrapolate(samples, resets, range_start, range_end, is_counter, is_rate)
}

/// The value before each decrease of a counter, summed from the start: `prefix[k]` is the
/// correction for the resets among `samples[..=k]`. The resets inside `samples[lo..hi]` are
/// `prefix[hi - 1] - prefix[lo]`, which makes `rate` over a sliding window constant in the
/// window's length.
pub fn reset_prefix(samples: &[(i64, f64)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples.len());
    let mut sum = 0.0;
    out.push(0.0);
    for w in samples.windows(2) {
        if w[1].1 < w[0].1 {
            sum += w[0].1;
        }
        out.push(sum);
    }
    out
}

/// `rate`, `increase` or `delta` of `samples` whose counter resets add up to `resets` (0 for
/// `delta`), as [`extrapolated_rate`] computes it.
pub fn extrapolate(
    samples: &[(i64, f64)],
    resets: f64,
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let result = last_v - first_v + resets;

    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_interval = sampled_interval / (samples.len() - 1) as f64;
    let threshold = average_interval * 1.1;

    if duration_to_start >= threshold {
        duration_to_start = average_interval / 2.0;
    }
    if is_counter {
        // Counters cannot go below zero: extrapolate at most to where the slope reaches zero.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first_v >= 0.0 {
            duration_to_zero = sampled_interval * (first_v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_interval / 2.0;
    }

    let mut factor = 1.0;
    if sampled_interval != 0.0 {
        factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    }
    if is_rate {
        factor /= duration_seconds(range_end - range_start);
    }
    Some(result * factor)
}

/// Prometheus's `instantValue` for floats (irate, idelta): from the last two samples; for
/// `irate` a decrease counts as a reset, so the increase is the last value itself.
fn instant_value(samples: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    let [.., (prev_t, prev_v), (last_t, last_v)] = *samples else {
        return None;
    };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    // For irate, a decrease is a counter reset and the increase is the last value itself. A NaN
    // on either side is no reset: the difference (NaN) is taken.
    let reset = is_rate && last_v < prev_v;
    let mut result = if reset { last_v } else { last_v - prev_v };
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Prometheus's `linearRegression`: least squares over `samples` with x in seconds relative to
/// `intercept_time` (ms), sums compensated. Returns the slope per second and the value at
/// `intercept_time`. Constant values give slope 0 (NaN and NaN for an infinite constant).
pub fn linear_regression(samples: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let Some(&(_, init_y)) = samples.first() else {
        return (f64::NAN, f64::NAN);
    };
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let mut const_y = true;
    for (i, &(t, y)) in samples.iter().enumerate() {
        if const_y && i > 0 && y != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_add(x, sum_x, c_x);
        (sum_y, c_y) = kahan_add(y, sum_y, c_y);
        (sum_xy, c_xy) = kahan_add(x * y, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_add(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;

    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Prometheus's `double_exponential_smoothing` (formerly `holt_winters`) with smoothing factor
/// `sf` and trend factor `tf`, both required in (0, 1) (a NaN passes the check, as in
/// Prometheus). None with fewer than two samples.
fn double_exponential_smoothing(samples: &[(i64, f64)], sf: f64, tf: f64) -> Result<Option<f64>, String> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {}", stats::format_go_f(sf)));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(format!("invalid trend factor. Expected: 0 < tf < 1, got: {}", stats::format_go_f(tf)));
    }
    if samples.len() < 2 {
        return Ok(None);
    }
    let mut s0 = 0.0;
    let mut s1 = samples[0].1;
    let mut b = samples[1].1 - samples[0].1;
    for (i, &(_, v)) in samples.iter().enumerate().skip(1) {
        let x = sf * v;
        // The trend: the initial difference first, then smoothed differences of smoothed values.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Ok(Some(s1))
}

/// The sample Prometheus's `compareOverTime` keeps: starting with the first, each sample for
/// which `better(value, kept_value)` holds replaces the kept one.
fn select(samples: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> (i64, f64) {
    let mut kept = samples[0];
    for &(t, v) in samples {
        if better(v, kept.1) {
            kept = (t, v);
        }
    }
    kept
}

/// `mad_over_time`: the median of the absolute deviations from the median; NaN if any value is
/// NaN.
fn median_absolute_deviation(mut values: Vec<f64>) -> f64 {
    if values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let median = stats::quantile(0.5, &mut values);
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    stats::quantile(0.5, &mut values)
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // Values are written as Prometheus's test files write them.
mod tests {
    use super::*;
    use crate::functions::stats::almost_equal;

    const S: i64 = 1000;
    const M: i64 = 60 * S;

    /// Points of a `load <interval>` line: values at 0, interval, 2 interval, ... (None: `_`).
    fn load(interval: i64, values: &[Option<f64>]) -> Vec<(i64, f64)> {
        values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as i64 * interval, v))).collect()
    }

    /// `start+stepxN`: N+1 values.
    fn seq(start: f64, step: f64, n: usize) -> Vec<Option<f64>> {
        (0..=n).map(|i| Some(start + step * i as f64)).collect()
    }

    fn vals(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|&v| Some(v)).collect()
    }

    /// Evaluates `f` at `t` over `[range]` with an `offset`, as the evaluator would: the samples
    /// in (t - offset - range, t - offset].
    fn at_offset(f: RangeFn, series: &[(i64, f64)], t: i64, range: i64, offset: i64, args: &[f64]) -> Option<f64> {
        let (start, end) = (t - offset - range, t - offset);
        let window: Vec<(i64, f64)> = series.iter().copied().filter(|&(ts, _)| ts > start && ts <= end).collect();
        let mut ann = Annotations::default();
        let out = eval(f, &window, start, end, t, args, &mut ann).unwrap_or_else(|e| panic!("{e}"));
        assert!(ann.warnings.is_empty() && ann.infos.is_empty(), "{ann:?}");
        out
    }

    fn at(f: RangeFn, series: &[(i64, f64)], t: i64, range: i64, args: &[f64]) -> Option<f64> {
        at_offset(f, series, t, range, 0, args)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| almost_equal(a, b, 1e-12))
    }

    fn assert_close(a: Option<f64>, b: f64) {
        assert!(close(a, b), "{a:?} != {b}");
    }

    #[test]
    fn names_round_trip() {
        for f in ALL {
            assert_eq!(RangeFn::from_name(f.name()), Some(f));
        }
        assert_eq!(RangeFn::from_name("holt_winters"), Some(RangeFn::DoubleExponentialSmoothing));
        assert_eq!(RangeFn::from_name("rate"), Some(RangeFn::Rate));
        assert_eq!(RangeFn::from_name("ts_of_first_over_time"), Some(RangeFn::TsOfFirstOverTime));
        assert_eq!(RangeFn::from_name("abs"), None);
        assert_eq!(RangeFn::from_name("absent"), None);
        assert_eq!(RangeFn::from_name("histogram_quantile"), None);
    }

    #[test]
    fn only_last_and_first_over_time_keep_the_name() {
        for f in ALL {
            assert_eq!(f.keeps_name(), matches!(f, RangeFn::LastOverTime | RangeFn::FirstOverTime), "{f:?}");
        }
    }

    #[test]
    fn resets_and_changes() {
        let foo = load(5 * M, &vals(&[1.0, 2.0, 3.0, 0.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.0]));
        let bar = load(5 * M, &vals(&[1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
        let biz = load(5 * M, &vals(&[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]));
        let t = 50 * M;
        assert_eq!(at(RangeFn::Resets, &foo, t, 5 * M, &[]), None);
        for (range, want) in [(10 * M, [0.0, 0.0, 0.0]), (20 * M, [1.0, 0.0, 0.0]), (30 * M, [1.0, 0.0, 0.0])] {
            for (series, want) in [&foo, &bar, &biz].into_iter().zip(want) {
                assert_eq!(at(RangeFn::Resets, series, t, range, &[]), Some(want));
            }
        }
        assert_eq!(at(RangeFn::Resets, &foo, t, 600 * S, &[]), Some(0.0));
        assert_eq!(at(RangeFn::Resets, &foo, t, 32 * M, &[]), Some(2.0));
        assert_eq!(at(RangeFn::Resets, &bar, t, 32 * M, &[]), Some(1.0));
        assert_eq!(at(RangeFn::Resets, &foo, t, 50 * M, &[]), Some(3.0));
        assert_eq!(at(RangeFn::Resets, &bar, t, 50 * M, &[]), Some(1.0));
        assert_eq!(at(RangeFn::Resets, &biz, t, 50 * M, &[]), Some(0.0));

        assert_eq!(at(RangeFn::Changes, &foo, t, 5 * M, &[]), None);
        assert_eq!(at(RangeFn::Changes, &foo, t, 6 * M, &[]), Some(0.0));
        for (range, want) in [(20 * M, [2.0, 2.0, 0.0]), (30 * M, [3.0, 4.0, 0.0]), (50 * M, [7.0, 8.0, 1.0])] {
            for (series, want) in [&foo, &bar, &biz].into_iter().zip(want) {
                assert_eq!(at(RangeFn::Changes, series, t, range, &[]), Some(want));
            }
        }
        // NaN to NaN is no change, NaN to a number is.
        let b = load(5 * M, &vals(&[f64::NAN, f64::NAN, f64::NAN]));
        let c = load(5 * M, &vals(&[0.0, f64::NAN, 0.0]));
        assert_eq!(at(RangeFn::Changes, &b, 15 * M, 20 * M, &[]), Some(0.0));
        assert_eq!(at(RangeFn::Changes, &c, 15 * M, 20 * M, &[]), Some(2.0));
    }

    #[test]
    fn increase_extrapolates_to_zero_point() {
        let foo = load(5 * M, &seq(0.0, 10.0, 10));
        let mut bar_values = seq(0.0, 18.0, 5);
        bar_values.extend(seq(0.0, 18.0, 5));
        let bar = load(5 * M, &bar_values);
        let dings = load(5 * M, &seq(10.0, 10.0, 10));
        let bumms = load(5 * M, &seq(1.0, 10.0, 10));
        let t = 50 * M;
        for (series, want) in [(&foo, 100.0), (&bar, 160.0), (&dings, 100.0), (&bumms, 100.0)] {
            assert_close(at(RangeFn::Increase, series, t, 50 * M, &[]), want);
        }
        for (series, want) in [(&foo, 100.0), (&bar, 162.0), (&dings, 105.0), (&bumms, 101.0)] {
            assert_close(at(RangeFn::Increase, series, t, 100 * M, &[]), want);
        }
        // A decrease is a reset to zero: 0 1 2 3 2 3 4 increases by 7.
        let reset = load(5 * M, &vals(&[0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0]));
        assert_close(at(RangeFn::Increase, &reset, 30 * M, 30 * M, &[]), 7.0);
    }

    #[test]
    fn rate_with_resets_offsets_and_zero_cutoff() {
        let mut v = seq(0.0, 27.0, 4);
        v.extend(seq(0.0, 27.0, 5));
        let middle = load(5 * M, &v);
        assert_close(at(RangeFn::Rate, &middle, 50 * M, 50 * M, &[]), 0.08);
        let mut v = seq(0.0, 10.0, 9);
        v.extend(vals(&[0.0, 10.0]));
        let end = load(5 * M, &v);
        assert_eq!(at(RangeFn::Rate, &end, 50 * M, 5 * M, &[]), None);
        assert_eq!(at(RangeFn::Rate, &end, 50 * M, 6 * M, &[]), Some(0.0));

        let window = load(5 * M, &seq(0.0, 80.0, 10));
        assert_close(at(RangeFn::Rate, &window, 50 * M, 50 * M, &[]), 0.26666666666666666);
        let a = load(5 * M, &seq(0.0, 10.0, 10));
        let b = load(5 * M, &seq(0.0, 20.0, 10));
        assert_close(at_offset(RangeFn::Rate, &a, 50 * M, 10 * M, 5 * M, &[]), 0.03333333333333333);
        assert_close(at_offset(RangeFn::Rate, &b, 50 * M, 10 * M, 5 * M, &[]), 0.06666666666666667);

        let cutoff = |start: f64| load(4 * M, &seq(start, 240.0, 10));
        for (start, want) in [(0.0, 0.5), (60.0, 0.55), (120.0, 0.6), (180.0, 0.6), (240.0, 0.6), (300.0, 0.6)] {
            assert_close(at(RangeFn::Rate, &cutoff(start), 10 * M, 20 * M, &[]), want);
            assert_close(at(RangeFn::Rate, &cutoff(start), 50 * M, 20 * M, &[]), 0.6);
        }
    }

    #[test]
    fn rate_needs_two_samples() {
        let one = [(10 * S, 5.0)];
        let mut ann = Annotations::default();
        for f in [RangeFn::Rate, RangeFn::Increase, RangeFn::Delta, RangeFn::Irate, RangeFn::Idelta, RangeFn::Deriv] {
            assert_eq!(eval(f, &one, 0, 60 * S, 60 * S, &[], &mut ann), Ok(None), "{f:?}");
        }
        assert_eq!(eval(RangeFn::PredictLinear, &one, 0, 60 * S, 60 * S, &[10.0], &mut ann), Ok(None));
        assert_eq!(eval(RangeFn::DoubleExponentialSmoothing, &one, 0, 60 * S, 60 * S, &[0.5, 0.5], &mut ann), Ok(None));
        assert_eq!(ann, Annotations::default());
    }

    #[test]
    fn rate_of_a_counter_below_zero_is_not_cut_off() {
        // A negative first value: no zero point, plain extrapolation by the threshold rules.
        let s = [(10 * S, -5.0), (20 * S, 5.0), (30 * S, 15.0)];
        // result 20 over 20s, extrapolated 10s to the start (within 1.1 × 10s) and 0 to the end.
        assert_close(at(RangeFn::Increase, &s, 30 * S, 30 * S, &[]), 30.0);
    }

    #[test]
    fn rate_of_sub_second_ranges_uses_duration_seconds() {
        assert_eq!(duration_seconds(1001), 1.001);
        assert_eq!(duration_seconds(300_000), 300.0);
        assert_eq!(duration_seconds(1), 0.001);
        let s = [(100, 1.0), (600, 2.0), (1100, 3.0)];
        // 2 over 1s, extrapolated by 0.1s to the start and 0.1 to the end → 2.4 per 1.2s.
        assert_close(at(RangeFn::Rate, &s, 1200, 1200, &[]), 2.0);
    }

    #[test]
    fn irate_and_idelta() {
        let foo = load(5 * M, &seq(0.0, 10.0, 10));
        let mut v = seq(0.0, 10.0, 5);
        v.extend(seq(0.0, 10.0, 5));
        let bar = load(5 * M, &v);
        assert_close(at(RangeFn::Irate, &foo, 50 * M, 50 * M, &[]), 0.03333333333333333);
        assert_close(at(RangeFn::Irate, &bar, 50 * M, 50 * M, &[]), 0.03333333333333333);
        assert_close(at(RangeFn::Irate, &foo, 30 * M, 50 * M, &[]), 0.03333333333333333);
        assert_eq!(at(RangeFn::Irate, &bar, 30 * M, 50 * M, &[]), Some(0.0));

        let nan = load(5 * M, &vals(&[1.0, f64::NAN, f64::NAN, 5.0, 11.0]));
        let range = 15 * M + S;
        let irate: Vec<Option<f64>> = (0..=4).map(|i| at(RangeFn::Irate, &nan, i * 5 * M, range, &[])).collect();
        assert_eq!(irate[0], None);
        assert!(irate[1..4].iter().all(|v| v.is_some_and(f64::is_nan)), "{irate:?}");
        assert_close(irate[4], 0.02);

        let foo = load(5 * M, &vals(&[0.0, 50.0, 100.0, 150.0]));
        let bar = load(5 * M, &vals(&[0.0, 50.0, 100.0, 50.0]));
        assert_eq!(at(RangeFn::Idelta, &foo, 20 * M, 20 * M, &[]), Some(50.0));
        assert_eq!(at(RangeFn::Idelta, &bar, 20 * M, 20 * M, &[]), Some(-50.0));
        let idelta: Vec<Option<f64>> = (0..=4).map(|i| at(RangeFn::Idelta, &nan, i * 5 * M, range, &[])).collect();
        assert_eq!(idelta[0], None);
        assert!(idelta[1..4].iter().all(|v| v.is_some_and(f64::is_nan)), "{idelta:?}");
        assert_eq!(idelta[4], Some(6.0));
    }

    #[test]
    fn delta() {
        let foo = load(5 * M, &vals(&[0.0, 50.0, 100.0, 150.0, 200.0]));
        let bar = load(5 * M, &vals(&[200.0, 150.0, 100.0, 50.0, 0.0]));
        assert_close(at(RangeFn::Delta, &foo, 20 * M, 20 * M, &[]), 200.0);
        assert_close(at(RangeFn::Delta, &bar, 20 * M, 20 * M, &[]), -200.0);
    }

    #[test]
    fn deriv_and_predict_linear() {
        let total = load(5 * M, &seq(0.0, 80.0, 10));
        assert_close(at(RangeFn::Deriv, &total, 50 * M, 50 * M, &[]), 0.26666666666666666);
        let mut v = seq(0.0, 10.0, 4);
        v.extend(seq(0.0, 10.0, 5));
        let middle = load(5 * M, &v);
        assert_close(at(RangeFn::Deriv, &middle, 50 * M, 100 * M, &[]), 0.010606060606060607);
        let mut v = vals(&[f64::NEG_INFINITY]);
        v.extend(seq(0.0, 80.0, 10));
        v.extend(vals(&[f64::INFINITY]));
        let inf = load(5 * M, &v);
        assert!(at(RangeFn::Deriv, &inf, 100 * M, 100 * M, &[]).is_some_and(f64::is_nan));
        assert!(at(RangeFn::PredictLinear, &inf, 100 * M, 100 * M, &[6000.0]).is_some_and(f64::is_nan));

        assert_close(at(RangeFn::PredictLinear, &middle, 50 * M, 50 * M, &[3600.0]), 70.0);
        // predict_linear(x[55m] @ 3000, 3600): the range ends at 3000s, the regression is around
        // the evaluation time.
        let at_3000 = |t: i64| at_offset(RangeFn::PredictLinear, &middle, t, 55 * M, t - 3000 * S, &[3600.0]);
        assert_close(at_3000(50 * M), 76.81818181818181);
        assert_close(at_3000(10 * M), 51.36363636363637);
        assert_close(at_3000(70 * M), 89.54545454545455);
        // The value at the last sample plus deriv × t, when the last sample is on the line.
        let predicted = at(RangeFn::PredictLinear, &total, 50 * M, 50 * M, &[3600.0]);
        let deriv = at(RangeFn::Deriv, &total, 50 * M, 50 * M, &[]).unwrap_or(f64::NAN);
        assert_close(predicted, 800.0 + deriv * 3600.0);
    }

    #[test]
    fn linear_regression_of_constants() {
        let c = [(0, 3.0), (1000, 3.0), (2000, 3.0)];
        assert_eq!(linear_regression(&c, 0), (0.0, 3.0));
        let (slope, intercept) = linear_regression(&[(0, f64::INFINITY), (1000, f64::INFINITY)], 0);
        assert!(slope.is_nan() && intercept.is_nan());
        let (slope, intercept) = linear_regression(&[(0, 1.0), (1000, 3.0)], 2000);
        assert_eq!((slope, intercept), (2.0, 5.0));
    }

    #[test]
    fn double_exponential_smoothing_like_functions_test() {
        let up = |a: Vec<Option<f64>>, b: Vec<Option<f64>>| {
            let mut v = a;
            v.extend(b);
            load(10 * S, &v)
        };
        let cases = [
            (up(seq(0.0, 10.0, 1000), seq(100.0, 30.0, 1000)), 8000.0),
            (up(seq(0.0, 20.0, 1000), seq(200.0, 30.0, 1000)), 16000.0),
            (up(seq(0.0, 30.0, 1000), seq(300.0, 80.0, 1000)), 24000.0),
            (up(seq(0.0, 40.0, 2000), vec![]), 32000.0),
            (up(seq(8000.0, -10.0, 1000), vec![]), 0.0),
            (up(seq(0.0, -20.0, 1000), vec![]), -16000.0),
            (up(seq(0.0, 30.0, 1000), seq(300.0, -80.0, 1000)), 24000.0),
            (up(seq(0.0, -40.0, 1000), seq(0.0, 40.0, 1000)), -32000.0),
        ];
        for (series, want) in cases {
            let got = at(RangeFn::DoubleExponentialSmoothing, &series, 8000 * S, M, &[0.01, 0.1]);
            assert!(got.is_some_and(|g| almost_equal(g, want, 1e-6)), "{got:?} != {want}");
        }
        // The mixed series of functions.test, floats only, at 20010s.
        for (series, want) in
            [(up(seq(0.0, 10.0, 1000), seq(100.0, 30.0, 1000)), 30100.0), (up(seq(0.0, 40.0, 2000), vec![]), 80000.0)]
        {
            let got = at(RangeFn::DoubleExponentialSmoothing, &series, 20010 * S, M, &[0.01, 0.1]);
            assert!(got.is_some_and(|g| almost_equal(g, want, 1e-6)), "{got:?} != {want}");
        }
    }

    #[test]
    fn double_exponential_smoothing_by_hand() {
        // s1 = 1, b = 2; i=1: s1 = 0.5·3 + 0.5·(1 + 2) = 3; i=2: b = 0.5·(3 - 1) + 0.5·2 = 2,
        // s1 = 0.5·4 + 0.5·(3 + 2) = 4.5.
        let s = [(S, 1.0), (2 * S, 3.0), (3 * S, 4.0)];
        assert_eq!(at(RangeFn::DoubleExponentialSmoothing, &s, 3 * S, 3 * S, &[0.5, 0.5]), Some(4.5));
        assert_eq!(at(RangeFn::DoubleExponentialSmoothing, &s[..2], 3 * S, 3 * S, &[0.5, 0.5]), Some(3.0));
    }

    #[test]
    fn double_exponential_smoothing_rejects_bad_factors() {
        let s = [(S, 1.0), (2 * S, 3.0)];
        let mut ann = Annotations::default();
        let run = |sf: f64, tf: f64, ann: &mut Annotations| {
            eval(RangeFn::DoubleExponentialSmoothing, &s, 0, 2 * S, 2 * S, &[sf, tf], ann)
        };
        assert_eq!(
            run(0.0, 0.5, &mut ann),
            Err("invalid smoothing factor. Expected: 0 < sf < 1, got: 0.000000".to_string())
        );
        assert_eq!(
            run(1.0, 0.5, &mut ann),
            Err("invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000".to_string())
        );
        assert_eq!(
            run(0.5, 1.5, &mut ann),
            Err("invalid trend factor. Expected: 0 < tf < 1, got: 1.500000".to_string())
        );
        assert_eq!(
            run(-1.0, 2.0, &mut ann),
            Err("invalid smoothing factor. Expected: 0 < sf < 1, got: -1.000000".to_string())
        );
        // NaN passes Prometheus's check and yields NaN.
        assert!(run(f64::NAN, 0.5, &mut ann).is_ok_and(|v| v.is_some_and(f64::is_nan)));
        // One sample is still checked; an empty range is not evaluated at all.
        assert!(eval(RangeFn::DoubleExponentialSmoothing, &s[..1], 0, 2 * S, 2 * S, &[0.0, 0.5], &mut ann).is_err());
        assert_eq!(eval(RangeFn::DoubleExponentialSmoothing, &[], 0, 2 * S, 2 * S, &[0.0, 0.5], &mut ann), Ok(None));
        assert_eq!(ann, Annotations::default());
    }

    #[test]
    fn avg_sum_count_over_time() {
        let metric = load(10 * S, &vals(&[1.0, 2.0, 3.0, 4.0, 5.0]));
        let t = 55 * S;
        assert_eq!(at(RangeFn::AvgOverTime, &metric, t, 10 * S, &[]), None);
        assert_eq!(at(RangeFn::AvgOverTime, &metric, t, 20 * S, &[]), Some(5.0));
        assert_eq!(at(RangeFn::AvgOverTime, &metric, t, M, &[]), Some(3.0));
        assert_eq!(at(RangeFn::SumOverTime, &metric, t, M, &[]), Some(15.0));
        assert_eq!(at(RangeFn::CountOverTime, &metric, t, M, &[]), Some(5.0));
        let big = 9.988465674311579e307;
        let m8 = load(10 * S, &vals(&[big, big]));
        assert_eq!(at(RangeFn::AvgOverTime, &m8, t, M, &[]), Some(big));
        assert_eq!(at(RangeFn::SumOverTime, &m8, t, M, &[]), Some(f64::INFINITY));
        let m11 = load(10 * S, &vals(&[1.0, 2.0, 3.0, f64::NAN, f64::NAN]));
        assert_eq!(at(RangeFn::AvgOverTime, &m11, 20 * S, M, &[]), Some(2.0));
        assert!(at(RangeFn::AvgOverTime, &m11, 30 * S, M, &[]).is_some_and(f64::is_nan));
        let huge = load(10 * S, &vals(&[1.0, 1e100, 1.0, -1e100]));
        assert_eq!(at(RangeFn::SumOverTime, &huge, M, 2 * M, &[]), Some(2.0));
        assert_eq!(at(RangeFn::AvgOverTime, &huge, M, 2 * M, &[]), Some(0.5));
        // Dense samples: load 1ms metric 1+0x4000.
        let dense = load(1, &seq(1.0, 0.0, 4000));
        for range in [1000, 1001, 1002, 1003, 2000, 2001, 2002, 2003, 3000, 3001, 3002, 3003] {
            assert_eq!(at(RangeFn::SumOverTime, &dense, 4 * S, range, &[]), Some(range as f64));
        }
        // avg_over_time(foo[...]) == 52 exactly for foo 52+0x100.
        let foo = load(10 * S, &seq(52.0, 0.0, 100));
        for range in [100, 110, 120, 130] {
            assert_eq!(at(RangeFn::AvgOverTime, &foo, 10 * M, range * S, &[]), Some(52.0));
        }
    }

    #[test]
    fn stddev_and_stdvar_over_time() {
        let metric = load(10 * S, &vals(&[0.0, 8.0, 8.0, 2.0, 3.0]));
        assert_close(at(RangeFn::StdvarOverTime, &metric, M, 2 * M, &[]), 10.56);
        let sd = at(RangeFn::StddevOverTime, &metric, M, 2 * M, &[]);
        assert!(sd.is_some_and(|v| almost_equal(v, 3.249615, 1e-6)), "{sd:?}");
        let x = 1.5990505637277868;
        let same = load(10 * S, &vals(&[x, x, x]));
        assert_eq!(at(RangeFn::StdvarOverTime, &same, 55 * S, M, &[]), Some(0.0));
        assert_eq!(at(RangeFn::StddevOverTime, &same, 55 * S, M, &[]), Some(0.0));
        let mixed_floats = load(10 * S, &vals(&[1.0, 1.0, 1.0]));
        assert_eq!(at(RangeFn::StddevOverTime, &mixed_floats, M, 2 * M, &[]), Some(0.0));
    }

    #[test]
    fn mad_over_time() {
        let metric = load(10 * S, &vals(&[4.0, 6.0, 2.0, 1.0, 999.0, 1.0, 2.0]));
        assert_eq!(at(RangeFn::MadOverTime, &metric, 70 * S, 70 * S, &[]), Some(1.0));
        let odd = load(10 * S, &vals(&[1.0, 2.0, 3.0, 4.0, 5.0]));
        assert_eq!(at(RangeFn::MadOverTime, &odd, 40 * S, 50 * S, &[]), Some(1.0));
        let equal = load(10 * S, &vals(&[7.0; 5]));
        assert_eq!(at(RangeFn::MadOverTime, &equal, 40 * S, 50 * S, &[]), Some(0.0));
        let single = load(10 * S, &vals(&[5.0]));
        assert_eq!(at(RangeFn::MadOverTime, &single, 0, 10 * S, &[]), Some(0.0));
        let nan = load(10 * S, &vals(&[1.0, 2.0, f64::NAN, 4.0]));
        assert!(at(RangeFn::MadOverTime, &nan, 30 * S, 40 * S, &[]).is_some_and(f64::is_nan));
        let mixed_floats = load(10 * S, &vals(&[1.0, 1.0, 1.0]));
        assert_eq!(at(RangeFn::MadOverTime, &mixed_floats, 70 * S, 70 * S, &[]), Some(0.0));
    }

    #[test]
    fn timestamps_of_min_max_first_last() {
        let iv = 10 * S + 53;
        let metric = load(iv, &vals(&[1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 2.0, 1.0, 4.0]));
        assert_eq!(at(RangeFn::TsOfMinOverTime, &metric, 90 * S, 90 * S, &[]), Some(30.159));
        assert_eq!(at(RangeFn::TsOfMaxOverTime, &metric, 90 * S, 90 * S, &[]), Some(50.265));
        let last = load(iv, &[Some(1.0), Some(2.0), Some(3.0), None, None]);
        assert_eq!(at(RangeFn::TsOfLastOverTime, &last, 90 * S, 90 * S, &[]), Some(20.106));
        assert_eq!(at(RangeFn::TsOfLastOverTime, &last, 95 * S, 90 * S, &[]), Some(20.106));
        let mixed_floats = load(iv, &[Some(1.0), Some(1.0), Some(1.0), None, None, Some(1.0)]);
        assert_eq!(at(RangeFn::TsOfLastOverTime, &mixed_floats, 95 * S, 90 * S, &[]), Some(50.265));
        let first = load(iv, &[None, None, Some(1.0), Some(2.0), Some(3.0), None, None]);
        assert_eq!(at(RangeFn::TsOfFirstOverTime, &first, 90 * S, 90 * S, &[]), Some(20.106));
        assert_eq!(at(RangeFn::TsOfFirstOverTime, &first, 95 * S, 90 * S, &[]), Some(20.106));
        assert_eq!(at(RangeFn::TsOfFirstOverTime, &first, 15 * S, 90 * S, &[]), None);
        // Ties: the latest maximum or minimum wins.
        let ties = [(S, 1.0), (2 * S, 3.0), (3 * S, 3.0), (4 * S, 1.0)];
        assert_eq!(at(RangeFn::TsOfMaxOverTime, &ties, 4 * S, 4 * S, &[]), Some(3.0));
        assert_eq!(at(RangeFn::TsOfMinOverTime, &ties, 4 * S, 4 * S, &[]), Some(4.0));
        // A leading NaN is replaced by the next value.
        let nan = [(S, f64::NAN), (2 * S, 3.0), (3 * S, 2.0)];
        assert_eq!(at(RangeFn::TsOfMaxOverTime, &nan, 3 * S, 3 * S, &[]), Some(2.0));
        assert_eq!(at(RangeFn::TsOfMinOverTime, &nan, 3 * S, 3 * S, &[]), Some(3.0));
    }

    #[test]
    fn quantile_over_time() {
        let two = load(10 * S, &vals(&[0.0, 1.0]));
        let three = load(10 * S, &vals(&[0.0, 1.0, 2.0]));
        let uneven = load(10 * S, &vals(&[0.0, 1.0, 4.0]));
        let cases: [(f64, [f64; 3]); 5] = [
            (0.0, [0.0, 0.0, 0.0]),
            (0.5, [0.5, 1.0, 1.0]),
            (0.75, [0.75, 1.5, 2.5]),
            (0.8, [0.8, 1.6, 2.8]),
            (1.0, [1.0, 2.0, 4.0]),
        ];
        for (q, want) in cases {
            for (series, want) in [&two, &three, &uneven].into_iter().zip(want) {
                assert_close(at(RangeFn::QuantileOverTime, series, M, 2 * M, &[q]), want);
            }
        }
        let mixed_floats = load(10 * S, &vals(&[0.0, 1.0, 2.0]));
        assert_eq!(at(RangeFn::QuantileOverTime, &mixed_floats, M, 2 * M, &[0.5]), Some(1.0));
    }

    #[test]
    fn quantile_over_time_warns_about_invalid_quantiles() {
        let two = load(10 * S, &vals(&[0.0, 1.0]));
        for (q, want, text) in [(-1.0, f64::NEG_INFINITY, "-1"), (2.0, f64::INFINITY, "2"), (f64::NAN, f64::NAN, "NaN")]
        {
            let mut ann = Annotations::default();
            let v = eval(RangeFn::QuantileOverTime, &two, 0, M, M, &[q], &mut ann);
            assert!(v.is_ok_and(|v| v.is_some_and(|v| v == want || (v.is_nan() && want.is_nan()))));
            assert_eq!(ann.warnings, [format!("PromQL warning: quantile value should be between 0 and 1, got {text}")]);
            assert!(ann.infos.is_empty());
        }
        // No samples, no evaluation, no warning.
        let mut ann = Annotations::default();
        assert_eq!(eval(RangeFn::QuantileOverTime, &[], 0, M, M, &[2.0], &mut ann), Ok(None));
        assert_eq!(ann, Annotations::default());
    }

    #[test]
    fn min_max_last_first_count_over_time() {
        let series = [
            (vals(&[2.0, 0.0, 3.0]), 0.0, 3.0, 3.0, 2.0),
            (vals(&[2.0, 0.0, f64::NAN]), 0.0, 2.0, f64::NAN, 2.0),
            (vals(&[2.0, f64::NAN, 1.0]), 1.0, 2.0, 1.0, 2.0),
            (vals(&[f64::NAN, 0.0, 1.0]), 0.0, 1.0, 1.0, f64::NAN),
            (vals(&[f64::NAN, f64::NAN, f64::NAN]), f64::NAN, f64::NAN, f64::NAN, f64::NAN),
            (vec![None, Some(5.0), Some(2.0), None, Some(4.0), None], 2.0, 5.0, 4.0, 5.0),
        ];
        let same = |a: Option<f64>, b: f64| a.is_some_and(|a| a == b || (a.is_nan() && b.is_nan()));
        for (values, min, max, last, first) in series {
            let s = load(10 * S, &values);
            assert!(same(at(RangeFn::MinOverTime, &s, M, 2 * M, &[]), min), "{values:?}");
            assert!(same(at(RangeFn::MaxOverTime, &s, M, 2 * M, &[]), max), "{values:?}");
            assert!(same(at(RangeFn::LastOverTime, &s, M, 2 * M, &[]), last), "{values:?}");
            assert!(same(at(RangeFn::FirstOverTime, &s, M, 2 * M, &[]), first), "{values:?}");
            assert_eq!(at(RangeFn::CountOverTime, &s, M, 2 * M, &[]), Some(s.len() as f64));
        }
        let empty = load(10 * S, &[None; 13]);
        for f in ALL.into_iter().filter(|&f| f != RangeFn::AbsentOverTime) {
            let args = vec![0.5; f.scalar_args()];
            assert_eq!(at(f, &empty, M, 2 * M, &args), None, "{f:?}");
        }
    }

    #[test]
    fn present_and_absent_over_time() {
        let s = load(M, &vals(&[1.0, 2.0]));
        assert_eq!(at(RangeFn::PresentOverTime, &s, M, 5 * M, &[]), Some(1.0));
        assert_eq!(at(RangeFn::AbsentOverTime, &s, M, 5 * M, &[]), None);
        assert_eq!(at(RangeFn::PresentOverTime, &s, 10 * M, 5 * M, &[]), None);
        assert_eq!(at(RangeFn::AbsentOverTime, &s, 10 * M, 5 * M, &[]), Some(1.0));
        // NaN samples are present.
        let nan = load(M, &vals(&[f64::NAN; 5]));
        assert_eq!(at(RangeFn::AbsentOverTime, &nan, 5 * M, 4 * M, &[]), None);
        assert_eq!(at(RangeFn::PresentOverTime, &nan, 5 * M, 4 * M, &[]), Some(1.0));
    }

    #[test]
    fn missing_scalar_arguments_are_an_error() {
        let s = [(S, 1.0), (2 * S, 2.0)];
        let mut ann = Annotations::default();
        assert!(eval(RangeFn::QuantileOverTime, &s, 0, 2 * S, 2 * S, &[], &mut ann).is_err());
        assert!(eval(RangeFn::PredictLinear, &s, 0, 2 * S, 2 * S, &[], &mut ann).is_err());
        assert!(eval(RangeFn::DoubleExponentialSmoothing, &s, 0, 2 * S, 2 * S, &[0.5], &mut ann).is_err());
        assert_eq!(RangeFn::Rate.scalar_args(), 0);
    }
}
