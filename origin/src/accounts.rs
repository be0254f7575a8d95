//! Account administration shared by the admin API (`routes::admin`) and the command line
//! (`cli`, `llmselect-origin user …`): create, disable/enable, delete, reset a password.
//!
//! Every write that changes what a user's cached responses show (disable, delete, password reset:
//! the user's tokens stop working) commits with the outbox row of its invalidation, `user:<id>`
//! (every per-user response carries that group), exactly like the handlers' writes; the API also
//! answers it in `Cache-Group-Invalidation`. Creating a user changes no cached response.
//!
//! Tokens: a disabled user's tokens are refused by the statement that loads the user (no extra
//! statement); a password reset bumps the user's `token_generation`, which refuses every token
//! issued before.

use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

use crate::db::{PgConn, QueryObserver};
use crate::error::AppError;
use crate::outbox::{self, Outbox};
use crate::repo::fmt_ts;
use crate::repo::users::{self, UserSummary};
use crate::routes::caching::groups;

/// Length of a username in characters (registration's rule; stored lower-case).
pub const USERNAME_LENGTH: (usize, usize) = (3, 50);
/// Length of a password in characters (registration's rule).
pub const PASSWORD_LENGTH: (usize, usize) = (8, 128);

/// Where a write's invalidation goes: the outbox (with a bus), the statement observer, and the
/// request target the proxy purges (`None` from the command line).
pub struct Writer<'a> {
    pub outbox: &'a Outbox,
    pub obs: &'a QueryObserver,
    pub target: Option<&'a str>,
}

/// A committed write and its invalidation: the cache groups (for `Cache-Group-Invalidation`) and
/// the outbox id (`None` without a bus).
pub struct Committed<T> {
    pub value: T,
    pub groups: Vec<String>,
    pub invalidation: Option<i64>,
}

/// The JSON of a user in the admin API.
pub fn user_json(u: &UserSummary) -> Value {
    json!({
        "id": u.id, "username": u.username, "is_admin": u.is_admin,
        "disabled": u.disabled, "created_at": fmt_ts(&u.created_at),
    })
}

fn user_not_found() -> AppError {
    AppError::not_found("User not found")
}

/// Checks a username against registration's rule and returns it lower-cased.
pub fn normalise_username(username: &str) -> Result<String, AppError> {
    let n = username.chars().count();
    let (min, max) = USERNAME_LENGTH;
    if n < min || n > max {
        return Err(AppError::invalid_field(
            "username",
            &format!("Length must be between {min} and {max}."),
        ));
    }
    Ok(username.to_lowercase())
}

/// Checks a password against registration's rule.
pub fn check_password(field: &str, password: &str) -> Result<(), AppError> {
    let n = password.chars().count();
    let (min, max) = PASSWORD_LENGTH;
    if n < min || n > max {
        return Err(AppError::invalid_field(
            field,
            &format!("Length must be between {min} and {max}."),
        ));
    }
    Ok(())
}

/// Hashes `password` (scrypt, `2^log_n`) off the async threads.
pub async fn hash_password(password: String, log_n: u8) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || crate::auth::password::hash(&password, log_n))
        .await
        .map_err(|e| AppError::Internal(e.into()))
}

/// Creates a user whatever the registration policy (`username` already normalised, `hash` from
/// [`hash_password`]). A taken username is a 400 with `details.field = "username"`.
pub async fn create(
    conn: &mut PgConn,
    obs: &QueryObserver,
    username: &str,
    hash: &str,
    is_admin: bool,
) -> Result<UserSummary, AppError> {
    match users::create(&conn.db(obs), username, hash, is_admin).await {
        Ok(u) => Ok(u),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(AppError::BadRequest {
            message: "Username already exists".into(),
            details: Some(json!({"field": "username"})),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Commits `tx` with the invalidation of user `id`'s cached responses.
async fn commit_user_write(
    w: &Writer<'_>,
    tx: crate::db::Tx<'_>,
    id: i64,
) -> Result<(Vec<String>, Option<i64>), AppError> {
    let groups = vec![groups::user(id)];
    let inv = outbox::of_mutation(w.target.unwrap_or(""), &groups, None);
    let invalidation = w.outbox.commit(tx, w.obs, &inv).await?;
    Ok((groups, invalidation))
}

/// Disables (`true`) or enables user `id`. A disabled user cannot log in, and every token they
/// hold is refused.
pub async fn set_disabled(
    conn: &mut PgConn,
    w: &Writer<'_>,
    id: i64,
    disabled: bool,
) -> Result<Committed<UserSummary>, AppError> {
    let tx = conn.begin().await?;
    let user = users::set_disabled(&tx.db(w.obs), id, disabled)
        .await?
        .ok_or_else(user_not_found)?;
    let (groups, invalidation) = commit_user_write(w, tx, id).await?;
    Ok(Committed {
        value: user,
        groups,
        invalidation,
    })
}

/// Deletes user `id` with everything they own (conversations, comparisons, keys).
pub async fn delete(conn: &mut PgConn, w: &Writer<'_>, id: i64) -> Result<Committed<()>, AppError> {
    let tx = conn.begin().await?;
    if !users::delete(&tx.db(w.obs), id).await? {
        return Err(user_not_found());
    }
    let (groups, invalidation) = commit_user_write(w, tx, id).await?;
    Ok(Committed {
        value: (),
        groups,
        invalidation,
    })
}

/// Sets user `id`'s password (`hash` from [`hash_password`]) and revokes every token they hold.
pub async fn reset_password(
    conn: &mut PgConn,
    w: &Writer<'_>,
    id: i64,
    hash: &str,
) -> Result<Committed<()>, AppError> {
    let tx = conn.begin().await?;
    if users::set_password(&tx.db(w.obs), id, hash, None)
        .await?
        .is_none()
    {
        return Err(user_not_found());
    }
    let (groups, invalidation) = commit_user_write(w, tx, id).await?;
    Ok(Committed {
        value: (),
        groups,
        invalidation,
    })
}
