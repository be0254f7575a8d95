//! The migration runner of origin-api.md §1.4.
//!
//! Hand-written rather than refinery: refinery has no advisory-lock serialisation of concurrent
//! starts and no cleanup of an invalid index left by a failed `CREATE INDEX CONCURRENTLY`, both of
//! which this runner needs.
//!
//! - Migrations are embedded (`include_str!`) and applied in version order.
//! - `schema_migrations(version, checksum, applied_at)` records what ran, with the SHA-256 of the file.
//! - Concurrent runners are serialised by polling `pg_try_advisory_lock` (never blocking in
//!   `pg_advisory_lock`, whose snapshot would deadlock a concurrent index build).
//! - A normal migration and its bookkeeping row commit in one transaction.
//! - A file whose first line is `-- migrate: no-transaction` holds exactly one statement (for
//!   `CREATE INDEX CONCURRENTLY`); an invalid index of the same name left by an earlier failed run is
//!   dropped first, and the bookkeeping row is written only after the statement succeeded.
//! - Any applied migration whose checksum differs from the embedded file stops the runner before it
//!   applies anything; the first failing migration stops it too.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One embedded migration.
#[derive(Debug, Clone)]
pub struct Migration {
    /// `NNNN_name`, the file name without `.sql`.
    pub version: String,
    pub sql: String,
}

impl Migration {
    pub fn new(version: &str, sql: &str) -> Migration {
        Migration {
            version: version.to_string(),
            sql: sql.to_string(),
        }
    }

    /// Hex SHA-256 of the file's text.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    fn no_transaction(&self) -> bool {
        self.sql
            .lines()
            .next()
            .is_some_and(|l| l.trim() == "-- migrate: no-transaction")
    }

    /// The index a no-transaction `CREATE INDEX CONCURRENTLY [IF NOT EXISTS] name` creates (`None`
    /// for any other statement, such as `DROP INDEX CONCURRENTLY`).
    fn concurrent_index_name(&self) -> Option<String> {
        let words: Vec<String> = self
            .sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .flat_map(|l| l.split_whitespace())
            .map(|w| w.to_string())
            .collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        // Only a build leaves an invalid index to clean up; a failed `DROP INDEX CONCURRENTLY`
        // is simply rerun (with `IF EXISTS`).
        if upper.first().map(String::as_str) != Some("CREATE") {
            return None;
        }
        let pos = upper.iter().position(|w| w == "CONCURRENTLY")?;
        let mut i = pos + 1;
        if upper
            .get(i..i + 3)
            .is_some_and(|s| s == ["IF", "NOT", "EXISTS"])
        {
            i += 3;
        }
        words.get(i).map(|w| w.trim_matches('"').to_string())
    }
}

/// The migrations compiled into this binary.
pub fn embedded() -> Vec<Migration> {
    vec![
        Migration::new("0001_init", include_str!("../../migrations/0001_init.sql")),
        Migration::new(
            "0002_performance_indexes",
            include_str!("../../migrations/0002_performance_indexes.sql"),
        ),
        Migration::new(
            "0003_revoked_tokens",
            include_str!("../../migrations/0003_revoked_tokens.sql"),
        ),
        Migration::new(
            "0004_cache_invalidations",
            include_str!("../../migrations/0004_cache_invalidations.sql"),
        ),
        Migration::new(
            "0005_accounts",
            include_str!("../../migrations/0005_accounts.sql"),
        ),
        Migration::new(
            "0006_message_search_trgm",
            include_str!("../../migrations/0006_message_search_trgm.sql"),
        ),
        Migration::new(
            "0007_drop_idx_conversation_user_created",
            include_str!("../../migrations/0007_drop_idx_conversation_user_created.sql"),
        ),
        Migration::new(
            "0008_drop_idx_conversations_user_provider",
            include_str!("../../migrations/0008_drop_idx_conversations_user_provider.sql"),
        ),
        Migration::new(
            "0009_users_conversation_count",
            include_str!("../../migrations/0009_users_conversation_count.sql"),
        ),
    ]
}

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {version} was changed after it was applied (checksum {applied} in the database, {embedded} embedded); refusing to start")]
    ChecksumMismatch {
        version: String,
        applied: String,
        embedded: String,
    },
    #[error("migration {version} failed: {source}")]
    Failed {
        version: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("timed out after {0:?} waiting for the migration lock")]
    LockTimeout(Duration),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Arbitrary constant key of the migration advisory lock.
