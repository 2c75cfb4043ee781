//! Numeric building blocks shared by functions and aggregations: Prometheus's compensated
//! (Kahan–Babuška–Neumaier) summation, its mean and variance accumulators, its `quantile` over a set
//! of floats, and the Go float formatting its annotation texts use.
//!
//! Each piece follows the arithmetic of Prometheus's Go code step by step (same operations in the
//! same order), so results agree bit for bit wherever Go and Rust round the same way.

use std::cmp::Ordering;

/// One step of Prometheus's compensated summation (`kahansum.Inc`, Neumaier's variant): adds `inc`
/// to `sum` with compensation `c` and returns the new `(sum, c)`. The total is `sum + c`.
///
/// When the sum overflows to ±Inf the compensation is reset to zero, so the total stays ±Inf.
pub fn kahan_add(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// A compensated running sum, as `sum_over_time` and the `sum` aggregation keep it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KahanSum {
    pub sum: f64,
    pub c: f64,
}

impl KahanSum {
    /// An empty sum (`sum_over_time` starts from zero).
    pub fn new() -> KahanSum {
        KahanSum { sum: 0.0, c: 0.0 }
    }

    /// A sum whose first term is `first` (the `sum` aggregation starts from its first sample).
    pub fn starting_with(first: f64) -> KahanSum {
        KahanSum { sum: first, c: 0.0 }
    }

    pub fn add(&mut self, v: f64) {
        (self.sum, self.c) = kahan_add(v, self.sum, self.c);
    }

    /// The compensated total; an overflowed sum stays ±Inf.
    pub fn value(&self) -> f64 {
        if self.sum.is_infinite() { self.sum } else { self.sum + self.c }
    }
}

/// Prometheus's mean, as `avg_over_time` and the `avg` aggregation compute it: a direct compensated
/// sum divided by the count as long as the sum stays finite, and from the first overflow on an
/// incremental, compensated mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mean {
    sum: f64,
    c: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

impl Mean {
    /// A mean of the one value `first`.
    pub fn new(first: f64) -> Mean {
        Mean { sum: first, c: 0.0, mean: first, count: 1.0, incremental: false }
    }

    pub fn add(&mut self, v: f64) {
        self.count += 1.0;
        if !self.incremental {
            let (sum, c) = kahan_add(v, self.sum, self.c);
            if !sum.is_infinite() {
                self.sum = sum;
                self.c = c;
                return;
            }
            // The sum would overflow: continue with the incremental mean of what we have.
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.c) = kahan_add(v / self.count, q * self.mean, q * self.c);
    }

    pub fn count(&self) -> f64 {
        self.count
    }

    pub fn value(&self) -> f64 {
        if self.incremental { self.mean + self.c } else { self.sum / self.count + self.c / self.count }
    }
}

/// The mean of `values` as [`Mean`] computes it; NaN for no values.
pub fn mean(values: &[f64]) -> f64 {
    let Some((&first, rest)) = values.split_first() else {
        return f64::NAN;
    };
    let mut m = Mean::new(first);
    for &v in rest {
        m.add(v);
    }
    m.value()
}

/// The variance accumulator of the `stddev` and `stdvar` aggregations: Welford's algorithm without
/// compensation, exactly as Prometheus's aggregation does it. A first value of NaN or ±Inf makes the
/// result NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welford {
    count: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    pub fn new(first: f64) -> Welford {
        let m2 = if first.is_nan() || first.is_infinite() { f64::NAN } else { 0.0 };
        Welford { count: 1.0, mean: first, m2 }
    }

    pub fn add(&mut self, v: f64) {
        self.count += 1.0;
        let delta = v - self.mean;
        self.mean += delta / self.count;
        self.m2 += delta * (v - self.mean);
    }

    /// The population variance (`stdvar`).
    pub fn variance(&self) -> f64 {
        self.m2 / self.count
    }

    /// The population standard deviation (`stddev`).
    pub fn stddev(&self) -> f64 {
        (self.m2 / self.count).sqrt()
    }
}

