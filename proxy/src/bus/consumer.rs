//! The node's consumer of the invalidation stream: connect, check the node's position against
//! the stream (gaps, a recreated stream), then apply messages in stream order with an ordered
//! consumer, advancing `applied_seq` only after each purge is done. Reconnects with backoff.

use super::message::{self, outbox_id};
use super::state::BusState;
use super::Link;
use crate::cache::{Invalidator, Scope, Source};
use crate::config::BusConfig;
use crate::metrics;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use llmselect_bus::{connect, ensure_stream, BoxError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Runs until `shutdown` turns true.
pub async fn run(
    cfg: BusConfig,
    state: Arc<BusState>,
    link: Arc<Link>,
    invalidator: Invalidator,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut node = Node {
        cfg,
        state,
        link,
        invalidator,
        started: false,
        stream_created: None,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = node.session(&mut shutdown).await;
        node.state.set_connected(false);
        *node.link.js.lock() = None;
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(target: "bus", error = %e, "invalidation bus session ended; reconnecting");
                node.state
                    .reconnects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics::record_bus_reconnect();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

struct Node {
    cfg: BusConfig,
    state: Arc<BusState>,
    link: Arc<Link>,
    invalidator: Invalidator,
    /// The node took its first position (until then it starts from the end of the stream).
    started: bool,
    /// Creation time of the stream the position refers to (a recreated stream restarts it).
    stream_created: Option<i128>,
}

impl Node {
    async fn session(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), BoxError> {
        let client = connect(&self.cfg, "llmselect-proxy").await?;
        let js = jetstream::new(client);
        let mut stream = ensure_stream(&js, &self.cfg).await?;
        let info = stream.info().await?.clone();
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let created = info.created.unix_timestamp_nanos();
        let applied = self.state.applied_seq();
        if !self.started {
            // Starting empty: nothing before the end of the stream can concern this cache.
            let last_id = if last > 0 {
                stream
                    .get_last_raw_message_by_subject(&self.cfg.subject)
                    .await
                    .ok()
                    .and_then(|m| outbox_id(m.headers.get("Nats-Msg-Id").map(|v| v.as_str())))
            } else {
                None
            };
            self.state.reset_to(last, last_id);
            self.started = true;
        } else if self.stream_created != Some(created) || applied > last {
            tracing::warn!(target: "bus", applied, last, "the stream is not the one this node followed; purging everything softly");
            self.full_soft_purge();
            self.state.reset_to(last, None);
        } else if last > applied && first > applied + 1 {
            tracing::warn!(target: "bus", applied, first, "invalidations were dropped by the stream while this node was away; purging everything softly");
            self.full_soft_purge();
            self.state.reset_to(first - 1, None);
        }
        self.stream_created = Some(created);
        self.state.contact(last);
        self.state.set_connected(true);
        *self.link.js.lock() = Some(js.clone());

        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: self.cfg.subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.state.applied_seq() + 1,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut ticker = tokio::time::interval(Duration::from_millis(self.cfg.poll_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_silence = Duration::from_millis(self.cfg.max_lag_ms) * 4;
        // A consumer that delivers nothing while the stream is ahead (its server restarted and
        // lost the ephemeral consumer, for instance) is replaced well before `max_lag`.
        let stall = Duration::from_millis(self.cfg.max_lag_ms / 2)
            .max(Duration::from_millis(self.cfg.poll_interval_ms * 2));
        let mut last_ok = tokio::time::Instant::now();
        let mut last_progress = tokio::time::Instant::now();
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        self.apply(&m);
                        last_progress = tokio::time::Instant::now();
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err("the consumer ended".into()),
                },
                _ = ticker.tick() => {
                    match stream.get_info().await {
                        Ok(info) => {
                            last_ok = tokio::time::Instant::now();
                            self.state.contact(info.state.last_sequence);
                            let applied = self.state.applied_seq();
                            if info.state.last_sequence <= applied {
                                last_progress = last_ok;
                            } else if info.state.first_sequence > applied + 1 {
                                // the stream dropped messages before the consumer got them
                                return Err("messages were dropped before they were applied".into());
                            } else if last_progress.elapsed() > stall {
                                return Err("the consumer stalled behind the stream".into());
                            }
                        }
                        Err(e) if last_ok.elapsed() > max_silence => return Err(e.into()),
                        Err(_) => {}
                    }
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Applies one message; its sequence becomes `applied_seq` once the purge is done.
    fn apply(&self, msg: &Message) {
        let Ok(info) = msg.info() else {
            self.state
                .unparsable
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let seq = info.stream_sequence;
        let applied = self.state.applied_seq();
        if seq <= applied {
            // a replay after a reconnect: already applied
            self.state
                .duplicates
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        if seq > applied + 1 {
            tracing::warn!(target: "bus", applied, seq, "gap in the invalidation stream; purging everything softly");
            self.full_soft_purge();
        }
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str());
        match message::parse(&msg.payload) {
            // an admin purge of this node's own: applied when it was published
            Ok(_) if id.is_some_and(|id| self.link.is_own(id)) => {}
            Ok((scopes, soft)) => {
                self.invalidator.apply(Source::Bus, &scopes, soft);
            }
            Err(e) => {
                self.state
                    .unparsable
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics::record_bus_unparsable();
                tracing::warn!(target: "bus", seq, error = %e, "ignored an invalidation that does not parse");
            }
        }
        self.state.applied(seq, outbox_id(id));
        let published_ns = info.published.unix_timestamp_nanos();
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let delay = ((now_ns - published_ns).max(0) as f64) / 1e9;
        metrics::record_bus_applied(delay);
    }

    fn full_soft_purge(&self) {
        self.state
            .gaps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::record_bus_gap();
        self.invalidator.apply(Source::Bus, &[Scope::All], true);
    }
}
