//! The per-request context handed to every handler.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::Value;

use crate::auth::jwt::Claims;
use crate::db::{PooledConn, QueryObserver};
use crate::error::AppError;
use crate::http::router::RouteDef;
use crate::state::AppState;

pub struct RequestCtx {
    pub state: AppState,
    pub method: Method,
    /// The request target as received (path and query): the URL a mutation invalidates.
    pub target: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The whole body, already capped at `http.max_body_bytes`.
    pub body: Bytes,
    /// Path parameters of the route template, in order.
    pub params: Vec<String>,
    pub route: &'static RouteDef,
    /// The client's address (from `X-Forwarded-For` only when the peer is a trusted proxy).
    pub client_ip: IpAddr,
    /// Counts and times this request's statements.
    pub obs: QueryObserver,
    /// The request's access token once verified (set by `auth`): the rate limiter and the
    /// handler's authentication share one verification.
    pub(crate) access_claims: OnceLock<Claims>,
}

impl RequestCtx {
    /// Checks out a pooled connection; a checkout timeout becomes a 503.
    pub async fn conn(&self) -> Result<PooledConn<'_>, AppError> {
        Ok(self.state.pool.get().await?)
    }

    /// The first value of query parameter `name` (decodes only up to that pair).
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_deref()?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_json(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
    }

    /// The body as JSON: 415 without a JSON content type, 400 when malformed.
    pub fn json_body(&self) -> Result<Value, AppError> {
        if !self.is_json() {
            return Err(AppError::UnsupportedMediaType);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| AppError::bad_request(format!("Failed to decode JSON object: {e}")))
    }

    /// Like [`RequestCtx::json_body`], but an empty body is `None`.
    pub fn optional_json_body(&self) -> Result<Option<Value>, AppError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.json_body().map(Some)
    }
}
