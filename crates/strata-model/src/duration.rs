//! The one way every native API spells a duration: `250` or `250ms`, `30s`, `5m`, `1h`, `1d`,
//! `1w`; and Prometheus's own syntax (`1h30m`), which the Prometheus API and PromQL use.

/// Milliseconds of a positive duration: a whole number with an optional unit (`ms`, `s`, `m`,
/// `h`, `d`, `w`; none means milliseconds). `None` for anything else, zero, or an overflow.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: i64 = s[..split].parse().ok().filter(|n| *n > 0)?;
    let unit = match &s[split..] {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Milliseconds of a duration in Prometheus's syntax (`model.ParseDuration`): `0`, or whole
/// numbers of the units y, w, d, h, m, s, ms, each at most once and largest first (`1h30m`).
/// `None` for anything else or an overflow.
pub fn parse_prometheus_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    // The order units must come in; "ms" is tried before "m" but comes last.
    const RANK: [usize; 7] = [0, 1, 2, 3, 6, 4, 5];
    let mut rest = s;
    let mut next_rank = 0;
    let mut total_ms: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let i = UNITS.iter().position(|(u, _)| rest.starts_with(u))?;
        if RANK[i] < next_rank {
            return None;
        }
        next_rank = RANK[i] + 1;
        rest = &rest[UNITS[i].0.len()..];
        total_ms = total_ms.checked_add(n.checked_mul(UNITS[i].1)?)?;
    }
    if next_rank == 0 {
        return None;
    }
    Some(total_ms)
}

#[cfg(test)]
mod tests {
    use super::{parse_duration_ms, parse_prometheus_duration_ms};

    #[test]
    fn prometheus_durations_take_units_largest_first() {
        for (s, ms) in [
            ("0", Some(0)),
            ("0s", Some(0)),
            ("1m30s", Some(90_000)),
            ("1h1m", Some(3_660_000)),
            ("1m1ms", Some(60_001)),
            ("1y", Some(365 * 86_400_000)),
            ("2w3d", Some(17 * 86_400_000)),
            ("1m1h", None),
            ("1s1s", None),
            ("1.5m", None),
            ("", None),
            ("m", None),
            ("5", None),
            ("999999999999999y", None),
        ] {
            assert_eq!(parse_prometheus_duration_ms(s), ms, "{s:?}");
        }
    }

    #[test]
    fn durations_parse_the_same_everywhere() {
        for (s, ms) in [
            ("250", 250),
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("2w", 1_209_600_000),
            (" 5m ", 300_000),
        ] {
            assert_eq!(parse_duration_ms(s), Some(ms), "{s}");
        }
        for bad in ["", "0", "0s", "-1m", "5x", "m", "1.5h", "5 m", "99999999999999999w"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }
}