const LOCK_KEY: i64 = 0x6c6c_6d73_656c_6563; // "llmselec"

/// Applies `migrations` that have not run yet; returns the versions applied now.
pub async fn run(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<Vec<String>, MigrateError> {
    acquire_lock(client, Duration::from_secs(120)).await?;
    let result = run_locked(client, migrations).await;
    if let Err(e) = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
    {
        tracing::warn!(error = %e, "could not release the migration lock");
    }
    result
}

async fn acquire_lock(client: &Client, max_wait: Duration) -> Result<(), MigrateError> {
    let start = Instant::now();
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        if start.elapsed() > max_wait {
            return Err(MigrateError::LockTimeout(max_wait));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_locked(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<Vec<String>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
               version    TEXT PRIMARY KEY,
               checksum   TEXT NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    let applied: Vec<(String, String)> = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by(|a, b| a.version.cmp(&b.version));
    for m in &sorted {
        if let Some((_, sum)) = applied.iter().find(|(v, _)| *v == m.version) {
            let embedded = m.checksum();
            if *sum != embedded {
                return Err(MigrateError::ChecksumMismatch {
                    version: m.version.clone(),
                    applied: sum.clone(),
                    embedded,
                });
            }
        }
    }
    let mut done = Vec::new();
    for m in sorted {
        if applied.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        let failed = |source| MigrateError::Failed {
            version: m.version.clone(),
            source,
        };
        if m.no_transaction() {
            if let Some(index) = m.concurrent_index_name() {
                drop_invalid_index(client, &index).await.map_err(failed)?;
            }
            client.batch_execute(&m.sql).await.map_err(failed)?;
            client
                .execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    &[&m.version, &m.checksum()],
                )
                .await
                .map_err(failed)?;
        } else {
            let tx = client.transaction().await?;
            tx.batch_execute(&m.sql).await.map_err(failed)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                &[&m.version, &m.checksum()],
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
        }
        tracing::info!(event = "migration_applied", version = %m.version, "applied migration");
        done.push(m.version.clone());
    }
    Ok(done)
}

async fn drop_invalid_index(client: &Client, index: &str) -> Result<(), tokio_postgres::Error> {
    let invalid = client
        .query_opt(
            "SELECT NOT i.indisvalid FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = $1 AND n.nspname = current_schema()",
            &[&index],
        )
        .await?
        .is_some_and(|r| r.get::<_, bool>(0));
    if invalid {
        tracing::warn!(
            index,
            "dropping invalid index left by a failed concurrent build"
        );
        let quoted = format!("\"{}\"", index.replace('"', "\"\""));
        client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {quoted}"))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_versions_are_sorted_and_unique() {
        let m = embedded();
        let mut versions: Vec<_> = m.iter().map(|m| m.version.clone()).collect();
        versions.dedup();
        assert_eq!(versions.len(), m.len());
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn no_transaction_marker_and_index_name() {
        let m = Migration::new(
            "0003_x",
            "-- migrate: no-transaction\n-- comment CONCURRENTLY\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON t (a);\n",
        );
        assert!(m.no_transaction());
        assert_eq!(m.concurrent_index_name().as_deref(), Some("idx_a"));
        assert!(!embedded()[0].no_transaction());
        let drop = Migration::new(
            "0007_x",
            "-- migrate: no-transaction\n-- why\nDROP INDEX CONCURRENTLY IF EXISTS idx_a;\n",
        );
        assert!(drop.no_transaction());
        assert_eq!(drop.concurrent_index_name(), None);
    }
}
