//! Handlers, one module per resource, and the dispatcher that applies rate limits and calls them.
//!
//! `compare_run` runs a comparison live against the providers (`POST /compare*`);
//! `comparison_history` is the user's stored comparisons (list, save, vote, delete). `caching`
//! names the cache groups and builds the per-user list headers; `limits` applies the rate limits.
//!
//! A handler is `async fn(&RequestCtx) -> Result<Response, AppError>`. To add one: a row in
//! `http::router::ROUTES`, a `Handler` variant, and an arm in [`dispatch`].

pub mod admin;
pub mod auth;
pub(crate) mod caching;
pub mod chat;
pub mod compare_run;
pub mod comparison_history;
pub mod conversations;
pub mod health;
pub mod keys;
mod limits;
pub mod models;

use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::Response;
use crate::http::router::Handler;

/// Runs the matched route's handler.
pub async fn dispatch(ctx: &RequestCtx) -> Result<Response, AppError> {
    limits::rate_limit(ctx)?;
    match ctx.route.handler {
        Handler::Health => health::health(ctx).await,
        Handler::Register => auth::register(ctx).await,
        Handler::Login => auth::login(ctx).await,
        Handler::Logout => auth::logout(ctx).await,
        Handler::Refresh => auth::refresh(ctx).await,
        Handler::Me => auth::me(ctx).await,
        Handler::ChangePassword => auth::change_password(ctx).await,
        Handler::KeysList => keys::list(ctx).await,
        Handler::KeysSave => keys::save(ctx).await,
        Handler::KeysDelete => keys::delete(ctx).await,
        Handler::SystemKeys => keys::system_keys(ctx).await,
        Handler::Models => models::list(ctx).await,
        Handler::ConversationsList => conversations::list(ctx).await,
        Handler::ConversationCreate => conversations::create(ctx).await,
        Handler::ConversationGet => conversations::get(ctx).await,
        Handler::ConversationRename => conversations::rename(ctx).await,
        Handler::ConversationDelete => conversations::delete(ctx).await,
        Handler::ConversationExport => conversations::export(ctx).await,
        Handler::MessageCreate => conversations::add_message(ctx).await,
        Handler::ComparisonsList => comparison_history::list(ctx).await,
        Handler::ComparisonCreate => comparison_history::create(ctx).await,
        Handler::ComparisonVote => comparison_history::vote(ctx).await,
        Handler::ComparisonDelete => comparison_history::delete(ctx).await,
        Handler::Chat => chat::chat(ctx).await,
        Handler::ChatStream => chat::chat_stream(ctx).await,
        Handler::Compare => compare_run::compare(ctx).await,
        Handler::CompareStream => compare_run::compare_stream(ctx).await,
        Handler::CompareAnalyze => compare_run::analyze(ctx).await,
        Handler::AdminCacheClear => admin::cache_clear(ctx).await,
        Handler::AdminCacheStats => admin::cache_stats(ctx).await,
        Handler::AdminHealthDetailed => admin::health_detailed(ctx).await,
        Handler::AdminUsersList => admin::users_list(ctx).await,
        Handler::AdminUserCreate => admin::user_create(ctx).await,
        Handler::AdminUserUpdate => admin::user_update(ctx).await,
        Handler::AdminUserDelete => admin::user_delete(ctx).await,
        Handler::AdminUserResetPassword => admin::user_reset_password(ctx).await,
    }
}
