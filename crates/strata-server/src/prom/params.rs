//! Request parameters as Prometheus reads them: a form body's values before the URL's, times as
//! Unix seconds or RFC 3339, durations as seconds or `1h30m`. Error texts are Prometheus's own
//! (`web/api/v1/api.go` of 2.42), so a client that shows them shows what it would show there.

/// Unix milliseconds of Prometheus's `minTime` and `maxTime`, the widest times its API accepts.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;
/// How Go formats `MIN_TIME_MS` and `MAX_TIME_MS`; client_golang sends them for open ranges.
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

const NS_PER_S: i64 = 1_000_000_000;
const NS_PER_MS: i64 = 1_000_000;

/// The parameters of one request: the form body's and the URL's, each in their order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    body: Vec<(String, String)>,
    url: Vec<(String, String)>,
}

impl Params {
    /// `url` is the raw query string, `body` a form body (`application/x-www-form-urlencoded`).
    pub fn new(url: Option<&str>, body: &[u8]) -> Params {
        let decode = |b: &[u8]| form_urlencoded(b);
        Params { body: decode(body), url: decode(url.unwrap_or("").as_bytes()) }
    }

    /// The first value of `key`, the body's before the URL's, "" when there is none: Go's
    /// `Request.FormValue`, which Prometheus reads every parameter with.
    pub fn get(&self, key: &str) -> &str {
        self.body.iter().chain(&self.url).find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `key`, the body's first: Go's `Request.Form[key]`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.body.iter().chain(&self.url).filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// A time parameter that may be left out: Prometheus's `parseTimeParam`.
    pub fn time_or(&self, key: &str, default_ms: i64) -> Result<i64, String> {
        match self.get(key) {
            "" => Ok(default_ms),
            v => parse_time(v).map_err(|e| format!("Invalid time value for '{key}': {e}")),
        }
    }
}

/// `a=1&b=x%20y` into pairs; malformed escapes are kept as they are, as Go's parser would
/// refuse only the pair and the rest of the form still counts.
fn form_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

/// A time as Unix seconds (`1435781451.781`) or RFC 3339 (`2015-07-01T20:10:51.781Z`), in Unix
/// milliseconds: Prometheus's `parseTime`, rounding the fraction of seconds to milliseconds the
/// same way. Times Go would silently wrap (NaN, ±Inf, beyond `maxTime`) are refused instead.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let cannot = || format!("cannot parse {s:?} to a valid timestamp");
    if let Some(secs) = parse_go_float(s) {
        if !secs.is_finite() || secs.abs() >= 9.2e15 {
            return Err(cannot());
        }
        // math.Modf, then the fraction rounded to milliseconds and made nanoseconds in float
        // arithmetic, as Go's time.Unix(int64(s), int64(ns*1e9)) receives it.
        let whole = secs.trunc();
        let frac = ((secs - whole) * 1000.0).round() / 1000.0;
        let ns = (frac * NS_PER_S as f64) as i64;
        let total_ns = i128::from(whole as i64) * i128::from(NS_PER_S) + i128::from(ns);
        return clamp_ms(total_ns.div_euclid(i128::from(NS_PER_MS))).ok_or_else(cannot);
    }
    if let Some(ms) = parse_rfc3339_ms(s) {
        return clamp_ms(ms).ok_or_else(cannot);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME_MS),
        MAX_TIME_FORMATTED => Ok(MAX_TIME_MS),
        _ => Err(cannot()),
    }
}

fn clamp_ms(ms: i128) -> Option<i64> {
    (i128::from(MIN_TIME_MS)..=i128::from(MAX_TIME_MS)).contains(&ms).then_some(ms as i64)
}

