//! The invalidation bus of a fleet: NATS JetStream, one stream of invalidations that every node
//! applies in order (see `docs/architecture.md` and the README's "Running a fleet").
//!
//! - [`message`]: what the shared wire format (crate `llmselect-bus`) purges on this node.
//! - [`state`]: the node's position (`applied_seq`, the last applied outbox id), contact and lag.
//! - [`consumer`]: the task that follows the stream.
//!
//! [`Bus`] is what the rest of the proxy sees: whether the node is fit to serve group-tagged
//! entries without asking the origin, whether it has applied a client's last write, and a way to
//! publish an admin purge to the whole fleet.

mod consumer;
pub(crate) mod message;
mod state;

pub(crate) use state::{BusSnapshot, BusState};

use crate::cache::Invalidator;
use crate::config::BusConfig;
use async_nats::jetstream;
use llmselect_bus::Invalidation;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long an admin purge waits for the bus to acknowledge its message.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// The live JetStream context of the current session (none while disconnected).
#[derive(Default)]
pub(crate) struct Link {
    js: Mutex<Option<jetstream::Context>>,
    /// Ids of the admin purges this node published and already applied itself (the most recent
    /// [`OWN_IDS`]): the consumer does not apply them a second time.
    own: Mutex<std::collections::VecDeque<String>>,
}

/// How many of its own published ids a node remembers.
const OWN_IDS: usize = 256;

impl Link {
    fn remember_own(&self, id: &str) {
        let mut own = self.own.lock();
        if own.len() == OWN_IDS {
            own.pop_front();
        }
        own.push_back(id.to_string());
    }

    /// Whether `id` is an admin purge this node published (and applied) itself.
    pub(crate) fn is_own(&self, id: &str) -> bool {
        self.own.lock().iter().any(|o| o == id)
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("the invalidation bus is not connected")]
    Disconnected,
    #[error("the invalidation bus did not acknowledge the message: {0}")]
    Failed(String),
}

/// A node's handle on the bus.
pub(crate) struct Bus {
    pub state: Arc<BusState>,
    link: Arc<Link>,
    subject: String,
    read_your_writes: Duration,
    shutdown: watch::Sender<bool>,
}

impl Bus {
    /// Starts following the stream on `runtime`.
    pub fn start(
        cfg: &BusConfig,
        invalidator: Invalidator,
        runtime: &tokio::runtime::Handle,
    ) -> Bus {
        let state = Arc::new(BusState::new(Duration::from_millis(cfg.max_lag_ms)));
        let link = Arc::new(Link::default());
        let (shutdown, rx) = watch::channel(false);
        runtime.spawn(consumer::run(
            cfg.clone(),
            state.clone(),
            link.clone(),
            invalidator,
            rx,
        ));
        Bus {
            state,
            link,
            subject: cfg.subject.clone(),
            read_your_writes: Duration::from_secs(cfg.read_your_writes_secs),
            shutdown,
        }
    }

    /// Publishes an invalidation to every node; returns its stream sequence.
    pub async fn publish(&self, msg: &Invalidation) -> Result<u64, PublishError> {
        let js = self
            .link
            .js
            .lock()
            .clone()
            .ok_or(PublishError::Disconnected)?;
        let mut headers = async_nats::HeaderMap::new();
        let id = format!("admin-{}", uuid::Uuid::new_v4().simple());
        headers.insert("Nats-Msg-Id", id.as_str());
        // the caller applied it on this node already
        self.link.remember_own(&id);
        let publish = async {
            js.publish_with_headers(self.subject.clone(), headers, msg.to_json().into())
                .await
                .map_err(|e| PublishError::Failed(e.to_string()))?
                .await
                .map_err(|e| PublishError::Failed(e.to_string()))
        };
        let ack = tokio::time::timeout(PUBLISH_TIMEOUT, publish)
            .await
            .map_err(|_| PublishError::Failed("timed out".into()))??;
        self.state
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ack.sequence)
    }

    /// Lifetime of the read-your-writes cookie.
    pub fn read_your_writes(&self) -> Duration {
        self.read_your_writes
    }

    pub fn snapshot(&self) -> BusSnapshot {
        self.state.snapshot()
    }

    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}
