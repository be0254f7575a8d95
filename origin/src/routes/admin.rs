//! `/api/v1/admin/*` (admins only, `no-store`): caches, detailed health, and user accounts
//! (`/admin/users…`: list, create, disable/enable, delete, reset a password; the writes are
//! `crate::accounts`, shared with the command line).

use chrono::Utc;
use http::StatusCode;
use serde_json::json;

use crate::accounts::{self, user_json, Writer};
use crate::auth::{authenticate, AuthUser};
use crate::error::AppError;
use crate::http::input::Fields;
use crate::http::request::RequestCtx;
use crate::http::response::{mutation_response, uncacheable, Response};
use crate::repo::{fmt_ts, users};
use crate::routes::caching::{commit_invalidating, groups};
use crate::routes::health;

async fn admin(ctx: &RequestCtx) -> Result<AuthUser, AppError> {
    let conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    user.require_admin()?;
    Ok(user)
}

/// The `{n}` of `/admin/users/{n}…` (the router guarantees digits).
fn user_id_param(ctx: &RequestCtx) -> Result<i64, AppError> {
    ctx.params
        .first()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| AppError::not_found("User not found"))
}

fn writer(ctx: &RequestCtx) -> Writer<'_> {
    Writer {
        outbox: &ctx.state.outbox,
        obs: &ctx.obs,
        target: Some(&ctx.target),
    }
}

/// An administrator cannot disable or delete their own account (that would lock them out; the
/// command line can).
fn not_self(admin: &AuthUser, id: i64, what: &str) -> Result<(), AppError> {
    if admin.id == id {
        return Err(AppError::bad_request(format!(
            "You cannot {what} your own account"
        )));
    }
    Ok(())
}

/// `GET /api/v1/admin/users`: every user, by id.
pub async fn users_list(ctx: &RequestCtx) -> Result<Response, AppError> {
    admin(ctx).await?;
    let conn = ctx.conn().await?;
    let users: Vec<_> = users::list(&conn.db(&ctx.obs))
        .await?
        .iter()
        .map(user_json)
        .collect();
    Ok(uncacheable(StatusCode::OK, &json!({"users": users}), true))
}

/// `POST /api/v1/admin/users` `{username, password, is_admin?}`: creates an account whatever the
/// registration policy (201). Nothing cached changes, so no invalidation.
pub async fn user_create(ctx: &RequestCtx) -> Result<Response, AppError> {
    admin(ctx).await?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["username", "password", "is_admin"])?;
    let username = f.string("username", true, Some(accounts::USERNAME_LENGTH));
    let password = f.string("password", true, Some(accounts::PASSWORD_LENGTH));
    let is_admin = f.boolean("is_admin", false).unwrap_or(false);
    f.finish()?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let username = accounts::normalise_username(&username)?;
    let hash = accounts::hash_password(password, ctx.state.config.auth.password_hash_log_n).await?;
    let mut conn = ctx.conn().await?;
    let user = accounts::create(&mut conn, &ctx.obs, &username, &hash, is_admin).await?;
    Ok(uncacheable(
        StatusCode::CREATED,
        &json!({"user": user_json(&user)}),
        false,
    ))
}

/// `PATCH /api/v1/admin/users/{n}` `{disabled}`: disables or enables an account. Invalidates
/// `user:<n>`.
pub async fn user_update(ctx: &RequestCtx) -> Result<Response, AppError> {
    let me = admin(ctx).await?;
    let id = user_id_param(ctx)?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["disabled"])?;
    let disabled = f.boolean("disabled", true);
    f.finish()?;
    let disabled = disabled.unwrap_or(false);
    if disabled {
        not_self(&me, id, "disable")?;
    }
    let mut conn = ctx.conn().await?;
    let done = accounts::set_disabled(&mut conn, &writer(ctx), id, disabled).await?;
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"user": user_json(&done.value)}),
        &done.groups,
        done.invalidation,
    ))
}

/// `DELETE /api/v1/admin/users/{n}`: deletes an account and everything it owns. Invalidates
/// `user:<n>`.
pub async fn user_delete(ctx: &RequestCtx) -> Result<Response, AppError> {
    let me = admin(ctx).await?;
    let id = user_id_param(ctx)?;
    not_self(&me, id, "delete")?;
    let mut conn = ctx.conn().await?;
    let done = accounts::delete(&mut conn, &writer(ctx), id).await?;
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"message": "User deleted"}),
        &done.groups,
        done.invalidation,
    ))
}

/// `POST /api/v1/admin/users/{n}/password` `{password}`: sets a new password and revokes every
/// token of that user. Invalidates `user:<n>`.
pub async fn user_reset_password(ctx: &RequestCtx) -> Result<Response, AppError> {
    admin(ctx).await?;
    let id = user_id_param(ctx)?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["password"])?;
    let password = f.string("password", true, Some(accounts::PASSWORD_LENGTH));
    f.finish()?;
    let Some(password) = password else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let hash = accounts::hash_password(password, ctx.state.config.auth.password_hash_log_n).await?;
    let mut conn = ctx.conn().await?;
    let done = accounts::reset_password(&mut conn, &writer(ctx), id, &hash).await?;
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"message": "Password reset; the user's sessions were revoked"}),
        &done.groups,
        done.invalidation,
    ))
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