/// A duration as float seconds (`15`, `0.5`) or Prometheus's `1h30m` form, in nanoseconds:
/// Prometheus's `parseDuration`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Some(secs) = parse_go_float(s) {
        let ns = secs * NS_PER_S as f64;
        if ns.is_nan() {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!("cannot parse {s:?} to a valid duration. It overflows int64"));
        }
        return Ok(ns as i64);
    }
    strata_model::parse_prometheus_duration_ms(s)
        .and_then(|ms| ms.checked_mul(NS_PER_MS))
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input: what Rust parses, plus `_` between
/// digits; without the `+nan` and `-nan` Go refuses. Hexadecimal floats are not accepted.
fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    if lower.trim_start_matches(['+', '-']) == "nan" && lower != "nan" {
        return None;
    }
    if !s.contains('_') {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    let ok = b.iter().enumerate().all(|(i, &c)| {
        c != b'_' || (i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
    });
    if !ok {
        return None;
    }
    s.replace('_', "").parse().ok()
}

/// Go's `time.Parse(time.RFC3339Nano, s)`: `2006-01-02T15:04:05.999999999Z07:00`, a four-digit
/// year, a fraction of at most nine digits, `Z` or a `±hh:mm` offset. In Unix milliseconds,
/// the fraction truncated.
fn parse_rfc3339_ms(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0i64;
    if sep(at, b'.') {
        let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(at + 1, digits)? * 10i64.pow(9 - digits as u32);
        at += 1 + digits;
    }
    let offset_s = match b.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == at + 6 && sep(at + 3, b':') => {
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second) - i128::from(offset_s);
    Some(secs * 1000 + i128::from(nanos / NS_PER_MS))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A duration in Prometheus's notation (`5m`, `1h30m`, `0s`), as its flags show durations:
/// `model.Duration.String`.
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut rest = ms;
    let mut out = String::new();
    // Years and weeks only when they divide evenly: "90d" reads better than "12w6d".
    for (unit, mult, exact) in [
        ("y", 365 * 24 * 3_600_000, true),
        ("w", 7 * 24 * 3_600_000, true),
        ("d", 24 * 3_600_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ] {
        if exact && rest % mult != 0 {
            continue;
        }
        let n = rest / mult;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            rest -= n * mult;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case's answer is what Prometheus 2.42 answered for it, as the timestamp of the
    /// scalar of `query=1&time=<input>`.
    #[test]
    fn times_parse_as_prometheus_parses_them() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1435781451.781", Some(1_435_781_451_781)),
            ("1435781451", Some(1_435_781_451_000)),
            ("1.0005", Some(1000)),
            ("-1.0005", Some(-1000)),
            ("-1.5", Some(-1500)),
            ("1e-4", Some(0)),
            (".5", Some(500)),
            ("1e3", Some(1_000_000)),
            ("1_0", Some(10_000)),
            ("2015-07-01T20:10:51.781Z", Some(1_435_781_451_781)),
            ("2015-07-01T20:10:51.5555Z", Some(1_435_781_451_555)),
            ("2015-07-01T20:10:51.781+02:00", Some(1_435_774_251_781)),
            ("2015-07-01T20:10:51-00:30", Some(1_435_783_251_000)),
            ("1969-12-31T23:59:59.5Z", Some(-500)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000)),
            ("-292273086-05-16T16:47:06Z", Some(MIN_TIME_MS)),
            ("292277025-08-18T07:12:54.999999999Z", Some(MAX_TIME_MS)),
            ("abc", None),
            ("", None),
            (" 5", None),
            ("0x10", None),
            ("1__0", None),
            ("_1", None),
            ("NaN", None),
            ("+Inf", None),
            ("1e300", None),
            ("2015-07-01t20:10:51Z", None),
            ("2015-07-01T20:10:51.1234567891Z", None),
            ("2015-07-01T20:10:51.Z", None),
            ("2015-07-01T20:10:51", None),
            ("2015-02-29T20:10:51Z", None),
            ("2015-07-01T24:00:00Z", None),
            ("2015-7-01T20:10:51Z", None),
            ("2015-07-01T20:10:51+0200", None),
        ];
        for &(input, want) in cases {
            let got = parse_time(input);
            match want {
                Some(ms) => assert_eq!(got, Ok(ms), "{input:?}"),
                None => assert_eq!(got, Err(format!("cannot parse {input:?} to a valid timestamp")), "{input:?}"),
            }
        }
    }

    #[test]
    fn durations_parse_as_prometheus_parses_them() {
        let s = NS_PER_S;
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("15", Ok(15 * s)),
            ("0.5", Ok(s / 2)),
            ("0.0001", Ok(100_000)),
            ("-1", Ok(-s)),
            ("0", Ok(0)),
            ("0s", Ok(0)),
            ("15s", Ok(15 * s)),
            ("1m30s", Ok(90 * s)),
            ("1h1m", Ok(3660 * s)),
            ("1ms", Ok(NS_PER_MS)),
            ("1m1ms", Ok(60 * s + NS_PER_MS)),
            ("1y", Ok(365 * 86_400 * s)),
            ("2w3d", Ok(17 * 86_400 * s)),
            ("1m1h", Err("cannot parse \"1m1h\" to a valid duration")),
            ("1.5m", Err("cannot parse \"1.5m\" to a valid duration")),
            ("1s1s", Err("cannot parse \"1s1s\" to a valid duration")),
            ("xx", Err("cannot parse \"xx\" to a valid duration")),
            ("", Err("cannot parse \"\" to a valid duration")),
            ("5", Ok(5 * s)),
            ("m", Err("cannot parse \"m\" to a valid duration")),
            ("300y", Err("cannot parse \"300y\" to a valid duration")),
            ("1e30", Err("cannot parse \"1e30\" to a valid duration. It overflows int64")),
            ("Inf", Err("cannot parse \"Inf\" to a valid duration. It overflows int64")),
            ("-Inf", Err("cannot parse \"-Inf\" to a valid duration. It overflows int64")),
        ];
        for &(input, ref want) in cases {
            assert_eq!(parse_duration(input), want.map_err(str::to_string), "{input:?}");
        }
    }

    #[test]
    fn durations_format_as_prometheus_flags_show_them() {
        for (ms, want) in [
            (0, "0s"),
            (120_000, "2m"),
            (300_000, "5m"),
            (5_400_000, "1h30m"),
            (30 * 86_400_000, "30d"),
            (28 * 86_400_000, "4w"),
            (365 * 86_400_000, "1y"),
            (1_500, "1s500ms"),
        ] {
            assert_eq!(format_duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn body_values_come_before_the_urls() {
        let p = Params::new(Some("time=1&query=a&time=2&match%5B%5D=x"), b"query=b%20c&match[]=y");
        assert_eq!(p.get("query"), "b c");
        assert_eq!(p.get("time"), "1");
        assert_eq!(p.get("step"), "");
        assert_eq!(p.all("match[]"), ["y", "x"]);
        assert_eq!(p.time_or("step", 7), Ok(7));
        assert_eq!(
            p.time_or("query", 7),
            Err("Invalid time value for 'query': cannot parse \"b c\" to a valid timestamp".to_string())
        );
    }
}
