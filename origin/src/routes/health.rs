//! `GET /health` (real database round trip plus pool state) and `GET /metrics`.

use std::time::Duration;

use chrono::Utc;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::StatusCode;
use serde_json::{json, Value};

use crate::db::Sql;
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
pub async fn ping(ctx: &RequestCtx) -> bool {
    let timeout = Duration::from_millis(ctx.state.config.database.health_timeout_ms);
    let attempt = async {
        let conn = ctx.conn().await?;
        conn.db(&ctx.obs).query_one(&PING, &[]).await?;
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

pub async fn health(ctx: &RequestCtx) -> Result<Response, AppError> {
    let connected = ping(ctx).await;
    let body = json!({
        "status": if connected { "ok" } else { "degraded" },
        "timestamp": fmt_ts(&Utc::now()),
        "environment": ctx.state.config.environment,
        "database": pool_json(&ctx.state, connected),
    });
    let status = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(uncacheable(status, &body, false))
}

pub async fn metrics(ctx: &RequestCtx) -> Result<Response, AppError> {
    let text = ctx.state.metrics.render(&ctx.state.pool);
    let mut response = bytes_response(StatusCode::OK, "text/plain; version=0.0.4", text.into());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
