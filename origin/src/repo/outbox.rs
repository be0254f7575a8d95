//! The outbox of cache invalidations (`cache_invalidations`, migration 0004): the writer's insert
//! and the relay's statements.

use tokio_postgres::GenericClient;

use crate::db::{Db, Sql};

/// Key of the transaction-scoped advisory lock that serialises outbox ids and commits ("llmsoutb").
pub const WRITER_LOCK_KEY: i64 = 0x6c6c_6d73_6f75_7462;
/// Key of the transaction-scoped advisory lock held by the one active relay ("llmsrela").
pub const RELAY_LOCK_KEY: i64 = 0x6c6c_6d73_7265_6c61;
/// The `LISTEN`/`NOTIFY` channel that wakes the relays of every instance at commit.
pub const CHANNEL: &str = "cache_invalidations";

/// Why the lock: the proxies treat an outbox id as a commit-ordered position ("applied id X" means
/// every invalidation up to X was applied), so a row must never become visible after a row with a
/// larger id. An identity value is taken at insert time, not at commit, so two writers could
/// otherwise commit ids 6 then 5, and a relay could publish 6 while 5 is still invisible. Taking
/// `pg_advisory_xact_lock` right before the insert (which is the last statement before COMMIT)
/// serialises "take the next id .. commit" across all writers: the lock is released only after the
/// commit is visible, so ids become visible in increasing order. The lock is held for one round
/// trip (this statement's reply, then COMMIT).
///
/// The `MATERIALIZED` CTE runs the lock (and queues the `NOTIFY`, delivered at commit) before the
/// insert's projection evaluates `nextval` for the identity column (EXPLAIN: the CTE Scan feeds the
/// Insert, whose output computes `nextval`).
const INSERT: Sql = Sql {
    name: "outbox_insert",
    text: "WITH serialised AS MATERIALIZED (
  SELECT pg_advisory_xact_lock($3), pg_notify('cache_invalidations', ''))
INSERT INTO cache_invalidations (groups, paths) SELECT $1, $2 FROM serialised
RETURNING id",
};

/// The relay's turn: true when this relay is the active one for this transaction, and the number
/// of rows waiting.
const CLAIM: Sql = Sql {
    name: "outbox_relay_claim",
    text: "SELECT pg_try_advisory_xact_lock($1), (SELECT count(*) FROM cache_invalidations)",
};

/// The oldest rows, with their age in seconds (the database's clock on both ends).
const BATCH: Sql = Sql {
    name: "outbox_relay_batch",
    text: "SELECT id, groups, paths,
       extract(epoch FROM clock_timestamp() - created_at)::float8
FROM cache_invalidations ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
};

const DELETE: Sql = Sql {
    name: "outbox_relay_delete",
    text: "DELETE FROM cache_invalidations WHERE id = ANY($1)",
};

/// One outbox row as the relay reads it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub groups: Vec<String>,
    pub paths: Vec<String>,
    /// Seconds since the row's transaction started, when it was read.
    pub age_secs: f64,
}

/// Inserts the outbox row of the current transaction (its last statement before COMMIT); returns
/// its id. See [`INSERT`] for the ordering guarantee.
pub async fn insert(
    db: &Db<'_, impl GenericClient + Sync>,
    groups: &[String],
    paths: &[String],
) -> Result<i64, tokio_postgres::Error> {
    Ok(db
        .query_one(&INSERT, &[&groups, &paths, &WRITER_LOCK_KEY])
        .await?
        .get(0))
}

/// Tries to become the active relay for the current transaction; returns `(active, pending)`.
pub async fn claim(
    db: &Db<'_, impl GenericClient + Sync>,
) -> Result<(bool, i64), tokio_postgres::Error> {
    let r = db.query_one(&CLAIM, &[&RELAY_LOCK_KEY]).await?;
    Ok((r.get(0), r.get(1)))
}

/// Locks and returns the oldest `limit` rows, in id order.
pub async fn batch(
    db: &Db<'_, impl GenericClient + Sync>,
    limit: i64,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    Ok(db
        .query(&BATCH, &[&limit])
        .await?
        .iter()
        .map(|r| Row {
            id: r.get(0),
            groups: r.get(1),
            paths: r.get(2),
            age_secs: r.get(3),
        })
        .collect())
}

/// Deletes published rows.
pub async fn delete(
    db: &Db<'_, impl GenericClient + Sync>,
    ids: &[i64],
) -> Result<u64, tokio_postgres::Error> {
    db.execute(&DELETE, &[&ids]).await
}
