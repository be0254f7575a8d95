//! The throwaway benchmark database: created next to the admin URL's database, dropped at the
//! end; and the indexes of the performance-index migration (0002) that the migrated database still
//! has dropped and recreated for the before/after run.

use tokio_postgres::{Client, NoTls};

/// The origin's performance-index migration, the source of truth for what "with indexes" means.
const INDEX_MIGRATION: &str = include_str!("../../origin/migrations/0002_performance_indexes.sql");

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A database created for this run.
pub struct BenchDb {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl BenchDb {
    /// Creates `bench_<random>` on the server of `admin_url`.
    pub async fn create(admin_url: &str) -> anyhow::Result<BenchDb> {
        let name = format!("bench_{:016x}", rand::random::<u64>());
        let admin = connect(admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(BenchDb {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name)?,
            name,
        })
    }

    /// Drops the database (connections of stopped servers are gone by then).
    pub async fn drop_db(self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        connect(&self.url).await
    }
}

/// `url` with its path replaced by `/name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// The `CREATE INDEX` statements of migration 0002 with their index names.
pub fn performance_indexes() -> Vec<(String, String)> {
    let sql: String = INDEX_MIGRATION
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    sql.split(';')
        .map(str::trim)
        .filter(|s| s.to_ascii_uppercase().starts_with("CREATE INDEX"))
        .filter_map(|s| {
            let words: Vec<&str> = s.split_whitespace().collect();
            let on = words.iter().position(|w| w.eq_ignore_ascii_case("ON"))?;
            Some((words.get(on.checked_sub(1)?)?.to_string(), s.to_string()))
        })
        .collect()
}

/// Drops the 0002 indexes that exist (a later migration may have dropped some) and re-analyses;
/// returns the definitions of those it dropped, for [`create_indexes`].
pub async fn drop_indexes(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut dropped = Vec::new();
    for (name, _) in performance_indexes() {
        let def = client
            .query_opt(
                "SELECT indexdef FROM pg_indexes
                  WHERE schemaname = current_schema() AND indexname = $1",
                &[&name],
            )
            .await?;
        if let Some(def) = def {
            client
                .batch_execute(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
            dropped.push(def.get(0));
        }
    }
    client.batch_execute("ANALYZE").await?;
    Ok(dropped)
}

/// Recreates the indexes [`drop_indexes`] dropped and re-analyses.
pub async fn create_indexes(client: &Client, definitions: &[String]) -> anyhow::Result<usize> {
    for sql in definitions {
        client.batch_execute(sql).await?;
    }
    client.batch_execute("ANALYZE").await?;
    Ok(definitions.len())
}

/// Row counts of the seeded tables.
pub async fn counts(client: &Client) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for table in ["users", "conversations", "messages", "comparison_results"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        out.push((table.to_string(), n));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_index_migration() {
        let idx = performance_indexes();
        assert!(idx.len() >= 3, "{idx:?}");
        assert!(idx.iter().all(|(n, s)| s.contains(n.as_str())));
    }

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "b").unwrap(),
            "postgres://u@127.0.0.1:5432/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:1", "b").unwrap(),
            "postgres://u@h:1/b"
        );
    }
}
