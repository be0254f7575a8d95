//! Authentication: the access token from `Authorization: Bearer` (no CSRF) or from the
//! `access_token_cookie` (CSRF double submit on unsafe methods), then the user row.
//!
//! Any handler authenticates with [`authenticate`]: one statement (the user load, which also
//! returns the user's `cache_version` for cheap ETags, whether the token was revoked — its `jti` by
//! a logout, or every token older than the user's `token_generation` by a password change — and
//! whether the account is disabled). A handler that needs one more row can fold the user load into that row's statement
//! with [`AccessToken`] instead.

pub mod jwt;
pub mod password;

use chrono::Utc;
use http::Method;
use tokio_postgres::GenericClient;

use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::repo::users;

pub const ACCESS_COOKIE: &str = "access_token_cookie";
pub const REFRESH_COOKIE: &str = "refresh_token_cookie";
pub const CSRF_ACCESS_COOKIE: &str = "csrf_access_token";
pub const CSRF_REFRESH_COOKIE: &str = "csrf_refresh_token";

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    /// Bumped with every write to this user's conversations or comparisons.
    pub cache_version: i64,
    /// `exp` of the access token used.
    pub token_exp: i64,
}

impl AuthUser {
    /// `max-age` of the targeted `LLMSelect-Cache-Control` on this user's responses: never beyond
    /// the token's life.
    pub fn cdn_max_age(&self, config: &Config) -> u64 {
        let remaining = (self.token_exp - Utc::now().timestamp()).max(0) as u64;
        remaining.min(config.cache.cdn_per_user_max_age_secs)
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(AppError::Forbidden("Admin access required".into()))
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(ctx: &'a RequestCtx, name: &str) -> Option<&'a str> {
    ctx.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn is_unsafe(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Verifies `token`, the request's access token, once per request: [`peek_user_id`] (rate limits)
/// and the handler's authentication share the result. A failure is not kept (it is recomputed,
/// with the same outcome, by the caller that reports it).
fn verify_access(ctx: &RequestCtx, token: &str) -> Result<jwt::Claims, AppError> {
    if let Some(claims) = ctx.access_claims.get() {
        return Ok(claims.clone());
    }
    let claims = ctx.state.jwt.verify(token, "access")?;
    let _ = ctx.access_claims.set(claims.clone());
    Ok(claims)
}

/// Verifies the request's token of `token_type` (`access` or `refresh`) without touching the
/// database. Bearer wins over the cookie; cookie auth checks CSRF on unsafe methods.
pub fn verify_token(ctx: &RequestCtx, token_type: &str) -> Result<jwt::Claims, AppError> {
    let cookie_name = if token_type == "refresh" {
        REFRESH_COOKIE
    } else {
        ACCESS_COOKIE
    };
    if token_type == "access" {
        if let Some(h) = ctx.headers.get(http::header::AUTHORIZATION) {
            let h = h.to_str().unwrap_or_default();
            return match h.strip_prefix("Bearer ") {
                Some(token) => verify_access(ctx, token.trim()),
                None => Err(AppError::unauthorized(
                    "invalid_token",
                    "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'",
                )),
            };
        }
    }
    let Some(token) = cookie(ctx, cookie_name) else {
        return Err(AppError::unauthorized(
            "authentication_error",
            format!("Missing cookie \"{cookie_name}\""),
        ));
    };
    let claims = if token_type == "access" {
        verify_access(ctx, token)?
    } else {
        ctx.state.jwt.verify(token, token_type)?
    };
    if is_unsafe(&ctx.method) {
        let Some(sent) = ctx
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
        else {
            return Err(AppError::unauthorized(
                "authentication_error",
                "Missing CSRF token",
            ));
        };
        let equal: bool =
            subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), claims.csrf.as_bytes()).into();
        if !equal {
            return Err(AppError::unauthorized(
                "authentication_error",
                "CSRF double submit tokens do not match",
            ));
        }
    }
    Ok(claims)
}

/// A verified access token whose subject is a user id, before the user row is loaded. Handlers
/// that need the user together with another row load both in one statement (for example
/// `repo::conversations::get_with_user`) and finish with [`AccessToken::with_user`]; the others
/// use [`authenticate`].
#[derive(Debug)]
pub struct AccessToken {
    pub user_id: i64,
    claims: jwt::Claims,
}

/// The 401 for a token that was revoked (logged out, or issued before a password change).
pub fn revoked() -> AppError {
    AppError::unauthorized("invalid_token", "Token has been revoked")
}

/// The 401 for a token or a login of a disabled account.
pub fn disabled() -> AppError {
    AppError::unauthorized(
        "account_disabled",
        "This account is disabled. Contact an administrator.",
    )
}

/// Refuses the user row loaded with a token's checks: missing (`UserNotFound` for `sub`),
/// disabled, or the token revoked.
pub fn check_token_user(
    user: Option<users::TokenUser>,
    sub: &str,
) -> Result<users::TokenUser, AppError> {
    match user {
        None => Err(AppError::UserNotFound(sub.to_owned())),
        Some(u) if u.disabled => Err(disabled()),
        Some(u) if u.revoked => Err(revoked()),
        Some(u) => Ok(u),
    }
}

impl AccessToken {
    /// Verifies the request's access token (no database access); a subject that is not a user id
    /// fails like a deleted user.
    pub fn verify(ctx: &RequestCtx) -> Result<AccessToken, AppError> {
        let claims = verify_token(ctx, "access")?;
        match claims.sub.parse::<i64>() {
            Ok(user_id) => Ok(AccessToken { user_id, claims }),
            Err(_) => Err(AppError::UserNotFound(claims.sub)),
        }
    }

    /// The token's `jti` and generation, for the revocation check folded into the user load.
    pub fn revocation(&self) -> (&str, i32) {
        (&self.claims.jti, self.claims.generation)
    }

    /// The authenticated user from the token and the subject's row as loaded with the token's
    /// checks (`None`: the user no longer exists): a disabled account or a revoked token is a 401.
    pub fn with_user(self, user: Option<users::TokenUser>) -> Result<AuthUser, AppError> {
        let users::TokenUser { user, .. } = check_token_user(user, &self.claims.sub)?;
        Ok(AuthUser {
            id: user.id,
            username: user.username,
            is_admin: user.is_admin,
            cache_version: user.cache_version,
            token_exp: self.claims.exp,
        })
    }
}

/// Authenticates the request and loads its user, refusing a revoked token (one statement).
pub async fn authenticate(
    ctx: &RequestCtx,
    db: &Db<'_, impl GenericClient + Sync>,
) -> Result<AuthUser, AppError> {
    let token = AccessToken::verify(ctx)?;
    let (jti, generation) = token.revocation();
    let user = users::by_id(db, token.user_id, jti, generation).await?;
    token.with_user(user)
}

/// The request's access token as sent: the bearer header, else the access cookie.
fn access_token_text(ctx: &RequestCtx) -> Option<&str> {
    match ctx.headers.get(http::header::AUTHORIZATION) {
        Some(h) => Some(h.to_str().ok()?.strip_prefix("Bearer ")?.trim()),
        None => cookie(ctx, ACCESS_COOKIE),
    }
}

/// The user id of a valid access token, if any (used to key rate limits; no database access).
pub fn peek_user_id(ctx: &RequestCtx) -> Option<String> {
    verify_access(ctx, access_token_text(ctx)?)
        .ok()
        .map(|c| c.sub)
}

/// Every valid token the request presents, for logout: the bearer token (access or refresh), the
/// access cookie and the refresh cookie. Invalid or expired tokens are skipped (they are refused
/// anyway); no CSRF check (logout needs none, origin-api.md §3.3; `SameSite=Lax` keeps other
/// sites' POSTs from carrying the cookies).
pub fn presented_tokens(ctx: &RequestCtx) -> Vec<jwt::Claims> {
    let jwt = &ctx.state.jwt;
    let mut found: Vec<jwt::Claims> = Vec::new();
    let bearer = ctx
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok()?.strip_prefix("Bearer "))
        .map(str::trim);
    let candidates = [
        (bearer, &["access", "refresh"][..]),
        (cookie(ctx, ACCESS_COOKIE), &["access"][..]),
        (cookie(ctx, REFRESH_COOKIE), &["refresh"][..]),
    ];
    for (token, types) in candidates {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            continue;
        };
        if let Some(claims) = types.iter().find_map(|ty| jwt.verify(token, ty).ok()) {
            if !found.iter().any(|c| c.jti == claims.jti) {
                found.push(claims);
            }
        }
    }
    found
}

/// A `Set-Cookie` value for an auth cookie (no `Max-Age`/`Expires`: session cookies).
pub fn set_cookie(name: &str, value: &str, http_only: bool, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; SameSite=Lax");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A `Set-Cookie` value that deletes an auth cookie.
pub fn clear_cookie(name: &str, http_only: bool, secure: bool) -> String {
    let mut c = set_cookie(name, "", http_only, secure);
    c.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    c
}
