//! The `users` table, and `revoked_tokens` (logout): every statement that loads the authenticated
//! user also says whether the presented token's `jti` was revoked, so the check costs no statement.

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
    /// The token's `jti` is in `revoked_tokens` (it was logged out).
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
}

const BY_ID: Sql = Sql {
    name: "user_by_id",
    text: "SELECT u.id, u.username, u.is_admin, u.cache_version,
       EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = $2) AS revoked
FROM users u WHERE u.id = $1",
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
    text: "SELECT id, username, password_hash FROM users WHERE username = $1",
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
pub(crate) const TOKEN_USER_COLUMNS: usize = 5;

/// The user and the revocation flag in the first [`TOKEN_USER_COLUMNS`] columns of `r`, in the
/// order of [`BY_ID`].
pub(crate) fn token_user(r: &tokio_postgres::Row) -> TokenUser {
    TokenUser {
        user: User {
            id: r.get(0),
            username: r.get(1),
            is_admin: r.get(2),
            cache_version: r.get(3),
        },
        revoked: r.get(4),
    }
}

/// The user `id` and whether the token `jti` that names them was revoked (one statement).
pub async fn by_id(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
    jti: &str,
) -> Result<Option<TokenUser>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&BY_ID, &[&id, &jti])
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
        }))
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
