//! Functions of one float: the math functions, `round`, `clamp*` and the date functions, with
//! Prometheus's (Go's) results for the edge cases: NaN, ±Inf, ±0 and out-of-range inputs.

use super::stats::{go_max, go_min};

/// The PromQL math function `name` (`abs`, `ceil`, `floor`, `exp`, `sqrt`, `ln`, `log2`, `log10`,
/// `sgn`, `deg`, `rad` and the trigonometric and hyperbolic functions), or None for any other
/// name.
pub fn math(name: &str) -> Option<fn(f64) -> f64> {
    let f: fn(f64) -> f64 = match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => go_log2,
        "log10" => go_log10,
        "sgn" => sgn,
        "deg" => deg,
        "rad" => rad,
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        _ => return None,
    };
    Some(f)
}

/// -1 for negative values, 1 for positive ones, the value itself otherwise (±0 and NaN).
pub fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// Radians to degrees, as `v * 180 / π`.
pub fn deg(v: f64) -> f64 {
    v * 180.0 / std::f64::consts::PI
}

/// Degrees to radians, as `v * π / 180`.
pub fn rad(v: f64) -> f64 {
    v * std::f64::consts::PI / 180.0
}

/// `frexp`: `v = frac * 2^exp` with `0.5 <= |frac| < 1`; zero, NaN and ±Inf come back unchanged
/// with exponent 0 (Go's `math.Frexp`).
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return (v, 0);
    }
    let (mut v, mut exp) = (v, 0);
    if v.abs() < f64::MIN_POSITIVE {
        // Subnormal: scale into the normal range first.
        v *= (1u64 << 52) as f64;
        exp = -52;
    }
    let bits = v.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// Go's `math.Log2`: exact for powers of two, `ln(frac) / ln 2 + exp` otherwise.
fn go_log2(v: f64) -> f64 {
    let (frac, exp) = frexp(v);
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    frac.ln() * (1.0 / std::f64::consts::LN_2) + exp as f64
}

/// Go's `math.Log10`, which goes through `Log2`.
fn go_log10(v: f64) -> f64 {
    go_log2(v) * (std::f64::consts::LN_2 / std::f64::consts::LN_10)
}

/// Prometheus's `round(v, to_nearest)`: ties round up, via the inverse of `to_nearest`.
pub fn round(v: f64, to_nearest: f64) -> f64 {
    let inverse = 1.0 / to_nearest;
    (v * inverse + 0.5).floor() / inverse
}

/// `clamp(v, min, max)`; None when `max < min` (Prometheus returns an empty vector then). A NaN
/// bound gives NaN.
pub fn clamp(v: f64, min: f64, max: f64) -> Option<f64> {
    if max < min {
        return None;
    }
    Some(go_max(min, go_min(max, v)))
}

/// `clamp_min(v, min)`, which never drops a sample.
pub fn clamp_min(v: f64, min: f64) -> f64 {
    go_max(min, go_min(f64::INFINITY, v))
}

/// `clamp_max(v, max)`, which never drops a sample.
pub fn clamp_max(v: f64, max: f64) -> f64 {
    go_max(f64::NEG_INFINITY, go_min(max, v))
}

/// Whether `name` is one of the date functions [`date`] knows.
pub fn is_date_function(name: &str) -> bool {
    matches!(
        name,
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
    )
}

/// The date function `name` (`year`, `month`, `day_of_month`, `day_of_week`, `day_of_year`,
/// `days_in_month`, `hour`, `minute`) of the Unix time `t_seconds`, in UTC; None for other names.
///
/// As Prometheus, the time is truncated to whole seconds toward zero (Go's `int64(v)`); NaN, ±Inf
/// and values outside the int64 range become the smallest int64 as on amd64, which is
/// -292277022657-01-27T08:29:52Z. The calendar is the proleptic Gregorian one for every year.
pub fn date(name: &str, t_seconds: f64) -> Option<f64> {
    if !is_date_function(name) {
        return None;
    }
    let civil = Civil::from_unix(go_f64_to_i64(t_seconds));
    let v = match name {
        "year" => civil.year as f64,
        "month" => civil.month as f64,
        "day_of_month" => civil.day as f64,
        "day_of_week" => civil.weekday as f64,
        "day_of_year" => civil.day_of_year() as f64,
        "days_in_month" => days_in_month(civil.year, civil.month) as f64,
        "hour" => civil.hour as f64,
        _ => civil.minute as f64, // "minute"
    };
    Some(v)
}

