use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("timestamp {0:?} is neither RFC 3339 (2026-11-24T09:30:00Z) nor integer Unix milliseconds")]
    Rfc3339(String),
    #[error("timestamp must be an RFC 3339 string or integer Unix milliseconds, got {0}")]
    Type(String),
    #[error("timestamp {0} is out of range")]
    Range(String),
}

/// Parses a JSON timestamp, RFC 3339 or integer Unix milliseconds, into Unix nanoseconds.
pub fn parse_timestamp(v: &Value) -> Result<i64, TimestampError> {
    match v {
        Value::String(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| TimestampError::Rfc3339(s.clone()))?;
            let ns = t.unix_timestamp_nanos();
            if ns < 0 || ns > i128::from(i64::MAX) {
                return Err(TimestampError::Range(s.clone()));
            }
            Ok(ns as i64)
        }
        Value::Number(n) => {
            let ms = n.as_i64().ok_or_else(|| TimestampError::Type(n.to_string()))?;
            if ms < 0 {
                return Err(TimestampError::Range(n.to_string()));
            }
            ms.checked_mul(1_000_000).ok_or_else(|| TimestampError::Range(n.to_string()))
        }
        other => Err(TimestampError::Type(type_name(other).to_string())),
    }
}

/// Formats Unix nanoseconds as RFC 3339 with nanoseconds, in UTC.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) {
        Ok(t) => t.format(&Rfc3339).unwrap_or_else(|_| ns.to_string()),
        Err(_) => ns.to_string(),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_forms() {
        assert_eq!(parse_timestamp(&json!(1_700_000_000_123i64)).unwrap(), 1_700_000_000_123_000_000);
        assert_eq!(parse_timestamp(&json!("2023-11-14T22:13:20.123456789Z")).unwrap(), 1_700_000_000_123_456_789);
        assert_eq!(parse_timestamp(&json!("2023-11-14T23:13:20+01:00")).unwrap(), 1_700_000_000_000_000_000);
        assert!(parse_timestamp(&json!("yesterday")).is_err());
        assert!(parse_timestamp(&json!(1.5)).is_err());
        assert!(parse_timestamp(&json!(-1)).is_err());
        assert!(parse_timestamp(&json!(true)).is_err());
        assert!(parse_timestamp(&json!(i64::MAX)).is_err());
    }

    #[test]
    fn formats_round_trip() {
        let ns = 1_700_000_000_123_456_789;
        assert_eq!(parse_timestamp(&json!(format_rfc3339_nanos(ns))).unwrap(), ns);
    }
}
