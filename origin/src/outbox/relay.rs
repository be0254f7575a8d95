//! The outbox relay: publishes `cache_invalidations` rows to NATS JetStream in id order and deletes
//! them once acknowledged.
//!
//! Every origin instance with a bus runs one; one is active at a time. Each round is one
//! transaction on the relay's own PostgreSQL connection (not the pool):
//!
//! 1. `pg_try_advisory_xact_lock(RELAY_LOCK_KEY)`: only the holder publishes; the others skip
//!    the round. `FOR UPDATE SKIP LOCKED` alone would let a second relay publish row 7 while the
//!    first is still publishing 5 and 6, out of order; the lock keeps the stream in id order.
//! 2. `SELECT … ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED`.
//! 3. Publish each row in order with `Nats-Msg-Id` = id, awaiting its ack before sending the next
//!    (a later row never lands before an earlier one that failed).
//! 4. `DELETE` the published rows, COMMIT.
//!
//! A publish failure rolls the round back: the rows stay for the next round, and a row published
//! twice (ack lost, or the commit failed after publishing) is dropped by JetStream's duplicate
//! window. An instance that stops mid-round releases its lock and row locks with its connection,
//! so another instance takes over on its next wake-up or poll.
//!
//! The relay wakes on the in-process signal of a local commit, on `NOTIFY cache_invalidations`
//! (commits of other instances; `LISTEN` on the same dedicated connection) and on the fallback
//! poll (`bus.relay_poll_ms`). Connection failures (database or bus) back off from 100 ms to 2 s
//! and never reach a request: writers only insert rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::config::{BusConfig, Config};
use crate::db::{PgConn, QueryObserver};
use crate::metrics::Metrics;
use crate::outbox::{Invalidation, Outbox};
use crate::repo::outbox::{self as repo, Row, CHANNEL};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a round stopped.
#[derive(Debug)]
enum RoundError {
    /// The database connection failed: reconnect it.
    Db(tokio_postgres::Error),
    /// Connecting or publishing to the bus failed: reconnect to it.
    Bus(BoxError),
}

impl From<tokio_postgres::Error> for RoundError {
    fn from(e: tokio_postgres::Error) -> Self {
        RoundError::Db(e)
    }
}

/// What a finished round leaves behind.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Nothing (more) to do now, or another instance's relay is active.
    Idle,
    /// A full batch was published: run another round at once.
    More,
}

/// The relay's dedicated PostgreSQL connection, listening on [`CHANNEL`].
struct Listener {
    conn: PgConn,
    /// One item per notification burst; `None` once the connection ended.
    notified: mpsc::Receiver<()>,
}

impl Listener {
    async fn connect(url: &str) -> Result<Listener, tokio_postgres::Error> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
        let (tx, notified) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        // A full channel already holds a wake-up.
                        let _ = tx.try_send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(target: "outbox", error = %e, "relay database connection failed");
                        break;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(Listener {
            conn: PgConn::new(client),
            notified,
        })
    }
}

/// Connects to the bus with the configured credentials, and creates the stream if this origin
/// is the first of the fleet to start.
async fn connect_bus(cfg: &BusConfig) -> Result<jetstream::Context, BoxError> {
    let client = llmselect_bus::connect(cfg, "llmselect-origin").await?;
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_millis(cfg.publish_timeout_ms));
    llmselect_bus::ensure_stream(&js, cfg).await?;
    Ok(js)
}

/// What the relay needs of the application (it runs beside the handlers, not through them).
pub struct RelayDeps {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub outbox: Arc<Outbox>,
}

impl RelayDeps {
    fn query_observer(&self) -> QueryObserver {
        QueryObserver::new(
            self.metrics.clone(),
            Duration::from_millis(self.config.database.slow_query_threshold_ms),
        )
    }
}

/// Runs the relay until `stop` is cancelled (a round in progress is rolled back).
pub async fn run(deps: RelayDeps, stop: CancellationToken) {
    let mut relay = Relay {
        deps,
        listener: None,
        js: None,
    };
    tokio::select! {
        _ = relay.run() => {}
        _ = stop.cancelled() => {}
    }
    tracing::info!(target: "outbox", "outbox relay stopped");
}