/// Go's `int64(v)` conversion on amd64: truncation toward zero, and the "integer indefinite"
/// value `i64::MIN` for NaN and for values outside the int64 range.
fn go_f64_to_i64(v: f64) -> i64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if v.is_nan() || !(-TWO_63..TWO_63).contains(&v) { i64::MIN } else { v.trunc() as i64 }
}

/// A UTC civil time, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    /// Sunday = 0, as Go's `time.Weekday`.
    weekday: u32,
    hour: u32,
    minute: u32,
}

impl Civil {
    fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let secs_of_day = secs.rem_euclid(86_400);
        // 1970-01-01 was a Thursday.
        let weekday = (days + 4).rem_euclid(7) as u32;
        // Howard Hinnant's days-to-civil, in i128 so that every i64 second count fits.
        let z = days as i128 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // [0, 146096]
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
        let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i128::from(month <= 2)) as i64;
        Civil {
            year,
            month,
            day,
            weekday,
            hour: (secs_of_day / 3_600) as u32,
            minute: (secs_of_day % 3_600 / 60) as u32,
        }
    }

    /// 1 for January 1st.
    fn day_of_year(&self) -> u32 {
        (1..self.month).map(|m| days_in_month(self.year, m)).sum::<u32>() + self.day
    }
}

fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // Expected values are written as Prometheus's test files write them.
mod tests {
    use super::*;

    fn f(name: &str) -> fn(f64) -> f64 {
        math(name).unwrap_or_else(|| panic!("no function {name}"))
    }

    /// Whether `a` and `b` agree to Prometheus's test tolerance (or both are NaN).
    fn close(a: f64, b: f64) -> bool {
        super::super::stats::almost_equal(a, b, 1e-12)
    }

    #[test]
    fn every_math_function_is_known() {
        for name in [
            "abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "sgn", "deg", "rad", "acos", "acosh", "asin",
            "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh",
        ] {
            assert!(math(name).is_some(), "{name}");
        }
        assert!(math("round").is_none());
        assert!(math("year").is_none());
        assert!(math("").is_none());
    }

    #[test]
    fn abs_ceil_floor_round_like_functions_test() {
        let data = [2.5, 2.0, -2.5, -2.0, 0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY];
        let abs: Vec<f64> = data.iter().map(|&v| f("abs")(v)).collect();
        assert_eq!(abs, [2.5, 2.0, 2.5, 2.0, 0.0, 0.0, f64::INFINITY, f64::INFINITY]);
        let ceil: Vec<f64> = data.iter().map(|&v| f("ceil")(v)).collect();
        assert_eq!(ceil, [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY]);
        let floor: Vec<f64> = data.iter().map(|&v| f("floor")(v)).collect();
        assert_eq!(floor, [2.0, 2.0, -3.0, -2.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY]);
        let rounded: Vec<f64> = data.iter().map(|&v| round(v, 1.0)).collect();
        assert_eq!(rounded, [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY]);
        for name in ["abs", "ceil", "floor"] {
            assert!(f(name)(f64::NAN).is_nan());
        }
        assert!(round(f64::NAN, 1.0).is_nan());
    }

    #[test]
    fn round_to_nearest_like_aggregators_test() {
        // http_requests at 50m: 100 and 200.
        assert!(close(round(0.0005 * 100.0, 0.1), 0.1));
        assert!(close(round(0.0005 * 200.0, 0.1), 0.1));
        assert!(close(round(2.1 + 0.0005 * 100.0, 0.1), 2.2));
        assert!(close(round(5.2 + 0.0005 * 200.0, 0.1), 5.3));
        assert!(close(round(-(5.2 + 0.0005 * 100.0), 0.1), -5.2));
        assert!(close(round(-(5.2 + 0.0005 * 200.0), 0.1), -5.3));
        assert_eq!(round(0.025 * 100.0, 5.0), 5.0);
        assert_eq!(round(0.025 * 200.0, 5.0), 5.0);
        assert_eq!(round(0.045 * 100.0, 5.0), 5.0);
        assert_eq!(round(0.045 * 200.0, 5.0), 10.0);
        assert_eq!(round(-(1.0 + 0.005 * 100.0), 1.0), -1.0);
        assert_eq!(round(-(1.0 + 0.005 * 200.0), 1.0), -2.0);
        // Ties round up.
        assert_eq!(round(0.5, 1.0), 1.0);
        assert_eq!(round(-0.5, 1.0), 0.0);
    }

