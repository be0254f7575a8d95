//! The error type of every handler and the one place that maps errors to HTTP responses.

use http::StatusCode;
use serde_json::{json, Value};

use crate::http::response::{uncacheable, Response};

/// Everything a handler can fail with. [`AppError::into_response`] decides status and body; a 500
/// is opaque to the client while its cause chain is logged.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400 `bad_request` (domain error, malformed JSON, bad cursor).
    #[error("bad request: {message}")]
    BadRequest {
        message: String,
        details: Option<Value>,
    },
    /// 401 with one of `authentication_error`, `token_expired`, `invalid_token`.
    #[error("unauthorized ({code}): {message}")]
    Unauthorized { code: &'static str, message: String },
    /// 401 `{"msg": "Error loading the user <id>"}` (the original's shape).
    #[error("user {0} from the token does not exist")]
    UserNotFound(String),
    /// 403 `authorization_error`.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404 `not_found`: unknown route, or an entity missing or owned by someone else.
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 422 `validation_error` with `details: {field: [messages]}`.
    #[error("validation failed: {0}")]
    Validation(Value),
    /// 408: the request body did not arrive within `http.body_read_timeout_ms`.
    #[error("request body not received within {0:?}")]
    RequestTimeout(std::time::Duration),
    /// 504: the handler did not answer within `http.handler_timeout_ms`.
    #[error("handler did not answer within {0:?}")]
    HandlerTimeout(std::time::Duration),
    /// 429; the message is the limit, e.g. `10 per 1 minute`.
    #[error("rate limit exceeded: {0}")]
    TooManyRequests(String),
    /// 503: no database connection could be had in time.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The irregular `{"error": "<sentence>"}` shape some endpoints keep for the SPA.
    #[error("{status}: {error}")]
    Plain { status: StatusCode, error: String },
    /// 500; the cause is logged, never returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::NotFound(message.into())
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::Unauthorized {
            code,
            message: message.into(),
        }
    }

    /// A 422 for one field.
    pub fn invalid_field(field: &str, message: &str) -> AppError {
        AppError::Validation(json!({ field: [message] }))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized { .. } | AppError::UserNotFound(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::HandlerTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Plain { status, .. } => *status,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON error response (`Cache-Control: no-store`, like every error).
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            AppError::BadRequest { message, details } => {
                let mut body = json!({"error": "bad_request", "message": message});
                if let Some(details) = details {
                    body["details"] = details;
                }
                body
            }
            AppError::Unauthorized { code, message } => json!({"error": code, "message": message}),
            AppError::UserNotFound(id) => json!({"msg": format!("Error loading the user {id}")}),
            AppError::Forbidden(message) => {
                json!({"error": "authorization_error", "message": message})
            }
            AppError::NotFound(message) => json!({"error": "not_found", "message": message}),
            AppError::MethodNotAllowed => json!({
                "error": "method_not_allowed",
                "message": "The method is not allowed for the requested URL."
            }),
            AppError::UnsupportedMediaType => json!({
                "error": "unsupported_media_type",
                "message": "Content-Type must be application/json"
            }),
            AppError::PayloadTooLarge(limit) => json!({
                "error": "payload_too_large",
                "message": format!("Request body exceeds the limit of {limit} bytes")
            }),
            AppError::Validation(details) => json!({
                "error": "validation_error",
                "message": "Invalid request payload",
                "details": details
            }),
            AppError::RequestTimeout(budget) => json!({
                "error": "request_timeout",
                "message": format!(
                    "The request body was not received within {} ms",
                    budget.as_millis()
                )
            }),
            AppError::HandlerTimeout(budget) => {
                tracing::warn!(
                    event = "handler_timeout",
                    budget_ms = budget.as_millis() as u64,
                    "handler over budget"
                );
                json!({
                    "error": "gateway_timeout",
                    "message": "The request took too long to process"
                })
            }
            AppError::TooManyRequests(limit) => {
                json!({"error": "too_many_requests", "message": limit})
            }
            AppError::Unavailable(message) => {
                json!({"error": "service_unavailable", "message": message})
            }
            AppError::Plain { error, .. } => json!({ "error": error }),
            AppError::Internal(err) => {
                tracing::error!(event = "internal_error", error = ?err, "request failed");
                json!({"error": "internal_error", "message": "An unexpected error occurred"})
            }
        };
        let mut response = uncacheable(status, &body, false);
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still arrive: the connection cannot be reused.
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() || server_going_away(&e) {
            tracing::warn!(error = %e, "database connection lost");
            return AppError::Unavailable("Database unavailable".into());
        }
        AppError::Internal(anyhow::Error::new(e).context("database statement failed"))
    }
}

/// The server ended the session because it is shutting down or restarting (`57P01`
/// admin_shutdown from `pg_ctl stop -m fast`, `57P02` crash_shutdown, `57P03`
/// cannot_connect_now) or reports a connection exception (class `08`). Like a closed connection,
/// that is a 503 (try again shortly), not an internal error.
fn server_going_away(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(c)
            || c.code().starts_with("08")
    })
}

impl From<bb8::RunError<tokio_postgres::Error>> for AppError {
    fn from(e: bb8::RunError<tokio_postgres::Error>) -> Self {
        match e {
            bb8::RunError::TimedOut => {
                AppError::Unavailable("Database connection pool exhausted; try again".into())
            }
            bb8::RunError::User(e) => {
                tracing::warn!(error = %e, "could not open a database connection");
                AppError::Unavailable("Database unavailable".into())
            }
        }
    }
}
