//! The `users` table, and `revoked_tokens` (logout): every statement that loads the authenticated
//! user also says whether the presented token was revoked (its `jti` logged out, or its generation
//! older than the user's: a password change) and whether the account is disabled, so these checks
//! cost no statement.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::db::{Db, Sql};

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub cache_version: i64,
}

/// The user a token names, loaded together with that token's revocation check.
#[derive(Debug, Clone)]
pub struct TokenUser {
    pub user: User,
    /// The token's `jti` is in `revoked_tokens` (it was logged out), or its generation is not the
    /// user's `token_generation` (the password changed since it was issued).
    pub revoked: bool,
    /// An administrator disabled the account.
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
    pub token_generation: i32,
}

/// A user as the account administration shows it.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// The columns of the authenticated user, in the order [`token_user`] reads them, for every
/// statement that loads the user of a token: `$jti` and `$gen` are the placeholders of the
/// token's `jti` and generation.
macro_rules! token_user_columns {
    ($jti:literal, $gen:literal) => {
        concat!(
            "u.id, u.username, u.is_admin, u.cache_version,
       (EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = ",
            $jti,
            ") OR u.token_generation <> ",
            $gen,
            ") AS revoked,
       u.disabled_at IS NOT NULL AS disabled"
        )
    };
}
pub(crate) use token_user_columns;

const BY_ID: Sql = Sql {
    name: "user_by_id",
    text: concat!(
        "SELECT ",
        token_user_columns!("$2", "$3"),
        "
FROM users u WHERE u.id = $1"
    ),
};

/// Revokes the tokens given as parallel arrays (jti, user id, type, exp as Unix seconds); tokens
/// of users that no longer exist are skipped, and a token revoked twice stays one row. Also
/// deletes a bounded batch of rows whose token has expired, so the table holds roughly the tokens
/// still alive.
const REVOKE: Sql = Sql {
    name: "tokens_revoke",
    text: "WITH expired AS (
  DELETE FROM revoked_tokens WHERE jti IN (
    SELECT jti FROM revoked_tokens WHERE expires_at < now() ORDER BY expires_at LIMIT 1000))
INSERT INTO revoked_tokens (jti, user_id, token_type, expires_at)
SELECT t.jti, t.user_id, t.token_type, to_timestamp(t.exp)
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS t(jti, user_id, token_type, exp)
JOIN users u ON u.id = t.user_id
ON CONFLICT (jti) DO NOTHING",
};

const CREDENTIALS: Sql = Sql {
    name: "user_credentials",
    text: "SELECT id, username, password_hash, disabled_at IS NOT NULL, token_generation
FROM users WHERE username = $1",
};

const PASSWORD_HASH: Sql = Sql {
    name: "user_password_hash",
    text: "SELECT password_hash FROM users WHERE id = $1",
};

/// Sets a new password hash and bumps the generation (every token issued before is refused);
/// `$3`, when not NULL, is the hash the caller verified the old password against (a concurrent
/// change makes this update nothing). Returns the new generation.
const SET_PASSWORD: Sql = Sql {
    name: "user_set_password",
    text: "UPDATE users SET password_hash = $2, token_generation = token_generation + 1,
       updated_at = now()
WHERE id = $1 AND ($3::text IS NULL OR password_hash = $3)
RETURNING token_generation",
};

const LIST: Sql = Sql {
    name: "users_list",
    text:
        "SELECT id, username, is_admin, disabled_at IS NOT NULL, created_at FROM users ORDER BY id",
};

const BY_USERNAME: Sql = Sql {
    name: "user_by_username",
    text: "SELECT id, username, is_admin, disabled_at IS NOT NULL, created_at
FROM users WHERE username = $1",
};

const CREATE: Sql = Sql {
    name: "user_create",
    text: "INSERT INTO users (username, password_hash, is_admin) VALUES ($1, $2, $3)
RETURNING id, username, is_admin, disabled_at IS NOT NULL, created_at",
};

/// Disables (keeping the first disable time) or enables the account.
const SET_DISABLED: Sql = Sql {
    name: "user_set_disabled",
    text: "UPDATE users
SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, now()) END, updated_at = now()
WHERE id = $1
RETURNING id, username, is_admin, disabled_at IS NOT NULL, created_at",
};

/// Deletes the user; their conversations, messages, comparisons, keys and revocations go with
/// them (foreign keys `ON DELETE CASCADE`).
const DELETE: Sql = Sql {
    name: "user_delete",
    text: "DELETE FROM users WHERE id = $1 RETURNING id",
};

const ANY_USER: Sql = Sql {
    name: "users_exist",
    text: "SELECT EXISTS (SELECT 1 FROM users)",
};

/// Serialises registrations so that "is this the first user" and the insert cannot interleave.
const REGISTER_LOCK: Sql = Sql {
    name: "register_lock",
    text: "SELECT pg_advisory_xact_lock(7261636587)",
};

const INSERT: Sql = Sql {
    name: "user_insert",
    text: "INSERT INTO users (username, password_hash, is_admin)
           VALUES ($1, $2, NOT EXISTS (SELECT 1 FROM users))
           RETURNING id, is_admin",
};

/// Columns of [`token_user`]: statements that load the user together with something else put
/// these first, the other row's columns from this index on.
pub(crate) const TOKEN_USER_COLUMNS: usize = 6;