    #[test]
    fn sgn_like_functions_test() {
        assert_eq!(sgn(f64::NEG_INFINITY), -1.0);
        assert_eq!(sgn(f64::INFINITY), 1.0);
        assert!(sgn(f64::NAN).is_nan());
        assert_eq!(sgn(-50.0), -1.0);
        assert_eq!(sgn(0.0), 0.0);
        assert!(sgn(-0.0).is_sign_negative());
        assert_eq!(sgn(100.0), 1.0);
    }

    #[test]
    fn exp_ln_sqrt_logs_like_functions_test() {
        assert!(close(f("exp")(10.0), 22026.465794806718));
        assert!(close(f("exp")(20.0), 485165195.4097903));
        assert_eq!(f("exp")(0.0), 1.0);
        assert!(close(f("exp")(-10.0), 4.5399929762484854e-05));
        assert!(close(f("ln")(10.0), 2.302585092994046));
        assert!(close(f("ln")(20.0), 2.995732273553991));
        assert_eq!(f("ln")(0.0), f64::NEG_INFINITY);
        assert!(f("ln")(-10.0).is_nan());
        assert!(close(f("exp")(f("ln")(20.0)), 20.0));
        assert!(close(f("sqrt")(10.0), 3.1622776601683795));
        assert!(close(f("sqrt")(20.0), 4.47213595499958));
        assert!(f("sqrt")(-1.0).is_nan());
        assert!(close(f("log2")(10.0), 3.3219280948873626));
        assert!(close(f("log2")(20.0), 4.321928094887363));
        assert_eq!(f("log2")(0.0), f64::NEG_INFINITY);
        assert!(f("log2")(-10.0).is_nan());
        assert!(close(f("log10")(10.0), 1.0));
        assert!(close(f("log10")(20.0), 1.301029995663981));
        assert_eq!(f("log10")(0.0), f64::NEG_INFINITY);
        assert!(f("log10")(-10.0).is_nan());
        for name in ["exp", "ln", "sqrt", "log2", "log10"] {
            assert!(f(name)(f64::NAN).is_nan(), "{name}");
        }
        assert_eq!(f("log2")(f64::INFINITY), f64::INFINITY);
        assert_eq!(f("log10")(f64::INFINITY), f64::INFINITY);
        assert_eq!(f("exp")(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn log2_is_exact_for_powers_of_two() {
        for e in -1074..1024 {
            let v =
                if e >= -1022 { f64::from_bits(((e + 1023) as u64) << 52) } else { f64::from_bits(1u64 << (e + 1074)) };
            assert_eq!(go_log2(v), e as f64, "2^{e}");
        }
        assert_eq!(go_log2(1.0), 0.0);
        assert_eq!(go_log2(-0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn frexp_like_go() {
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(-3.0), (-0.75, 2));
        assert_eq!(frexp(0.0), (0.0, 0));
        assert_eq!(frexp(5e-324), (0.5, -1073));
        assert_eq!(frexp(f64::MAX).1, 1024);
    }

    #[test]
    fn trig_like_trig_functions_test() {
        let cases: [(&str, f64, f64); 22] = [
            ("sin", 10.0, -0.5440211108893699),
            ("sin", 20.0, 0.9129452507276277),
            ("cos", 10.0, -0.8390715290764524),
            ("cos", 20.0, 0.40808206181339196),
            ("tan", 10.0, 0.6483608274590867),
            ("tan", 20.0, 2.2371609442247427),
            ("asin", 10.0 - 10.1, -0.10016742116155944),
            ("acos", 10.0 - 10.1, 1.670963747956456),
            ("atan", 10.0, 1.4711276743037345),
            ("atan", 20.0, 1.5208379310729538),
            ("sinh", 10.0, 11013.232920103324),
            ("sinh", 20.0, 2.4258259770489514e+08),
            ("cosh", 10.0, 11013.232920103324),
            ("cosh", 20.0, 2.4258259770489514e+08),
            ("tanh", 10.0, 0.9999999958776927),
            ("tanh", 20.0, 1.0),
            ("asinh", 10.0, 2.99822295029797),
            ("asinh", 20.0, 3.6895038689889055),
            ("acosh", 10.0, 2.993222846126381),
            ("acosh", 20.0, 3.6882538673612966),
            ("atanh", 10.0 - 10.1, -0.10033534773107522),
            ("rad", 10.0, 0.17453292519943295),
        ];
        // promqltest compares with a relative tolerance of 1e-6, and trig_functions.test relies on it:
        // it lists cosh(10) as the value of sinh(10) too.
        for (name, x, want) in cases {
            assert!(
                super::super::stats::almost_equal(f(name)(x), want, 1e-6),
                "{name}({x}) = {} want {want}",
                f(name)(x)
            );
        }
        for name in ["asin", "acos", "atanh"] {
            assert!(f(name)(20.0 - 10.1).is_nan(), "{name}");
        }
        assert!(f("acosh")(0.5).is_nan());
        assert_eq!(f("atanh")(1.0), f64::INFINITY);
        assert!(close(rad(20.0), 0.3490658503988659));
        assert_eq!(rad(0.0), 0.0);
        assert!(close(rad(-10.0), -0.17453292519943295));
        assert!(close(deg(10.0), 572.9577951308232));
        assert!(close(deg(20.0), 1145.9155902616465));
        assert!(close(deg(-10.0), -572.9577951308232));
        for name in ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh"] {
            assert!(f(name)(f64::NAN).is_nan(), "{name}");
        }
        assert!(deg(f64::NAN).is_nan() && rad(f64::NAN).is_nan());
    }

    #[test]
    fn clamp_like_functions_test() {
        let data = [-50.0, 0.0, 100.0];
        let max75: Vec<f64> = data.iter().map(|&v| clamp_max(v, 75.0)).collect();
        assert_eq!(max75, [-50.0, 0.0, 75.0]);
        let min25: Vec<f64> = data.iter().map(|&v| clamp_min(v, -25.0)).collect();
        assert_eq!(min25, [-25.0, 0.0, 100.0]);
        let both: Vec<Option<f64>> = data.iter().map(|&v| clamp(v, -25.0, 75.0)).collect();
        assert_eq!(both, [Some(-25.0), Some(0.0), Some(75.0)]);
        let nested: Vec<f64> = data.iter().map(|&v| clamp_max(clamp_min(v, -20.0), 70.0)).collect();
        assert_eq!(nested, [-20.0, 0.0, 70.0]);
        for v in data {
            assert!(clamp(v, 0.0, f64::NAN).is_some_and(f64::is_nan));
            assert!(clamp(v, f64::NAN, 0.0).is_some_and(f64::is_nan));
            assert_eq!(clamp(v, 5.0, -5.0), None);
        }
        assert_eq!(clamp(1.0, 2.0, 5.0), Some(2.0));
        assert_eq!(clamp(3.0, 2.0, 5.0), Some(3.0));
        assert_eq!(clamp_min(1.0, 2.0), 2.0);
        assert_eq!(clamp_max(3.0, 2.0), 2.0);
        assert!(clamp(f64::NAN, 0.0, 1.0).is_some_and(f64::is_nan));
        assert!(clamp_min(f64::NAN, 0.0).is_nan());
        assert!(clamp_max(f64::NAN, 0.0).is_nan());
        assert!(clamp_max(1.0, f64::NAN).is_nan());
        // Go's Max lets +Inf win over NaN.
        assert_eq!(clamp_min(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(clamp(f64::INFINITY, 0.0, 1.0), Some(1.0));
    }

    #[test]
    fn dates_like_functions_test() {
        assert_eq!(date("year", 0.0), Some(1970.0));
        assert_eq!(date("year", 1136239445.0), Some(2006.0));
        assert_eq!(date("month", 0.0), Some(1.0));
        assert_eq!(date("month", 1136239445.0), Some(1.0));
        assert_eq!(date("day_of_month", 0.0), Some(1.0));
        assert_eq!(date("day_of_month", 1136239445.0), Some(2.0));
        assert_eq!(date("day_of_year", 0.0), Some(1.0));
        assert_eq!(date("day_of_year", 1136239445.0), Some(2.0));
        assert_eq!(date("day_of_week", 0.0), Some(4.0));
        assert_eq!(date("day_of_week", 1136239445.0), Some(1.0));
        assert_eq!(date("hour", 0.0), Some(0.0));
        assert_eq!(date("hour", 1136239445.0), Some(22.0));
        assert_eq!(date("minute", 0.0), Some(0.0));
        assert_eq!(date("minute", 1136239445.0), Some(4.0));
        assert_eq!(date("year", 1230767999.0), Some(2008.0));
        assert_eq!(date("year", 1230768000.0), Some(2009.0));
        assert_eq!(date("month", 1456790399.0), Some(2.0));
        assert_eq!(date("day_of_month", 1456790399.0), Some(29.0));
        assert_eq!(date("month", 1456790400.0), Some(3.0));
        assert_eq!(date("day_of_month", 1456790400.0), Some(1.0));
        assert_eq!(date("day_of_year", 1483191420.0), Some(366.0));
        assert_eq!(date("day_of_year", 1672493820.0), Some(365.0));
        assert_eq!(date("days_in_month", 1454284800.0), Some(29.0));
        assert_eq!(date("days_in_month", 1485907200.0), Some(28.0));
        assert_eq!(date("days_in_month", 0.0), Some(31.0));
        assert_eq!(date("fortnight", 0.0), None);
    }

    #[test]
    fn minute_of_sample_values_like_at_modifier_test() {
        // at_modifier.test: minute(metric @ 1500) takes the sample values 150 and 300 as times.
        assert_eq!(date("minute", 150.0), Some(2.0));
        assert_eq!(date("minute", 300.0), Some(5.0));
        // minute() over [50m:1m] @ 6000 sums the minutes of the steps 3060s..6000s.
        let sum: f64 = (51..=100).map(|m| date("minute", (m * 60) as f64).unwrap_or(f64::NAN)).sum();
        assert_eq!(sum, 1315.0);
    }

    #[test]
    fn dates_truncate_toward_zero() {
        // -0.5s truncates to 0, i.e. still 1970-01-01 00:00:00.
        assert_eq!(date("year", -0.5), Some(1970.0));
        assert_eq!(date("hour", 3599.9), Some(0.0));
        // -1s is 1969-12-31 23:59:59, a Wednesday.
        assert_eq!(date("year", -1.0), Some(1969.0));
        assert_eq!(date("month", -1.0), Some(12.0));
        assert_eq!(date("day_of_month", -1.0), Some(31.0));
        assert_eq!(date("day_of_year", -1.0), Some(365.0));
        assert_eq!(date("day_of_week", -1.0), Some(3.0));
        assert_eq!(date("hour", -1.0), Some(23.0));
        assert_eq!(date("minute", -1.0), Some(59.0));
    }

    #[test]
    fn dates_of_distant_times() {
        // 2000-02-29 12:00:00, leap day of a year divisible by 400.
        assert_eq!(date("day_of_year", 951825600.0), Some(60.0));
        assert_eq!(date("days_in_month", 951825600.0), Some(29.0));
        // 2100-02-01 is not in a leap year.
        assert_eq!(date("days_in_month", 4105123200.0), Some(28.0));
        // Year 1 (0001-01-01T00:00:00Z) and year 0 (0000-12-31), proleptic Gregorian.
        assert_eq!(date("year", -62135596800.0), Some(1.0));
        assert_eq!(date("year", -62135596801.0), Some(0.0));
        assert_eq!(date("day_of_year", -62135596801.0), Some(366.0));
        // Go: time.Unix(math.MaxInt64, 0).UTC() is 292277026596-12-04 15:30:07.
        let max = Civil::from_unix(i64::MAX);
        assert_eq!((max.year, max.month, max.day, max.hour, max.minute), (292277026596, 12, 4, 15, 30));
        // Go: time.Unix(math.MinInt64, 0).UTC() is -292277022657-01-27 08:29:52.
        let min = Civil::from_unix(i64::MIN);
        assert_eq!((min.year, min.month, min.day, min.hour, min.minute), (-292277022657, 1, 27, 8, 29));
    }

    #[test]
    fn dates_of_nan_and_inf_as_prometheus_on_amd64() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e19] {
            assert_eq!(date("year", v), Some(-292277022657.0), "{v}");
            assert_eq!(date("month", v), Some(1.0));
            assert_eq!(date("day_of_month", v), Some(27.0));
            assert_eq!(date("day_of_year", v), Some(27.0));
            assert_eq!(date("days_in_month", v), Some(31.0));
            assert_eq!(date("hour", v), Some(8.0));
            assert_eq!(date("minute", v), Some(29.0));
        }
        assert_eq!(go_f64_to_i64(-9_223_372_036_854_775_808.0), i64::MIN);
        assert_eq!(go_f64_to_i64(9_223_372_036_854_774_784.0), 9_223_372_036_854_774_784);
        assert_eq!(go_f64_to_i64(-1.9), -1);
        assert_eq!(go_f64_to_i64(1.9), 1);
    }
}
