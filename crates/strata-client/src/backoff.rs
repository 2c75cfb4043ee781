//! Delays between attempts: exponential backoff with jitter, or what the server asked for.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Longest `Retry-After` taken into account before capping; guards the arithmetic, not the wait.
const RETRY_AFTER_SECONDS_MAX: u64 = 24 * 60 * 60;

/// The delay before retry number `retry` (0 for the first retry), without jitter: `initial * 2^retry`,
/// capped at `max`.
pub fn backoff_ceiling(retry: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// The delay before retry number `retry`, with "equal jitter": half of the ceiling is always waited and
/// `jitter` (in `[0, 1]`) picks where in the other half the delay lands, so that many clients rejected at
/// the same moment do not come back at the same moment.
pub fn backoff_delay(retry: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let ceiling = backoff_ceiling(retry, initial, max);
    let half = ceiling / 2;
    half + (ceiling - half).mul_f64(jitter.clamp(0.0, 1.0))
}

/// The delay before the next attempt: the server's `Retry-After` when it sent one, else the backoff
/// delay; never more than `max`.
pub fn retry_delay(
    retry: u32,
    retry_after: Option<Duration>,
    initial: Duration,
    max: Duration,
    jitter: f64,
) -> Duration {
    match retry_after {
        Some(wait) => wait.min(max),
        None => backoff_delay(retry, initial, max, jitter),
    }
}

/// Parses a `Retry-After` value given in seconds (`"3"`). The HTTP-date form and anything else that is
/// not a whole number of seconds gives `None`, so the caller falls back to its own backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, so the only possible failure is overflow: treat it as "a very long time".
    let seconds = value.parse::<u64>().unwrap_or(RETRY_AFTER_SECONDS_MAX);
    Some(Duration::from_secs(seconds.min(RETRY_AFTER_SECONDS_MAX)))
}

/// The `Retry-After` of a response, if present and in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER).and_then(|value| value.to_str().ok()).and_then(parse_retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let cases = [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1_600), (5, 2_000), (40, 2_000)];
        for (retry, expected_ms) in cases {
            assert_eq!(backoff_ceiling(retry, ms(100), ms(2_000)), ms(expected_ms), "retry {retry}");
        }
    }

    #[test]
    fn ceiling_does_not_overflow() {
        let max = Duration::from_secs(u64::MAX / 2);
        assert_eq!(backoff_ceiling(u32::MAX, Duration::from_secs(u64::MAX / 4), max), max);
    }

    #[test]
    fn jitter_stays_between_half_and_full_ceiling() {
        let cases = [(0.0, 100), (0.5, 150), (1.0, 200), (-3.0, 100), (7.0, 200)];
        for (jitter, expected_ms) in cases {
            assert_eq!(backoff_delay(1, ms(100), ms(10_000), jitter), ms(expected_ms), "jitter {jitter}");
        }
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        let cases = [
            (None, ms(100)),
            (Some(Duration::from_secs(0)), ms(0)),
            (Some(Duration::from_secs(2)), ms(2_000)),
            (Some(Duration::from_secs(60)), ms(5_000)),
        ];
        for (retry_after, expected) in cases {
            let delay = retry_delay(0, retry_after, ms(100), ms(5_000), 1.0);
            assert_eq!(delay, expected, "retry-after {retry_after:?}");
        }
    }

    #[test]
    fn parses_retry_after_seconds_only() {
        let cases = [
            ("0", Some(0)),
            ("1", Some(1)),
            (" 30 ", Some(30)),
            ("120", Some(120)),
            ("99999999999999999999999", Some(RETRY_AFTER_SECONDS_MAX)),
            ("", None),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_retry_after(input), expected.map(Duration::from_secs), "input {input:?}");
        }
    }

    #[test]
    fn reads_retry_after_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
