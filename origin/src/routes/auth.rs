//! `/api/v1/auth/*`: register, login, logout, refresh, me (origin-api.md §3.3), and the user's own
//! password change.

use http::header::{HeaderValue, SET_COOKIE};
use http::StatusCode;
use serde_json::json;
use tokio_postgres::error::SqlState;

use crate::accounts;
use crate::auth::{
    self, password, ACCESS_COOKIE, CSRF_ACCESS_COOKIE, CSRF_REFRESH_COOKIE, REFRESH_COOKIE,
};
use crate::error::AppError;
use crate::http::input::Fields;
use crate::http::request::RequestCtx;
use crate::http::response::{mutation_response, uncacheable, Response};
use crate::repo::users;
use crate::routes::caching::{commit_invalidating, groups};

fn add_cookies(response: &mut Response, cookies: &[String]) {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
}

pub async fn register(ctx: &RequestCtx) -> Result<Response, AppError> {
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["username", "password", "registration_token"])?;
    let username = f.string("username", true, Some((3, 50)));
    let pw = f.string("password", true, Some(accounts::PASSWORD_LENGTH));
    let token = f.string("registration_token", false, None);
    f.finish()?;
    let (Some(username), Some(pw)) = (username, pw) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let username = username.to_lowercase();
    let cfg = &ctx.state.config.auth;
    let first_user_only = !cfg.allow_open_registration && cfg.registration_token.is_none();
    if !cfg.allow_open_registration {
        if let Some(expected) = &cfg.registration_token {
            let ok: bool = token.as_deref().is_some_and(|t| {
                subtle::ConstantTimeEq::ct_eq(t.as_bytes(), expected.as_bytes()).into()
            });
            if !ok {
                return Err(AppError::Forbidden(
                    "Invalid registration token supplied".into(),
                ));
            }
        }
    }
    let closed = || AppError::BadRequest {
        message: "Registration is disabled. Contact an administrator to create an account.".into(),
        details: Some(json!({"code": "registration_closed"})),
    };
    if first_user_only {
        // A cheap early answer when registration is closed; checked again under the lock below.
        let conn = ctx.conn().await?;
        if users::any_exist(&conn.db(&ctx.obs)).await? {
            return Err(closed());
        }
    }
    // No pooled connection is held while the password is hashed (CPU-bound, off the runtime):
    // with a small pool, slow hashing would otherwise starve every other request.
    let log_n = cfg.password_hash_log_n;
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw, log_n))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let mut conn = ctx.conn().await?;
    let tx = conn.begin().await?;
    let db = tx.db(&ctx.obs);
    users::lock_registrations(&db).await?;
    if first_user_only && users::any_exist(&db).await? {
        return Err(closed());
    }
    match users::insert(&db, &username, &hash).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(AppError::BadRequest {
                message: "Username already exists".into(),
                details: Some(json!({"field": "username"})),
            });
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(uncacheable(
        StatusCode::CREATED,
        &json!({"message": "Registration successful"}),
        false,
    ))
}

pub async fn login(ctx: &RequestCtx) -> Result<Response, AppError> {
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["username", "password"])?;
    let username = f.string("username", true, None);
    let pw = f.string("password", true, None);
    f.finish()?;
    let (Some(username), Some(pw)) = (username, pw) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    crate::routes::limits::limit_login_username(ctx, &username)?;
    let invalid = || AppError::unauthorized("authentication_error", "Invalid username or password");
    // The connection is released before the password is verified (no connection held during
    // hashing).
    let creds = {
        let conn = ctx.conn().await?;
        users::credentials(&conn.db(&ctx.obs), &username.to_lowercase()).await?
    };
    // An unknown username still pays for one password verification, against a dummy hash with
    // the parameters of new hashes, and gets the same 401: neither the response nor its timing
    // tells whether the user exists.
    let stored = creds.as_ref().map(|c| c.password_hash.clone());
    let log_n = ctx.state.config.auth.password_hash_log_n;
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(stored) => password::verify(&pw, &stored),
        None => {
            // `black_box`: the result is unused, and the work must not be optimised away.
            std::hint::black_box(password::verify(&pw, password::dummy_hash(log_n)));
            false
        }
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))?;
    let Some(creds) = creds.filter(|_| ok) else {
        return Err(invalid());
    };
    // Only a caller who knows the password learns that the account is disabled.
    if creds.disabled {
        return Err(auth::disabled());
    }
    let mut response = uncacheable(
        StatusCode::OK,
        &json!({"message": "Login successful", "user": {"username": creds.username}}),
        false,
    );
    add_session_cookies(ctx, &mut response, creds.id, creds.token_generation)?;
    Ok(response)
}

/// Issues a fresh access and refresh token of `generation` for `user_id` and sets the four auth
/// cookies on `response`.
fn add_session_cookies(
    ctx: &RequestCtx,
    response: &mut Response,
    user_id: i64,
    generation: i32,
) -> Result<(), AppError> {
    let cfg = &ctx.state.config.auth;
    let jwt = &ctx.state.jwt;
    let access = jwt.issue_for(
        user_id,
        generation,
        "access",
        cfg.access_token_expires_minutes * 60,
    )?;
    let refresh = jwt.issue_for(
        user_id,
        generation,
        "refresh",
        cfg.refresh_token_expires_days * 86_400,
    )?;
    let secure = cfg.jwt_cookie_secure;
    add_cookies(
        response,
        &[
            auth::set_cookie(ACCESS_COOKIE, &access.token, true, secure),
            auth::set_cookie(CSRF_ACCESS_COOKIE, &access.csrf, false, secure),
            auth::set_cookie(REFRESH_COOKIE, &refresh.token, true, secure),
            auth::set_cookie(CSRF_REFRESH_COOKIE, &refresh.csrf, false, secure),
        ],
    );
    Ok(())
}