/// The population variance as `stdvar_over_time` and `stddev_over_time` compute it: Welford's
/// algorithm with the running mean and the sum of squared deviations both compensated.
/// NaN for no values.
pub fn variance_over_time(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_add(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_add(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Prometheus's order for quantiles: NaN below everything, the rest ascending.
fn nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// Prometheus's `quantile` over a set of floats (the `quantile` aggregation, `quantile_over_time`,
/// `mad_over_time`): sorts `values` (NaN counts as the smallest value) and interpolates linearly
/// between the two values around rank `q * (n - 1)`.
///
/// NaN for no values or a NaN `q`, -Inf for `q < 0`, +Inf for `q > 1`.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_unstable_by(nan_first);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = go_max(0.0, rank.floor());
    let upper = go_min(n - 1.0, lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over everything else, and +0 over -0.
pub fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over everything else, and -0 over +0.
pub fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Prometheus's `almost.Equal`: whether `a` and `b` differ by less than `epsilon` relative to
/// their magnitude (two NaNs count as equal).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// A float as Go's `fmt` prints it with `%g`: the shortest digits that read back the same value,
/// in exponent form when the decimal exponent is below -4 or at least 6 (e.g. `0.5`, `100000`,
/// `1e+06`, `1.5e-05`), and `NaN`, `+Inf`, `-Inf`.
pub fn format_go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".to_string() } else { "0".to_string() };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as Go's `-1` precision does.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if v < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs());
    }
    let dp = exp + 1; // position of the decimal point relative to the digits
    let nd = digits.len() as i32;
    let body = if dp <= 0 {
        format!("0.{}{}", "0".repeat((-dp) as usize), digits)
    } else if dp >= nd {
        format!("{}{}", digits, "0".repeat((dp - nd) as usize))
    } else {
        let (int, frac) = digits.split_at(dp as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

/// A float as Go prints it with `%f` (six decimals; `NaN`, `+Inf`, `-Inf`).
pub fn format_go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else {
        format!("{v:.6}")
    }
}

/// A float as Prometheus's `labels.FormatOpenMetricsFloat` writes it into a label value (used for
/// the quantile label of `histogram_quantiles`): `1.0`, `0.0`, `-1.0`, `0.25`, `1e+06`, `NaN`,
/// `+Inf`, `-Inf`; integers get a `.0`.
pub fn format_openmetrics_float(v: f64) -> String {
    if v == 1.0 {
        return "1.0".to_string();
    }
    if v == 0.0 {
        return "0.0".to_string();
    }
    if v == -1.0 {
        return "-1.0".to_string();
    }
    let s = format_go_g(v);
    if v.is_nan() || v.is_infinite() || s.contains(['e', '.']) { s } else { format!("{s}.0") }
}

/// Prometheus's warning for a quantile outside [0, 1] or NaN (without the position suffix the
/// API adds).
pub fn invalid_quantile_warning(q: f64) -> String {
    format!("PromQL warning: quantile value should be between 0 and 1, got {}", format_go_g(q))
}

/// Whether `q` is a valid quantile (Prometheus warns with [`invalid_quantile_warning`] otherwise,
/// but still computes the result).
pub fn is_valid_quantile(q: f64) -> bool {
    (0.0..=1.0).contains(&q)
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // Values are written as Prometheus's test files write them.
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        almost_equal(a, b, 1e-12)
    }

    #[test]
    fn kahan_add_keeps_small_terms_next_to_huge_ones() {
        // functions.test: sum_over_time over 1 1e100 1 -1e100 is 2.
        let mut s = KahanSum::new();
        for v in [1.0, 1e100, 1.0, -1e100] {
            s.add(v);
        }
        assert_eq!(s.value(), 2.0);
        // The plain sum loses them.
        assert_eq!([1.0, 1e100, 1.0, -1e100].iter().sum::<f64>(), 0.0);
    }

    #[test]
    fn kahan_add_step_by_step() {
        let (s, c) = kahan_add(1.0, 0.0, 0.0);
        assert_eq!((s, c), (1.0, 0.0));
        let (s, c) = kahan_add(1e100, s, c);
        assert_eq!((s, c), (1e100, 1.0));
        let (s, c) = kahan_add(1.0, s, c);
        assert_eq!((s, c), (1e100, 2.0));
        let (s, c) = kahan_add(-1e100, s, c);
        assert_eq!((s, c), (0.0, 2.0));
        // Overflow resets the compensation.
        let (s, c) = kahan_add(f64::MAX, f64::MAX, 5.0);
        assert_eq!((s, c), (f64::INFINITY, 0.0));
    }

    #[test]
    fn kahan_sum_with_infinities_and_nan() {
        let mut s = KahanSum::new();
        for v in [1.0, 2.0, f64::INFINITY] {
            s.add(v);
        }
        assert_eq!(s.value(), f64::INFINITY);
        s.add(f64::NEG_INFINITY);
        assert!(s.value().is_nan());
        let mut s = KahanSum::starting_with(f64::NAN);
        s.add(1.0);
        assert!(s.value().is_nan());
    }

    #[test]
    fn mean_matches_functions_test() {
        // avg_over_time cases of functions.test.
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0, 5.0]), 3.0);
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0, f64::INFINITY]), f64::INFINITY);
        assert_eq!(mean(&[1.0, 2.0, 3.0, 4.0, f64::NEG_INFINITY]), f64::NEG_INFINITY);
        assert!(mean(&[1.0, 2.0, 3.0, f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert_eq!(mean(&[f64::INFINITY, 0.0, f64::INFINITY]), f64::INFINITY);
        assert!(mean(&[f64::INFINITY, f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert_eq!(mean(&[1.0, 2.0, 3.0, f64::NEG_INFINITY, f64::NEG_INFINITY]), f64::NEG_INFINITY);
        assert_eq!(mean(&[f64::NEG_INFINITY, 0.0, f64::NEG_INFINITY]), f64::NEG_INFINITY);
        assert!(mean(&[f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::INFINITY]).is_nan());
        assert!(mean(&[1.0, 2.0, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::INFINITY]).is_nan());
        let big = 9.988465674311579e307;
        assert_eq!(mean(&[big, big]), big);
        assert_eq!(mean(&[-big, -big, -big]), -big);
        assert_eq!(mean(&[-big, big]), 0.0);
        assert_eq!(mean(&[big, big, big, big]), big);
        assert_eq!(mean(&[-big, -big, big, big]), 0.0);
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
        assert!(mean(&[1.0, 2.0, 3.0, f64::NAN]).is_nan());
        assert_eq!(mean(&[1.0, 1e100, 1.0, -1e100]), 0.5);
        assert!(mean(&[]).is_nan());
        // aggregators.test: avg of 2 8 1e100 -1e100.
        assert_eq!(mean(&[2.0, 8.0, 1e100, -1e100]), 2.5);
    }

    #[test]
    fn mean_of_extreme_values() {
        // "More tests for extreme values" in functions.test.
        assert!(close(mean(&[1e10, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6]), 1.6666666666666675e+09));
        let m = mean(&[
            5.30921651659898,
            0.961118537914768,
            1.62091361305318,
            0.865089463758091,
            0.323055185914577,
            0.951811357687154,
        ]);
        assert!(almost_equal(m, 1.67186744582113, 1e-6));
        assert!(almost_equal(mean(&[1.78264e50, 0.76342771, 1.9592258, 7.69805412, 458.90154]), 3.56528E+49, 1e-6));
        assert!(almost_equal(
            mean(&[1.78264E+50, 0.76342771, 1.9592258, 2.258E+220, 7.69805412, 458.90154]),
            3.76333333333333E+219,
            1e-6
        ));
        assert!(almost_equal(
            mean(&[-1.78264E+215, 0.76342771, 1.9592258, 2.258E+220, 7.69805412, 1.78264E+215, -458.90154]),
            3.225714285714286e+219,
            1e-6
        ));
        let m = mean(&[
            -1.78264E+219,
            0.76342771,
            1.9592258,
            2.3757689E+217,
            -2.3757689E+217,
            2.258E+220,
            7.69805412,
            1.78264E+219,
            -458.90154,
        ]);
        assert!(almost_equal(m, 2.5088888888888888e+219, 1e-6));
        // Kahan summation cannot rescue this one; Prometheus documents 0 as its result.
        let m = mean(&[
            -2.258E+220,
            -1.78264E+219,
            0.76342771,
            1.9592258,
            2.3757689E+217,
            -2.3757689E+217,
            2.258E+220,
            7.69805412,
            1.78264E+219,
            -458.90154,
        ]);
        assert_eq!(m, 0.0);
    }

    #[test]
    fn mean_of_equal_values_is_exact() {
        for n in 1..200 {
            let values = vec![52.0; n];
            assert_eq!(mean(&values), 52.0, "n = {n}");
        }
    }

    #[test]
    fn welford_matches_aggregators_test() {
        // http_requests at 50m in aggregators.test: 100..800.
        let mut w = Welford::new(100.0);
        for v in [200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0] {
            w.add(v);
        }
        assert!(close(w.variance(), 52500.0));
        assert!(almost_equal(w.stddev(), 229.12878474779, 1e-9));
        let mut w = Welford::new(1.0);
        w.add(2.0);
        assert_eq!(w.variance(), 0.25);
        assert_eq!(w.stddev(), 0.5);
        let mut w = Welford::new(13.3);
        w.add(13.3);
        w.add(13.3);
        assert_eq!(w.stddev(), 0.0);
        assert!(Welford::new(f64::NAN).variance().is_nan());
        assert!(Welford::new(f64::INFINITY).variance().is_nan());
        assert_eq!(Welford::new(5.0).variance(), 0.0);
        let mut w = Welford::new(1.0);
        w.add(f64::NAN);
        assert!(w.variance().is_nan());
    }

    #[test]
    fn variance_over_time_matches_functions_test() {
        assert!(close(variance_over_time([0.0, 8.0, 8.0, 2.0, 3.0]), 10.56));
        assert!(almost_equal(variance_over_time([0.0, 8.0, 8.0, 2.0, 3.0]).sqrt(), 3.249615, 1e-6));
        let x = 1.5990505637277868;
        assert_eq!(variance_over_time([x, x, x]), 0.0);
        assert_eq!(variance_over_time([1.0, 1.0, 1.0]), 0.0);
        assert!(variance_over_time([]).is_nan());
        assert!(variance_over_time([1.0, f64::NAN]).is_nan());
    }

    #[test]
    fn quantile_matches_aggregators_test() {
        let q = |q: f64, v: &[f64]| quantile(q, &mut v.to_vec());
        assert_eq!(q(0.8, &[0.0, 1.0]), 0.8);
        assert!(close(q(0.8, &[0.0, 1.0, 2.0]), 1.6));
        assert!(close(q(0.8, &[0.0, 1.0, 4.0]), 2.8));
        // NaN is the smallest value.
        assert!(close(q(0.8, &[0.0, 1.0, f64::NAN]), 0.6));
        assert!(q(0.2, &[0.0, 1.0, f64::NAN]).is_nan());
        assert!(close(q(0.2, &[0.0, 1.0]), 0.2));
        assert!(close(q(0.2, &[2.0, 1.0, 0.0]), 0.4));
        assert!(close(q(0.2, &[4.0, 1.0, 0.0]), 0.4));
        // quantile_over_time cases of functions.test.
        assert_eq!(q(0.0, &[0.0, 1.0, 4.0]), 0.0);
        assert_eq!(q(0.5, &[0.0, 1.0, 4.0]), 1.0);
        assert_eq!(q(0.75, &[0.0, 1.0, 4.0]), 2.5);
        assert_eq!(q(1.0, &[0.0, 1.0, 4.0]), 4.0);
        assert_eq!(q(0.5, &[0.0, 1.0]), 0.5);
        assert_eq!(q(-1.0, &[0.0, 1.0]), f64::NEG_INFINITY);
        assert_eq!(q(2.0, &[0.0, 1.0]), f64::INFINITY);
        assert!(q(f64::NAN, &[0.0, 1.0]).is_nan());
        assert!(q(0.5, &[]).is_nan());
        assert!(q(-1.0, &[]).is_nan());
        assert_eq!(q(0.3, &[7.0]), 7.0);
        // Go's formula multiplies Inf by a zero weight.
        assert!(q(1.0, &[1.0, f64::INFINITY]).is_nan());
    }

    #[test]
    fn quantile_sorts_in_place_with_nan_first() {
        let mut v = [3.0, f64::NAN, 1.0, f64::NAN, 2.0];
        quantile(0.5, &mut v);
        assert!(v[0].is_nan() && v[1].is_nan());
        assert_eq!(&v[2..], &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn go_min_max_special_cases() {
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert!(go_max(1.0, f64::NAN).is_nan());
        assert!(go_max(0.0, -0.0).is_sign_positive());
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert_eq!(go_max(-3.0, 2.0), 2.0);
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert!(go_min(f64::NAN, 1.0).is_nan());
        assert!(go_min(0.0, -0.0).is_sign_negative());
        assert!(go_min(-0.0, 0.0).is_sign_negative());
        assert_eq!(go_min(-3.0, 2.0), -3.0);
    }

    #[test]
    fn almost_equal_like_prometheus() {
        assert!(almost_equal(f64::NAN, f64::NAN, 1e-12));
        assert!(almost_equal(1.0, 1.0 + 1e-13, 1e-12));
        assert!(!almost_equal(1.0, 1.0 + 1e-11, 1e-12));
        assert!(!almost_equal(0.0, 1e-300, 1e-12));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY, 1e-12));
        assert!(!almost_equal(f64::INFINITY, f64::MAX, 1e-12));
    }

    #[test]
    fn go_g_formatting() {
        assert_eq!(format_go_g(f64::NAN), "NaN");
        assert_eq!(format_go_g(f64::INFINITY), "+Inf");
        assert_eq!(format_go_g(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_go_g(0.0), "0");
        assert_eq!(format_go_g(-0.0), "-0");
        assert_eq!(format_go_g(1.0), "1");
        assert_eq!(format_go_g(-1.0), "-1");
        assert_eq!(format_go_g(2.0), "2");
        assert_eq!(format_go_g(-0.1), "-0.1");
        assert_eq!(format_go_g(1.01), "1.01");
        assert_eq!(format_go_g(0.0001), "0.0001");
        assert_eq!(format_go_g(0.00001), "1e-05");
        assert_eq!(format_go_g(0.000015), "1.5e-05");
        assert_eq!(format_go_g(100000.0), "100000");
        assert_eq!(format_go_g(123456.7), "123456.7");
        assert_eq!(format_go_g(1e6), "1e+06");
        assert_eq!(format_go_g(1234567.0), "1.234567e+06");
        assert_eq!(format_go_g(1e21), "1e+21");
        assert_eq!(format_go_g(1e100), "1e+100");
        assert_eq!(format_go_g(-2.5e-300), "-2.5e-300");
        assert_eq!(format_go_g(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_go_g(5e-324), "5e-324");
    }

    #[test]
    fn go_f_and_openmetrics_formatting() {
        assert_eq!(format_go_f(0.0), "0.000000");
        assert_eq!(format_go_f(1.0), "1.000000");
        assert_eq!(format_go_f(-0.5), "-0.500000");
        assert_eq!(format_go_f(f64::INFINITY), "+Inf");
        assert_eq!(format_go_f(f64::NAN), "NaN");
        assert_eq!(format_openmetrics_float(0.0), "0.0");
        assert_eq!(format_openmetrics_float(1.0), "1.0");
        assert_eq!(format_openmetrics_float(-1.0), "-1.0");
        assert_eq!(format_openmetrics_float(0.25), "0.25");
        assert_eq!(format_openmetrics_float(-0.1), "-0.1");
        assert_eq!(format_openmetrics_float(1.01), "1.01");
        assert_eq!(format_openmetrics_float(2.0), "2.0");
        assert_eq!(format_openmetrics_float(1e6), "1e+06");
        assert_eq!(format_openmetrics_float(f64::NAN), "NaN");
        assert_eq!(format_openmetrics_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn quantile_warning_text() {
        assert_eq!(
            invalid_quantile_warning(f64::NAN),
            "PromQL warning: quantile value should be between 0 and 1, got NaN"
        );
        assert_eq!(invalid_quantile_warning(-1.0), "PromQL warning: quantile value should be between 0 and 1, got -1");
        assert_eq!(
            invalid_quantile_warning(1.01),
            "PromQL warning: quantile value should be between 0 and 1, got 1.01"
        );
        assert!(is_valid_quantile(0.0) && is_valid_quantile(1.0) && is_valid_quantile(0.5));
        assert!(!is_valid_quantile(f64::NAN) && !is_valid_quantile(-0.1) && !is_valid_quantile(1.1));
    }
}
