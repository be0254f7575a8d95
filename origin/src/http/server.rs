//! The hyper 1.x server: accept loop, per-request pipeline (routing, body cap, dispatch), the
//! headers every response carries, metrics and request logs, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, VARY};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::{empty, Response};
use crate::http::router::{self, Routed};
use crate::http::{budget, static_files};
use crate::routes;
use crate::state::AppState;

const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; font-src 'self' https://fonts.gstatic.com; script-src 'self' 'unsafe-inline'; connect-src 'self'";

/// Serves `listener` with `handler` ([`handle`] for the API, `http::ops::handle` for the
/// operations listener) until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish within `http.shutdown_grace_ms` and closes the rest.
pub async fn serve<H, F>(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
    handler: H,
) -> anyhow::Result<()>
where
    H: Fn(AppState, Request<Incoming>, SocketAddr) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handler(state, req, remote).await) }
                    });
                    let conn = http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        result = conn.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = Duration::from_millis(state.config.http.shutdown_grace_ms);
    if tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
        connections.abort_all();
    }
    Ok(())
}

/// The client address: the last `X-Forwarded-For` hop when the peer is a trusted proxy.
fn client_ip(state: &AppState, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
    if !state.config.http.trusted_proxies.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer)
}

/// Longest client-supplied field written to a log line; longer ones are cut and end with `…`.
pub const LOG_FIELD_MAX_CHARS: usize = 2048;

/// A user-controlled value made fit for a log line: CR and LF removed, at most
/// [`LOG_FIELD_MAX_CHARS`] characters.
pub fn log_safe(s: &str) -> String {
    let mut kept = s.chars().filter(|c| *c != '\r' && *c != '\n');
    let mut out: String = kept.by_ref().take(LOG_FIELD_MAX_CHARS).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Bytes, AppError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AppError::PayloadTooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(AppError::PayloadTooLarge(limit))
        }
        Err(e) => Err(AppError::bad_request(format!(
            "Could not read the request body: {e}"
        ))),
    }
}

