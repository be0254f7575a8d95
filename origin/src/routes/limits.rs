//! Rate limits (origin-api.md §2.7): the per-route limit applied before every handler, and the
//! per-username login limit.

use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::router::RateGroup;
use crate::ratelimit::client_key;

/// The limit of the matched route (`RateGroup`), keyed by user for API routes and by client address
/// otherwise.
pub(super) fn rate_limit(ctx: &RequestCtx) -> Result<(), AppError> {
    let state = &ctx.state;
    if !state.config.rate_limit.enabled {
        return Ok(());
    }
    let rates = &state.rates;
    let spec = match ctx.route.rate {
        RateGroup::None => return Ok(()),
        RateGroup::Api => &rates.api,
        RateGroup::Register => &rates.register,
        RateGroup::Login => &rates.login,
        RateGroup::Logout => &rates.logout,
        RateGroup::Refresh => &rates.refresh,
    };
    let key = match ctx.route.rate {
        RateGroup::Api => crate::auth::peek_user_id(ctx)
            .map(|uid| format!("user:{uid}"))
            .unwrap_or_else(|| client_key(ctx.client_ip)),
        _ => client_key(ctx.client_ip),
    };
    if state.limiter.check(ctx.route.name, &key, spec) {
        Ok(())
    } else {
        Err(AppError::TooManyRequests(spec.display.clone()))
    }
}

/// The per-username login limit (on top of the per-address one of the route): counted for every
/// attempt on `username`, before the password is checked.
pub(super) fn limit_login_username(ctx: &RequestCtx, username: &str) -> Result<(), AppError> {
    let state = &ctx.state;
    if !state.config.rate_limit.enabled {
        return Ok(());
    }
    let spec = &state.rates.login_per_username;
    let key = crate::ratelimit::username_key(username);
    if state.limiter.check("login-username", &key, spec) {
        Ok(())
    } else {
        Err(AppError::TooManyRequests(spec.display.clone()))
    }
}