/// The user and the revocation and disabled flags in the first [`TOKEN_USER_COLUMNS`] columns
/// of `r`, in the order of [`token_user_columns!`].
pub(crate) fn token_user(r: &tokio_postgres::Row) -> TokenUser {
    TokenUser {
        user: User {
            id: r.get(0),
            username: r.get(1),
            is_admin: r.get(2),
            cache_version: r.get(3),
        },
        revoked: r.get(4),
        disabled: r.get(5),
    }
}

/// The user `id` and whether the token (`jti`, `generation`) that names them was revoked (one
/// statement).
pub async fn by_id(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
    jti: &str,
    generation: i32,
) -> Result<Option<TokenUser>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&BY_ID, &[&id, &jti, &generation])
        .await?
        .as_ref()
        .map(token_user))
}

/// A token to revoke until `exp` (Unix seconds).
#[derive(Debug, Clone)]
pub struct Revocation {
    pub jti: String,
    pub user_id: i64,
    /// `access` or `refresh`.
    pub token_type: String,
    pub exp: i64,
}

/// Revokes `tokens` (one statement, which also drops a batch of expired revocations).
pub async fn revoke(
    db: &Db<'_, impl GenericClient + Sync>,
    tokens: &[Revocation],
) -> Result<u64, tokio_postgres::Error> {
    let jtis: Vec<&str> = tokens.iter().map(|t| t.jti.as_str()).collect();
    let users: Vec<i64> = tokens.iter().map(|t| t.user_id).collect();
    let types: Vec<&str> = tokens.iter().map(|t| t.token_type.as_str()).collect();
    let exps: Vec<i64> = tokens.iter().map(|t| t.exp).collect();
    db.execute(&REVOKE, &[&jtis, &users, &types, &exps]).await
}

pub async fn credentials(
    db: &Db<'_, impl GenericClient + Sync>,
    username: &str,
) -> Result<Option<Credentials>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&CREDENTIALS, &[&username])
        .await?
        .map(|r| Credentials {
            id: r.get(0),
            username: r.get(1),
            password_hash: r.get(2),
            disabled: r.get(3),
            token_generation: r.get(4),
        }))
}

fn summary(r: &tokio_postgres::Row) -> UserSummary {
    UserSummary {
        id: r.get(0),
        username: r.get(1),
        is_admin: r.get(2),
        disabled: r.get(3),
        created_at: r.get(4),
    }
}

/// The stored password hash of user `id`.
pub async fn password_hash(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&PASSWORD_HASH, &[&id])
        .await?
        .map(|r| r.get(0)))
}

/// Sets user `id`'s password hash and revokes every token issued before (generation bump).
/// With `expected_hash`, only if the stored hash is still that one. Returns the new generation,
/// `None` when no row changed.
pub async fn set_password(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
    password_hash: &str,
    expected_hash: Option<&str>,
) -> Result<Option<i32>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&SET_PASSWORD, &[&id, &password_hash, &expected_hash])
        .await?
        .map(|r| r.get(0)))
}

/// Every user, by id.
pub async fn list(
    db: &Db<'_, impl GenericClient + Sync>,
) -> Result<Vec<UserSummary>, tokio_postgres::Error> {
    Ok(db.query(&LIST, &[]).await?.iter().map(summary).collect())
}

/// The user named `username` (stored lower-case).
pub async fn by_username(
    db: &Db<'_, impl GenericClient + Sync>,
    username: &str,
) -> Result<Option<UserSummary>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&BY_USERNAME, &[&username])
        .await?
        .as_ref()
        .map(summary))
}

/// Creates a user as an administrator does (whatever the registration policy). A duplicate
/// username is a unique violation (SQLSTATE 23505).
pub async fn create(
    db: &Db<'_, impl GenericClient + Sync>,
    username: &str,
    password_hash: &str,
    is_admin: bool,
) -> Result<UserSummary, tokio_postgres::Error> {
    let r = db
        .query_one(&CREATE, &[&username, &password_hash, &is_admin])
        .await?;
    Ok(summary(&r))
}

/// Disables or enables user `id`; `None` when there is no such user.
pub async fn set_disabled(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
    disabled: bool,
) -> Result<Option<UserSummary>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&SET_DISABLED, &[&id, &disabled])
        .await?
        .as_ref()
        .map(summary))
}

/// Deletes user `id` and everything they own; false when there is no such user.
pub async fn delete(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
) -> Result<bool, tokio_postgres::Error> {
    Ok(db.query_opt(&DELETE, &[&id]).await?.is_some())
}

pub async fn any_exist(
    db: &Db<'_, impl GenericClient + Sync>,
) -> Result<bool, tokio_postgres::Error> {
    Ok(db.query_one(&ANY_USER, &[]).await?.get(0))
}

/// Takes the registration lock (transaction-scoped).
pub async fn lock_registrations(
    db: &Db<'_, impl GenericClient + Sync>,
) -> Result<(), tokio_postgres::Error> {
    db.query(&REGISTER_LOCK, &[]).await.map(|_| ())
}

/// Inserts a user; the first user becomes admin. Returns `(id, is_admin)`. A duplicate username is
/// a unique violation (SQLSTATE 23505).
pub async fn insert(
    db: &Db<'_, impl GenericClient + Sync>,
    username: &str,
    password_hash: &str,
) -> Result<(i64, bool), tokio_postgres::Error> {
    let r = db.query_one(&INSERT, &[&username, &password_hash]).await?;
    Ok((r.get(0), r.get(1)))
}
