//! The `users` table.

use tokio_postgres::GenericClient;

use crate::db::{Db, Sql};

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    pub cache_version: i64,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
}

const BY_ID: Sql = Sql {
    name: "user_by_id",
    text: "SELECT id, username, is_admin, cache_version FROM users WHERE id = $1",
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

/// The user in the first four columns of `r`, in the order of [`BY_ID`] (statements that load the
/// user together with something else put those columns first).
pub(crate) fn user(r: &tokio_postgres::Row) -> User {
    User {
        id: r.get(0),
        username: r.get(1),
        is_admin: r.get(2),
        cache_version: r.get(3),
    }
}

pub async fn by_id(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
) -> Result<Option<User>, tokio_postgres::Error> {
    Ok(db.query_opt(&BY_ID, &[&id]).await?.as_ref().map(user))
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
