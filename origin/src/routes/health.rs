//! Health and metrics.
//!
//! - Public API port: `GET /health`, a minimal readiness answer (`{"status":"ok"}`, or 503
//!   `{"status":"degraded"}` when the database round trip fails) with no pool internals.
//! - Operations listener (`metrics_listen`, loopback by default; see `http::ops`): `GET /health`
//!   with the database and pool state of origin-api.md §3.1, and `GET /metrics` (Prometheus).

use std::time::Duration;

use chrono::Utc;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::StatusCode;
use serde_json::{json, Value};

use crate::db::{self, QueryObserver, Sql};
use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::{bytes_response, uncacheable, Response};
use crate::repo::fmt_ts;
use crate::state::AppState;

const PING: Sql = Sql {
    name: "health_ping",
    text: "SELECT 1",
};

/// Runs `SELECT 1` through the pool within `database.health_timeout_ms`.
pub async fn ping(state: &AppState, obs: &QueryObserver) -> bool {
    let timeout = Duration::from_millis(state.config.database.health_timeout_ms);
    let attempt = async {
        let conn = state.pool.get().await?;
        conn.db(obs).query_one(&PING, &[]).await?;
        Ok::<_, AppError>(())
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(())))
}

/// Pool state in the shape of origin-api.md §3.1.
pub fn pool_json(state: &AppState, connected: bool) -> Value {
    let s = state.pool.state();
    let pool_size = state.config.database.pool_min_idle;
    json!({
        "connected": connected,
        "pool_size": pool_size,
        "max_size": state.config.database.pool_max_size,
        "connections": s.connections,
        "checked_out": s.connections - s.idle_connections,
        "checked_in": s.idle_connections,
        "overflow": s.connections.saturating_sub(pool_size),
        "waiting": s.statistics.pending_gets(),
        "timed_out": s.statistics.get_timed_out,
    })
}

fn status_of(connected: bool) -> (StatusCode, &'static str) {
    if connected {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    }
}

/// `GET /health` on the public port: readiness only.
pub async fn health(ctx: &RequestCtx) -> Result<Response, AppError> {
    let (status, text) = status_of(ping(&ctx.state, &ctx.obs).await);
    Ok(uncacheable(status, &json!({ "status": text }), false))
}

/// `GET /health` on the operations listener: readiness plus database and pool state.
pub async fn health_detailed(state: &AppState) -> Response {
    let connected = ping(state, &state.query_observer()).await;
    let (status, text) = status_of(connected);
    let body = json!({
        "status": text,
        "timestamp": fmt_ts(&Utc::now()),
        "environment": state.config.environment,
        "database": pool_json(state, connected),
    });
    uncacheable(status, &body, false)
}

/// `GET /metrics` on the operations listener.
pub fn metrics(state: &AppState) -> Response {
    let text = state.metrics.render(db::pool_stats(&state.pool));
    let mut response = bytes_response(StatusCode::OK, "text/plain; version=0.0.4", text.into());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
