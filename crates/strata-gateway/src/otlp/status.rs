//! `google.rpc.Status` and `google.rpc.RetryInfo`, and the gRPC codes of the gateway's answers.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<Duration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Duration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const NOT_FOUND: i32 = 5;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNIMPLEMENTED: i32 = 12;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// The gRPC code of an HTTP status, as the OTLP exporters read them: `RESOURCE_EXHAUSTED` and
/// `UNAVAILABLE` are retried (the first only with a `RetryInfo`), the rest are not.
pub(super) fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => INVALID_ARGUMENT,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UNAUTHENTICATED,
        StatusCode::NOT_FOUND => NOT_FOUND,
        StatusCode::REQUEST_TIMEOUT => DEADLINE_EXCEEDED,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => RESOURCE_EXHAUSTED,
        StatusCode::NOT_IMPLEMENTED => UNIMPLEMENTED,
        StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
        _ => INTERNAL,
    }
}

/// A trailers-only gRPC answer: `grpc-status`, `grpc-message` and, with `retry_after_s`, a
/// `grpc-status-details-bin` holding a `RetryInfo`.
pub(super) fn grpc_error(code: i32, message: &str, retry_after_s: Option<u64>) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert("grpc-message", v);
    }
    let details = retry_after_s
        .map(|s| Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".to_string(),
            value: RetryInfo { retry_delay: Some(Duration { seconds: s as i64, nanos: 0 }) }.encode_to_vec(),
        })
        .into_iter()
        .collect();
    let status = Status { code, message: message.to_string(), details };
    let bin = base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
    if let Ok(v) = HeaderValue::from_str(&bin) {
        h.insert("grpc-status-details-bin", v);
    }
    resp
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overloaded_answer_tells_grpc_clients_when_to_come_back() {
        let resp = grpc_error(UNAVAILABLE, "ingest is at its memory limit; 100% used", Some(2));
        let h = resp.headers();
        assert_eq!(h["grpc-status"], "14");
        assert_eq!(h["grpc-message"], "ingest is at its memory limit; 100%25 used");
        let bin =
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(h["grpc-status-details-bin"].as_bytes()).unwrap();
        let status = Status::decode(bin.as_slice()).unwrap();
        assert_eq!(status.code, UNAVAILABLE);
        assert_eq!(status.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let info = RetryInfo::decode(status.details[0].value.as_slice()).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 2);
        assert_eq!(grpc_code(StatusCode::TOO_MANY_REQUESTS), RESOURCE_EXHAUSTED);
        assert_eq!(grpc_code(StatusCode::BAD_REQUEST), INVALID_ARGUMENT);
    }
}
