//! The PostgreSQL pool (bb8) and the statement layer every query goes through.
//!
//! Each pooled connection ([`PgConn`]) carries its own cache of prepared statements: a statement is
//! prepared the first time a connection runs it and reused for that connection's lifetime. Every
//! statement runs through [`Db`], which times it (query histogram, slow-query WARN) and counts it
//! against the current request ([`QueryObserver`]).

pub mod migrate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bb8_postgres::PostgresConnectionManager;
use parking_lot::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};

use crate::config::Config;
use crate::metrics::{Metrics, PoolStats};

/// The pool type of the origin.
pub type Pool = bb8::Pool<PgManager>;
/// A connection checked out of [`Pool`].
pub type PooledConn<'a> = bb8::PooledConnection<'a, PgManager>;

/// A named SQL statement. The name labels the query-latency histogram and keys the per-connection
/// statement cache, so it must be unique.
#[derive(Debug)]
pub struct Sql {
    pub name: &'static str,
    pub text: &'static str,
}

/// A tokio-postgres client plus the statements prepared on it.
pub struct PgConn {
    pub client: Client,
    stmts: StatementCache,
}

/// Prepared statements of one connection, by [`Sql::name`].
#[derive(Default)]
pub struct StatementCache(Mutex<HashMap<&'static str, Statement>>);

impl PgConn {
    /// A connection made outside the pool (the outbox relay's dedicated connection).
    pub fn new(client: Client) -> PgConn {
        PgConn {
            client,
            stmts: StatementCache::default(),
        }
    }

    /// The statement layer over this connection (outside a transaction).
    pub fn db<'a>(&'a self, obs: &'a QueryObserver) -> Db<'a, Client> {
        Db {
            client: &self.client,
            stmts: &self.stmts,
            obs,
        }
    }

    /// Starts a transaction; run statements through [`Tx::db`] and finish with [`Tx::commit`].
    /// Dropping a `Tx` without committing rolls back.
    pub async fn begin(&mut self) -> Result<Tx<'_>, tokio_postgres::Error> {
        let PgConn { client, stmts } = self;
        let tx = client.transaction().await?;
        Ok(Tx { tx, stmts })
    }
}

/// A transaction on a [`PgConn`] that can still use the connection's prepared statements.
pub struct Tx<'a> {
    tx: Transaction<'a>,
    stmts: &'a StatementCache,
}

impl<'a> Tx<'a> {
    pub fn db<'b>(&'b self, obs: &'b QueryObserver) -> Db<'b, Transaction<'a>> {
        Db {
            client: &self.tx,
            stmts: self.stmts,
            obs,
        }
    }

    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.tx.commit().await
    }
}

/// A bb8 manager wrapping [`PostgresConnectionManager`] whose connections carry a statement cache.
#[derive(Clone)]
pub struct PgManager {
    inner: PostgresConnectionManager<NoTls>,
}

impl PgManager {
    pub fn new(url: &str) -> Result<PgManager, tokio_postgres::Error> {
        Ok(PgManager {
            inner: PostgresConnectionManager::new_from_stringlike(url, NoTls)?,
        })
    }
}

impl bb8::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<PgConn, tokio_postgres::Error> {
        let client = self.inner.connect().await?;
        Ok(PgConn {
            client,
            stmts: StatementCache::default(),
        })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), tokio_postgres::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Logs connection errors that bb8 hits in the background (bb8's default sink drops them).
#[derive(Debug, Clone, Copy)]
struct LogErrorSink;

impl bb8::ErrorSink<tokio_postgres::Error> for LogErrorSink {
    fn sink(&self, error: tokio_postgres::Error) {
        tracing::warn!(event = "db_pool_error", error = %error, "database connection error");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<tokio_postgres::Error>> {
        Box::new(*self)
    }
}

/// Builds the pool without connecting (`build_unchecked`): the server starts even while the
/// database is down, `/health` reports 503 until it is back, and the `min_idle` connections are
/// opened in the background.
pub fn build_pool(config: &Config) -> anyhow::Result<Pool> {
    let d = &config.database;
    let manager = PgManager::new(&d.url)?;
    Ok(bb8::Pool::builder()
        .max_size(d.pool_max_size)
        .min_idle(Some(d.pool_min_idle))
        .connection_timeout(config.pool_timeout())
        .max_lifetime(Some(Duration::from_secs(d.max_lifetime_secs)))
        .idle_timeout(Some(Duration::from_secs(d.idle_timeout_secs)))
        .test_on_check_out(true)
        .error_sink(Box::new(LogErrorSink))
        .build_unchecked(manager))
}

/// The pool's state as plain values, for the pool gauges of `/metrics`.
pub fn pool_stats(pool: &Pool) -> PoolStats {
    let state = pool.state();
    PoolStats {
        connections: state.connections,
        idle: state.idle_connections,
        pending_gets: state.statistics.pending_gets(),
        checkout_timeouts: state.statistics.get_timed_out,
    }
}

/// Counts and times the statements of one request (or one background task).
#[derive(Debug)]
pub struct QueryObserver {
    statements: AtomicU32,
    metrics: Arc<Metrics>,
    slow: Duration,
}

impl QueryObserver {
    pub fn new(metrics: Arc<Metrics>, slow: Duration) -> QueryObserver {
        QueryObserver {
            statements: AtomicU32::new(0),
            metrics,
            slow,
        }
    }

    /// Statements executed so far.
    pub fn statements(&self) -> u32 {
        self.statements.load(Ordering::Relaxed)
    }

    fn record(&self, sql: &Sql, elapsed: Duration) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .db_query_duration
            .with_label_values(&[sql.name])
            .observe(elapsed.as_secs_f64());
        if elapsed >= self.slow {
            self.metrics.db_slow_queries.inc();
            let statement: String = sql
                .text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(200)
                .collect();
            tracing::warn!(
                event = "slow_query",
                name = sql.name,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                statement = %statement,
                "slow query"
            );
        }
    }
}

/// The statement layer: prepared-statement reuse, timing and counting. `C` is a [`Client`] or a
/// [`Transaction`]; repository functions take `&Db<'_, impl GenericClient>`.
pub struct Db<'a, C> {
    client: &'a C,
    stmts: &'a StatementCache,
    obs: &'a QueryObserver,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<C: GenericClient + Sync> Db<'_, C> {
    async fn statement(&self, sql: &Sql) -> Result<Statement, tokio_postgres::Error> {
        if let Some(stmt) = self.stmts.0.lock().get(sql.name) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql.text).await?;
        self.stmts.0.lock().insert(sql.name, stmt.clone());
        Ok(stmt)
    }

    pub async fn query(
        &self,
        sql: &Sql,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let stmt = self.statement(sql).await?;
        let start = Instant::now();
        let result = self.client.query(&stmt, params).await;
        self.obs.record(sql, start.elapsed());
        result
    }

    pub async fn query_opt(
        &self,
        sql: &Sql,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let stmt = self.statement(sql).await?;
        let start = Instant::now();
        let result = self.client.query_opt(&stmt, params).await;
        self.obs.record(sql, start.elapsed());
        result
    }

    pub async fn query_one(
        &self,
        sql: &Sql,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        let stmt = self.statement(sql).await?;
        let start = Instant::now();
        let result = self.client.query_one(&stmt, params).await;
        self.obs.record(sql, start.elapsed());
        result
    }

    pub async fn execute(
        &self,
        sql: &Sql,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = self.statement(sql).await?;
        let start = Instant::now();
        let result = self.client.execute(&stmt, params).await;
        self.obs.record(sql, start.elapsed());
        result
    }
}
