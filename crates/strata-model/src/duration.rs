//! The one way every API spells a duration: `250` or `250ms`, `30s`, `5m`, `1h`, `1d`, `1w`.

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

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

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