fn preflight(req_headers: &http::HeaderMap, path: &str) -> Response {
    if !router::path_exists(path) {
        return AppError::not_found("The requested URL was not found on the server.")
            .into_response();
    }
    let mut response = http::Response::new(empty());
    let headers = response.headers_mut();
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
    );
    headers.insert(
        http::header::ALLOW,
        HeaderValue::from_static("DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
    );
    if let Some(requested) = req_headers.get("access-control-request-headers") {
        headers.insert("access-control-allow-headers", requested.clone());
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// Adds CORS headers for allowed origins and `Origin` to `Vary` on every `/api/*` response;
/// `origin` is the request's `Origin` header.
fn apply_cors(state: &AppState, origin: Option<&HeaderValue>, response: &mut Response) {
    let origins = &state.config.http.cors_origins;
    if origins.is_empty() {
        return;
    }
    let headers = response.headers_mut();
    let vary = match headers.get(VARY).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() => format!("{v}, Origin"),
        _ => "Origin".to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&vary) {
        headers.insert(VARY, v);
    }
    if let Some(origin) = origin {
        if origin
            .to_str()
            .is_ok_and(|o| origins.iter().any(|a| a == o))
        {
            headers.insert("access-control-allow-origin", origin.clone());
            headers.insert(
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            );
        }
    }
}

fn security_headers(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-xss-protection",
        HeaderValue::from_static("1; mode=block"),
    );
    h.insert(
        "referrer-policy",
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    if !h.contains_key(http::header::CACHE_CONTROL) {
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
}

/// The whole per-request pipeline. Never fails: every error becomes a response.
pub async fn handle(state: AppState, req: Request<Incoming>, remote: SocketAddr) -> Response {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let is_head = parts.method == Method::HEAD;
    let client_ip = client_ip(&state, remote.ip(), &parts.headers);
    // The only request header needed once the handler owns the header map.
    let origin = parts.headers.get(http::header::ORIGIN).cloned();
    let mut statements = None;
    let (route_name, mut response) = if parts.method == Method::OPTIONS {
        ("OPTIONS", preflight(&parts.headers, &path))
    } else {
        match router::route(&parts.method, &path) {
            Routed::NotFound => {
                match static_files::serve(&state, &parts.method, &path, &parts.headers).await {
                    Some(served) => served,
                    None => (
                        "unmatched",
                        AppError::not_found("The requested URL was not found on the server.")
                            .into_response(),
                    ),
                }
            }
            Routed::MethodNotAllowed => ("unmatched", AppError::MethodNotAllowed.into_response()),
            Routed::Found(def, params) => {
                let read = read_body(body, &parts.headers, state.config.http.max_body_bytes);
                let response = match budget::read_body(&state, read).await {
                    Err(e) => e.into_response(),
                    Ok(bytes) => {
                        let ctx = RequestCtx {
                            obs: state.query_observer(),
                            state: state.clone(),
                            method: parts.method.clone(),
                            target: parts
                                .uri
                                .path_and_query()
                                .map_or_else(|| path.clone(), |t| t.as_str().to_string()),
                            query: parts.uri.query().map(str::to_string),
                            headers: std::mem::take(&mut parts.headers),
                            body: bytes,
                            params,
                            route: def,
                            client_ip,
                            access_claims: OnceLock::new(),
                        };
                        let handler = routes::dispatch(&ctx);
                        let response = match budget::run_handler(&state, def.handler, handler).await
                        {
                            Ok(r) => r,
                            Err(e) => e.into_response(),
                        };
                        let n = ctx.obs.statements();
                        state
                            .metrics
                            .db_statements_per_request
                            .with_label_values(&[def.name])
                            .observe(f64::from(n));
                        statements = Some(n);
                        response
                    }
                };
                (def.name, response)
            }
        }
    };

    if is_head {
        let (mut head, body) = response.into_parts();
        if let Some(len) = hyper::body::Body::size_hint(&body).exact() {
            head.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        response = http::Response::from_parts(head, empty());
    }
    security_headers(&mut response);
    if path.starts_with("/api/") {
        apply_cors(&state, origin.as_ref(), &mut response);
    }
    if let Some(n) = statements {
        if let Ok(v) = HeaderValue::from_str(&format!("db;desc=\"{n} statements\"")) {
            response.headers_mut().insert("server-timing", v);
        }
    }
    let elapsed = start.elapsed();
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}s", elapsed.as_secs_f64())) {
        response.headers_mut().insert("x-response-time", v);
    }

    let status = response.status();
    let status_label = status.as_str();
    state
        .metrics
        .http_requests
        .with_label_values(&[route_name, status_label])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[route_name, status_label])
        .observe(elapsed.as_secs_f64());
    tracing::debug!(
        event = "response_sent",
        method = %log_safe(parts.method.as_str()),
        path = %log_safe(&path),
        route = route_name,
        status = status.as_u16(),
        duration = elapsed.as_secs_f64(),
        remote_addr = %client_ip,
    );
    if elapsed >= Duration::from_millis(state.config.http.slow_request_threshold_ms) {
        state.metrics.http_slow_requests.inc();
        tracing::warn!(
            event = "slow_request",
            method = %log_safe(parts.method.as_str()),
            path = %log_safe(&path),
            status = status.as_u16(),
            duration = elapsed.as_secs_f64(),
            remote_addr = %client_ip,
            "slow request"
        );
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::debug!(route = route_name, "answered 500");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_lose_line_breaks_and_are_bounded() {
        assert_eq!(log_safe("/a\r\nb"), "/ab");
        let long = "x".repeat(LOG_FIELD_MAX_CHARS + 10);
        let logged = log_safe(&long);
        assert_eq!(logged.chars().count(), LOG_FIELD_MAX_CHARS + 1);
        assert!(logged.ends_with('…'));
        assert_eq!(
            log_safe(&"y".repeat(LOG_FIELD_MAX_CHARS)).len(),
            LOG_FIELD_MAX_CHARS
        );
    }
}
