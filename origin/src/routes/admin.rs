//! `/api/v1/admin/*` (admins only, `no-store`).

use chrono::Utc;
use http::StatusCode;
use serde_json::json;

use crate::auth::authenticate;
use crate::error::AppError;
use crate::http::input::Fields;
use crate::http::request::RequestCtx;
use crate::http::response::{mutation_response, uncacheable, Response};
use crate::repo::fmt_ts;
use crate::routes::caching::{commit_invalidating, groups};
use crate::routes::health;

async fn admin(ctx: &RequestCtx) -> Result<(), AppError> {
    let conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    user.require_admin()
}

pub async fn cache_clear(ctx: &RequestCtx) -> Result<Response, AppError> {
    admin(ctx).await?;
    let scope = match ctx.optional_json_body()? {
        None => "all".to_string(),
        Some(body) => {
            let mut f = Fields::new(&body, &["scope"])?;
            let scope = f.one_of("scope", false, &["models", "all"]);
            f.finish()?;
            scope.unwrap_or_else(|| "all".into())
        }
    };
    ctx.state.models.clear();
    let (message, group) = if scope == "models" {
        ("Model cache cleared successfully", groups::MODELS)
    } else {
        ("All caches cleared successfully", groups::ALL)
    };
    // No row changes, but the fleet's proxies must drop the group too: with a bus the
    // invalidation goes through the outbox in a transaction of its own.
    let groups = [group.to_string()];
    let invalidation = if ctx.state.outbox.enabled() {
        let mut conn = ctx.conn().await?;
        let tx = conn.begin().await?;
        commit_invalidating(ctx, tx, &groups, None).await?
    } else {
        None
    };
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"message": message, "cleared_at": fmt_ts(&Utc::now())}),
        &groups,
        invalidation,
    ))
}

pub async fn cache_stats(ctx: &RequestCtx) -> Result<Response, AppError> {
    admin(ctx).await?;
    let body = json!({
        "cache_type": "in-process",
        "default_timeout": ctx.state.config.cache.model_registry_ttl_secs,
        "threshold": ctx.state.config.cache.cache_max_entries,
        "message": "Cache is operational",
        "caches": {"model_registry": ctx.state.models.stats()},
    });
    Ok(uncacheable(StatusCode::OK, &body, true))
}

pub async fn health_detailed(ctx: &RequestCtx) -> Result<Response, AppError> {
    admin(ctx).await?;
    let connected = health::ping(&ctx.state, &ctx.obs).await;
    let s = ctx.state.pool.state();
    let cfg = &ctx.state.config.database;
    let m = &ctx.state.metrics;
    let body = json!({
        "status": if connected { "healthy" } else { "degraded" },
        "database": {
            "connected": connected,
            "pool": {
                "size": cfg.pool_min_idle,
                "max_size": cfg.pool_max_size,
                "checked_out": s.connections - s.idle_connections,
                "checked_in": s.idle_connections,
                "idle": s.idle_connections,
                "overflow": s.connections.saturating_sub(cfg.pool_min_idle),
                "wait_count": s.statistics.pending_gets(),
            }
        },
        "slow_queries": m.db_slow_queries.get(),
        "slow_requests": m.http_slow_requests.get(),
    });
    let status = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(uncacheable(status, &body, true))
}