/// `POST /api/v1/auth/password` `{old_password, new_password}`: the signed-in user changes their
/// password. Every token issued before is refused from then on (the user's token generation is
/// bumped in the same statement), the response sets fresh cookies for this session, and names
/// `user:<id>` in `Cache-Group-Invalidation` so the proxy drops what the old tokens cached.
pub async fn change_password(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = auth::authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["old_password", "new_password"])?;
    let old = f.string("old_password", true, None);
    let new = f.string("new_password", true, Some(accounts::PASSWORD_LENGTH));
    f.finish()?;
    let (Some(old), Some(new)) = (old, new) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    crate::routes::limits::limit_login_username(ctx, &user.username)?;
    let stored = users::password_hash(&conn.db(&ctx.obs), user.id)
        .await?
        .ok_or_else(|| AppError::UserNotFound(user.id.to_string()))?;
    let verify_against = stored.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&old, &verify_against))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    if !ok {
        return Err(AppError::unauthorized(
            "authentication_error",
            "Invalid password",
        ));
    }
    let hash = accounts::hash_password(new, ctx.state.config.auth.password_hash_log_n).await?;
    let tx = conn.begin().await?;
    let Some(generation) =
        users::set_password(&tx.db(&ctx.obs), user.id, &hash, Some(&stored)).await?
    else {
        return Err(AppError::BadRequest {
            message: "The password was changed concurrently; try again".into(),
            details: None,
        });
    };
    let groups = [groups::user(user.id)];
    let invalidation = commit_invalidating(ctx, tx, &groups, None).await?;
    let mut response = mutation_response(
        StatusCode::OK,
        &json!({"message": "Password changed"}),
        &groups,
        invalidation,
    );
    add_session_cookies(ctx, &mut response, user.id, generation)?;
    Ok(response)
}

/// Clears the auth cookies and revokes every valid token presented (access and refresh, by
/// `jti`, until they expire), then names `user:<id>` in `Cache-Group-Invalidation` so the proxy
/// drops every cached per-user response of each user logged out. If the revocation cannot be
/// written the answer is an error, not a logout that only looks done.
pub async fn logout(ctx: &RequestCtx) -> Result<Response, AppError> {
    let tokens: Vec<users::Revocation> = auth::presented_tokens(ctx)
        .into_iter()
        .filter_map(|c| {
            Some(users::Revocation {
                user_id: c.sub.parse().ok()?,
                jti: c.jti,
                token_type: c.token_type,
                exp: c.exp,
            })
        })
        .collect();
    let mut groups: Vec<String> = Vec::new();
    let mut invalidation = None;
    if !tokens.is_empty() {
        for t in &tokens {
            let group = groups::user(t.user_id);
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        let mut conn = ctx.conn().await?;
        let tx = conn.begin().await?;
        users::revoke(&tx.db(&ctx.obs), &tokens).await?;
        invalidation = commit_invalidating(ctx, tx, &groups, None).await?;
    }
    let secure = ctx.state.config.auth.jwt_cookie_secure;
    let mut response = mutation_response(
        StatusCode::OK,
        &json!({"message": "Logged out"}),
        &groups,
        invalidation,
    );
    add_cookies(
        &mut response,
        &[
            auth::clear_cookie(ACCESS_COOKIE, true, secure),
            auth::clear_cookie(CSRF_ACCESS_COOKIE, false, secure),
            auth::clear_cookie(REFRESH_COOKIE, true, secure),
            auth::clear_cookie(CSRF_REFRESH_COOKIE, false, secure),
        ],
    );
    Ok(response)
}

pub async fn refresh(ctx: &RequestCtx) -> Result<Response, AppError> {
    let claims = auth::verify_token(ctx, "refresh")?;
    let Ok(id) = claims.sub.parse::<i64>() else {
        return Err(AppError::UserNotFound(claims.sub));
    };
    {
        let conn = ctx.conn().await?;
        let user = users::by_id(&conn.db(&ctx.obs), id, &claims.jti, claims.generation).await?;
        auth::check_token_user(user, &claims.sub)?;
    }
    let cfg = &ctx.state.config.auth;
    let access = ctx.state.jwt.issue_for(
        id,
        claims.generation,
        "access",
        cfg.access_token_expires_minutes * 60,
    )?;
    let mut response = uncacheable(
        StatusCode::OK,
        &json!({"message": "Token refreshed"}),
        false,
    );
    add_cookies(
        &mut response,
        &[
            auth::set_cookie(ACCESS_COOKIE, &access.token, true, cfg.jwt_cookie_secure),
            auth::set_cookie(
                CSRF_ACCESS_COOKIE,
                &access.csrf,
                false,
                cfg.jwt_cookie_secure,
            ),
        ],
    );
    Ok(response)
}

pub async fn me(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let user = auth::authenticate(ctx, &conn.db(&ctx.obs)).await?;
    Ok(uncacheable(
        StatusCode::OK,
        &json!({"user": {"username": user.username}}),
        true,
    ))
}
