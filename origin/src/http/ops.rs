//! The operations listener (`metrics_listen`, `--metrics-listen`, `METRICS_LISTEN`; loopback by
//! default): `GET /metrics` and the detailed `GET /health` with pool state. They are kept off the
//! public API port so that neither the metrics nor the pool internals are reachable through the
//! proxy; the public port answers `/metrics` with a 404 and `/health` with readiness only.

use std::net::SocketAddr;
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Method, Request};
use hyper::body::Incoming;

use crate::error::AppError;
use crate::http::response::{empty, Response};
use crate::routes::health;
use crate::state::AppState;

/// Serves one request of the operations listener. Never fails.
pub async fn handle(state: AppState, req: Request<Incoming>, _remote: SocketAddr) -> Response {
    let start = Instant::now();
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
    let mut response = match req.uri().path() {
        "/metrics" if is_read => health::metrics(&state),
        "/health" if is_read => health::health_detailed(&state).await,
        "/metrics" | "/health" => AppError::MethodNotAllowed.into_response(),
        _ => AppError::not_found("The requested URL was not found on the server.").into_response(),
    };
    if req.method() == Method::HEAD {
        let (mut head, body) = response.into_parts();
        if let Some(len) = hyper::body::Body::size_hint(&body).exact() {
            head.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        response = http::Response::from_parts(head, empty());
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}s", start.elapsed().as_secs_f64())) {
        response.headers_mut().insert("x-response-time", v);
    }
    response
}
