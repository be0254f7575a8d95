//! Cache groups (RFC 9875) named by the origin, and the caching headers of per-user lists.

use crate::auth::AuthUser;
use crate::db::Tx;
use crate::http::request::RequestCtx;
use crate::http::response::{etag_of, Cacheable};
use crate::outbox;

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
pub(super) fn user_list_cache(
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

/// Commits the request's write in `tx` together with its invalidation: `groups` (exactly the
/// response's `Cache-Group-Invalidation`), the request target and the response's `Location`
/// path, recorded in the outbox as the transaction's last statement when a bus is configured.
/// Returns the outbox id for `LLMSelect-Invalidation-Id` (`None` without a bus).
pub(super) async fn commit_invalidating(
    ctx: &RequestCtx,
    tx: Tx<'_>,
    groups: &[String],
    location: Option<&str>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let inv = outbox::of_mutation(&ctx.target, groups, location);
    ctx.state.outbox.commit(tx, &ctx.obs, &inv).await
}
