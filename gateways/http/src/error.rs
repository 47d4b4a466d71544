//! HTTP errors: every failure answers `application/problem+json` (RFC 9457) with a stable
//! machine `code`.
//!
//! Owns: [`ApiError`], the table `core::ErrorKind` → HTTP status, and the codes of failures the
//! gateway finds itself (bad JSON, media type, body size, base64, limits, timeouts). Internal
//! errors are logged once here, at the boundary, and their details stay hidden from clients.
//! Called by every handler and middleware; depends on nothing but axum and the core error.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rocketgate_core::{Error as CoreError, ErrorKind, Reason};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem details body (`application/problem+json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`urn:rocketgate:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary (the status' reason phrase).
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// Stable machine-readable code (see `docs/http.md`).
    pub code: String,
}

/// A request that failed: a status, a stable code and a detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code.
    pub code: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// `401 unauthenticated`: no usable credentials (the detail never says whether a user
    /// exists).
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    /// `403 forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// `400 invalid_argument`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", detail)
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:rocketgate:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
        }
    }
}

/// The HTTP status of a core error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::NotLeader | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The problem code of a core error, by its [`Reason`].
fn code_of(e: &CoreError) -> &'static str {
    match e.reason() {
        Reason::TopicNotFound => "topic_not_found",
        Reason::GroupNotFound => "group_not_found",
        Reason::MessageNotFound => "message_not_found",
        Reason::QueueNotFound => "queue_not_found",
        Reason::TopicExists => "topic_exists",
        Reason::GroupExists => "group_exists",
        Reason::InvalidReceiptHandle => "invalid_receipt_handle",
        Reason::IllegalWait => "wait_too_long",
        Reason::IllegalFilter => "invalid_filter",
        Reason::BodyTooLarge => "body_too_large",
        Reason::MessageTypeConflict => "message_type_mismatch",
        Reason::InvalidTransactionId => "unknown_transaction",
        Reason::TransactionResolved => "transaction_resolved",
        Reason::ShuttingDown => "shutting_down",
        Reason::QuotaExceeded => "quota_exceeded",
        Reason::Unauthenticated => "unauthenticated",
        Reason::Denied => "forbidden",
        Reason::UserNotFound => "user_not_found",
        Reason::UserExists => "user_exists",
        reason => match reason.kind() {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Throttled => "throttled",
            ErrorKind::NotLeader => "not_leader",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            _ => "internal",
        },
    }
}

/// The HTTP status of a core error: its kind's, but for the reasons whose REST answer is more
/// precise than the kind (an unknown id in the path is `404`; a well-formed receipt handle the
/// broker does not know, expired or already acknowledged, is `409`: its syntax is checked
/// before, see `rules::receipt_handle`).
fn http_status(e: &CoreError) -> StatusCode {
    match e.reason() {
        Reason::InvalidTransactionId => StatusCode::NOT_FOUND,
        Reason::InvalidReceiptHandle => StatusCode::CONFLICT,
        _ => status_of(e.kind()),
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let status = http_status(&e);
        let code = code_of(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "broker fault");
            return Self::new(status, code, "internal broker error");
        }
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.problem()).unwrap_or_default();
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        r
    }
}

/// The `WWW-Authenticate` challenge of every `401`: a bearer token or HTTP Basic.
pub const CHALLENGE: &str = "Bearer realm=\"rocketgate\", Basic realm=\"rocketgate\"";

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
