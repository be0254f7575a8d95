//! Users' provider keys (Fernet tokens at rest).

use tokio_postgres::GenericClient;

use crate::db::{Db, Sql};

/// A stored key, still encrypted.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub provider: String,
    pub key_encrypted: Vec<u8>,
    pub override_system_key: bool,
}

const LIST: Sql = Sql {
    name: "api_keys_list",
    text: "SELECT provider, override_system_key FROM api_keys WHERE user_id = $1 ORDER BY provider",
};

const UPSERT: Sql = Sql {
    name: "api_key_upsert",
    text: "INSERT INTO api_keys (user_id, provider, key_encrypted, override_system_key)
VALUES ($1, $2, $3, $4)
ON CONFLICT ON CONSTRAINT uq_user_provider DO UPDATE
SET key_encrypted = EXCLUDED.key_encrypted,
    override_system_key = EXCLUDED.override_system_key,
    updated_at = now()",
};

const SET_OVERRIDE: Sql = Sql {
    name: "api_key_set_override",
    text: "UPDATE api_keys SET override_system_key = $3, updated_at = now()
WHERE user_id = $1 AND provider = $2",
};

const DELETE: Sql = Sql {
    name: "api_key_delete",
    text: "DELETE FROM api_keys WHERE user_id = $1 AND provider = $2",
};

/// The key-resolution query: every requested provider at once.
const RESOLVE: Sql = Sql {
    name: "api_keys_resolve",
    text: "SELECT provider, key_encrypted, override_system_key FROM api_keys
WHERE user_id = $1 AND provider = ANY($2)",
};

/// `(provider, override_system_key)` for every stored key, by provider.
pub async fn list(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
) -> Result<Vec<(String, bool)>, tokio_postgres::Error> {
    Ok(db
        .query(&LIST, &[&user_id])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

pub async fn upsert(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    provider: &str,
    key_encrypted: &[u8],
    override_system_key: bool,
) -> Result<(), tokio_postgres::Error> {
    db.execute(
        &UPSERT,
        &[&user_id, &provider, &key_encrypted, &override_system_key],
    )
    .await
    .map(|_| ())
}

/// Updates only the override flag of an existing key; false when there is none.
pub async fn set_override(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    provider: &str,
    override_system_key: bool,
) -> Result<bool, tokio_postgres::Error> {
    Ok(db
        .execute(&SET_OVERRIDE, &[&user_id, &provider, &override_system_key])
        .await?
        > 0)
}

/// Deletes the stored key of `provider`; false when there was none.
pub async fn delete(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    provider: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(db.execute(&DELETE, &[&user_id, &provider]).await? > 0)
}

/// The stored keys of `user_id` for `providers` (one statement).
pub async fn resolve(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    providers: &[&str],
) -> Result<Vec<StoredKey>, tokio_postgres::Error> {
    Ok(db
        .query(&RESOLVE, &[&user_id, &providers])
        .await?
        .iter()
        .map(|r| StoredKey {
            provider: r.get(0),
            key_encrypted: r.get(1),
            override_system_key: r.get(2),
        })
        .collect())
}