struct Relay {
    deps: RelayDeps,
    listener: Option<Listener>,
    js: Option<jetstream::Context>,
}

impl Relay {
    async fn run(&mut self) {
        let cfg = &self.deps.config.bus;
        let mut poll = tokio::time::interval(Duration::from_millis(cfg.relay_poll_ms));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.drain().await {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    self.wait(&mut poll).await;
                }
                Err(e) => {
                    match e {
                        RoundError::Db(e) => {
                            tracing::warn!(target: "outbox", error = %e, "outbox relay: database unavailable; retrying");
                            self.listener = None;
                        }
                        RoundError::Bus(e) => {
                            self.deps.metrics.outbox_publish_errors.inc();
                            tracing::warn!(target: "outbox", error = %e, "outbox relay: publishing failed; the rows stay for the next round");
                            self.js = None;
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Waits for a local commit, a notification from another instance or the poll tick.
    async fn wait(&mut self, poll: &mut tokio::time::Interval) {
        let outbox = self.deps.outbox.clone();
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
        let closed = tokio::select! {
            _ = outbox.woken() => false,
            n = listener.notified.recv() => n.is_none(),
            _ = poll.tick() => false,
        };
        if closed {
            // The connection ended: reconnect (and catch up) at once.
            self.listener = None;
        }
    }

    /// Runs rounds until nothing is left (or another relay is active).
    async fn drain(&mut self) -> Result<(), RoundError> {
        if self.listener.is_none() {
            self.listener = Some(Listener::connect(&self.deps.config.database.url).await?);
        }
        // Connected before the first write needs it: a write's publication costs no handshake.
        if self.js.is_none() {
            self.js = Some(
                connect_bus(&self.deps.config.bus)
                    .await
                    .map_err(RoundError::Bus)?,
            );
        }
        while self.round().await? == Round::More {}
        Ok(())
    }

    async fn round(&mut self) -> Result<Round, RoundError> {
        let deps = &self.deps;
        let cfg = &deps.config.bus;
        let metrics = &deps.metrics;
        let obs = deps.query_observer();
        let Some(listener) = self.listener.as_mut() else {
            return Ok(Round::Idle);
        };
        let tx = listener.conn.begin().await?;
        let db = tx.db(&obs);
        let (active, pending) = repo::claim(&db).await?;
        metrics.outbox_pending.set(pending);
        if !active || pending == 0 {
            tx.commit().await?;
            return Ok(Round::Idle);
        }
        let rows = repo::batch(&db, i64::from(cfg.relay_batch)).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Round::Idle);
        }
        if self.js.is_none() {
            self.js = Some(connect_bus(cfg).await.map_err(RoundError::Bus)?);
        }
        let Some(js) = self.js.as_ref() else {
            return Ok(Round::Idle);
        };
        let read_at = Instant::now();
        for row in &rows {
            publish(js, &cfg.subject, row)
                .await
                .map_err(RoundError::Bus)?;
            metrics.outbox_published.inc();
            metrics
                .outbox_publish_latency
                .observe(row.age_secs + read_at.elapsed().as_secs_f64());
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        repo::delete(&db, &ids).await?;
        tx.commit().await?;
        metrics
            .outbox_pending
            .set((pending - rows.len() as i64).max(0));
        Ok(if rows.len() >= cfg.relay_batch as usize {
            Round::More
        } else {
            Round::Idle
        })
    }
}

/// Publishes one row (`Nats-Msg-Id` = its id) and waits for the stream's acknowledgement.
async fn publish(js: &jetstream::Context, subject: &str, row: &Row) -> Result<(), BoxError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", row.id.to_string());
    let body = Invalidation {
        groups: row.groups.clone(),
        paths: row.paths.clone(),
        ..Invalidation::default()
    };
    js.publish_with_headers(subject.to_string(), headers, body.to_json().into())
        .await?
        .await?;
    Ok(())
}
