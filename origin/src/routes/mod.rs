//! Handlers, one module per resource, and the dispatcher that applies rate limits and calls them.
//!
//! A handler is `async fn(&RequestCtx) -> Result<Response, AppError>`. To add one: a row in
//! `http::router::ROUTES`, a `Handler` variant, and an arm in [`dispatch`].

pub mod admin;
pub mod auth;
pub mod chat;
pub mod compare;
pub mod comparisons;
pub mod conversations;
pub mod health;
pub mod keys;
pub mod models;

use crate::auth::AuthUser;
use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::{etag_of, Cacheable, Response};
use crate::http::router::{Handler, RateGroup};
use crate::ratelimit::client_key;

/// Cache groups (RFC 9875) named by the origin (origin-api.md §7.2).
pub mod groups {
    pub const ALL: &str = "all";
    pub const MODELS: &str = "models";
    pub const SYSTEM_KEYS: &str = "system-keys";

    pub fn user(uid: i64) -> String {
        format!("user:{uid}")
    }
    pub fn user_conversations(uid: i64) -> String {
        format!("user:{uid}:conversations")
    }
    pub fn user_comparisons(uid: i64) -> String {
        format!("user:{uid}:comparisons")
    }
    pub fn conversation(id: &uuid::Uuid) -> String {
        format!("conversation:{id}")
    }
}

/// The caching headers of a page of one of `user`'s lists (`label`: `conversations`,
/// `comparisons`; `list_group`: the list's cache group). The ETag derives from the user's
/// `cache_version`, which every write to their lists bumps, and the `normalised` query.
fn user_list_cache(
    ctx: &RequestCtx,
    user: &AuthUser,
    label: &str,
    list_group: String,
    normalised: &str,
) -> Cacheable {
    Cacheable::per_user(
        user.cdn_max_age(&ctx.state.config),
        vec![groups::ALL.into(), groups::user(user.id), list_group],
        etag_of(&[
            label.as_bytes(),
            &user.id.to_be_bytes(),
            &user.cache_version.to_be_bytes(),
            normalised.as_bytes(),
        ]),
    )
}

fn rate_limit(ctx: &RequestCtx) -> Result<(), AppError> {
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
pub(crate) fn limit_login_username(ctx: &RequestCtx, username: &str) -> Result<(), AppError> {
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

/// Runs the matched route's handler.
pub async fn dispatch(ctx: &RequestCtx) -> Result<Response, AppError> {
    rate_limit(ctx)?;
    match ctx.route.handler {
        Handler::Health => health::health(ctx).await,
        Handler::Register => auth::register(ctx).await,
        Handler::Login => auth::login(ctx).await,
        Handler::Logout => auth::logout(ctx).await,
        Handler::Refresh => auth::refresh(ctx).await,
        Handler::Me => auth::me(ctx).await,
        Handler::KeysList => keys::list(ctx).await,
        Handler::KeysSave => keys::save(ctx).await,
        Handler::SystemKeys => keys::system_keys(ctx).await,
        Handler::Models => models::list(ctx).await,
        Handler::ConversationsList => conversations::list(ctx).await,
        Handler::ConversationCreate => conversations::create(ctx).await,
        Handler::ConversationGet => conversations::get(ctx).await,
        Handler::ConversationRename => conversations::rename(ctx).await,
        Handler::ConversationDelete => conversations::delete(ctx).await,
        Handler::ConversationExport => conversations::export(ctx).await,
        Handler::MessageCreate => conversations::add_message(ctx).await,
        Handler::ComparisonsList => comparisons::list(ctx).await,
        Handler::ComparisonCreate => comparisons::create(ctx).await,
        Handler::ComparisonVote => comparisons::vote(ctx).await,
        Handler::ComparisonDelete => comparisons::delete(ctx).await,
        Handler::Chat => chat::chat(ctx).await,
        Handler::ChatStream => chat::chat_stream(ctx).await,
        Handler::Compare => compare::compare(ctx).await,
        Handler::CompareStream => compare::compare_stream(ctx).await,
        Handler::CompareAnalyze => compare::analyze(ctx).await,
        Handler::AdminCacheClear => admin::cache_clear(ctx).await,
        Handler::AdminCacheStats => admin::cache_stats(ctx).await,
        Handler::AdminHealthDetailed => admin::health_detailed(ctx).await,
    }
}
