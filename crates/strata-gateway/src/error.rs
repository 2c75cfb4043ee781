use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An HTTP error answer: a status, a message for the caller, and for 429/503 how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), retry_after_s: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }
    pub fn rate_limited(message: impl Into<String>, retry_after_s: u64) -> Self {
        ApiError { retry_after_s: Some(retry_after_s.max(1)), ..Self::new(StatusCode::TOO_MANY_REQUESTS, message) }
    }
    pub fn overloaded(message: impl Into<String>, retry_after_s: u64) -> Self {
        ApiError { retry_after_s: Some(retry_after_s.max(1)), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message) }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// The same answer, telling the client when to try again.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds.max(1));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNAUTHORIZED | StatusCode::SERVICE_UNAVAILABLE
        ) {
            // These are answered before the body is read (all or part of it), so the connection
            // cannot carry another request; saying so keeps a client from sending its next
            // request on it. An overloaded server also sheds the connection.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<strata_log::Error> for ApiError {
    fn from(e: strata_log::Error) -> Self {
        use strata_log::Error as E;
        match e {
            E::Overloaded { .. } => ApiError::overloaded(e.to_string(), 1),
            E::Closed => ApiError::overloaded("server is shutting down", 5),
            // Space comes back with retention or an operator: a sender keeps its records and waits.
            E::DiskFull { .. } => ApiError::overloaded(e.to_string(), 30),
            E::UnknownTopic(_) | E::UnknownPartition { .. } => ApiError::not_found(e.to_string()),
            E::OffsetOutOfRange { .. } | E::GroupName(_) => ApiError::bad_request(e.to_string()),
            E::RecordTooLarge { .. } | E::BatchTooLarge { .. } => ApiError::too_large(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}
