//! What a node knows about its place in the invalidation stream, shared lock-free between the
//! consumer task, the request path (is this node fit to serve group-tagged entries without asking
//! the origin? has it applied the client's last write?) and the admin API.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The node's bus state. All times are milliseconds since `epoch` (0 = never).
#[derive(Debug)]
pub struct BusState {
    epoch: Instant,
    max_lag: Duration,
    connected: AtomicBool,
    /// Stream sequence of the last message applied (purge done).
    applied_seq: AtomicU64,
    /// The stream's last sequence, as last seen.
    stream_last_seq: AtomicU64,
    /// Highest origin outbox id applied (ids are commit-ordered, see `bus::message`).
    applied_outbox_id: AtomicU64,
    last_contact_ms: AtomicU64,
    /// Since when the node has been behind the stream's last sequence (0 = caught up).
    behind_since_ms: AtomicU64,
    /// Unix ms when the last message was applied.
    last_message_unix_ms: AtomicU64,
    pub messages_applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub gaps: AtomicU64,
    pub reconnects: AtomicU64,
    pub unparsable: AtomicU64,
    pub published: AtomicU64,
}

/// `/stats` view of the bus.
#[derive(Debug, Clone, Serialize)]
pub struct BusSnapshot {
    pub state: &'static str,
    pub applied_seq: u64,
    pub stream_last_seq: u64,
    pub lag: u64,
    pub applied_outbox_id: u64,
    pub last_contact_ms_ago: Option<u64>,
    pub last_message_age_ms: Option<u64>,
    pub messages_applied: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub reconnects: u64,
    pub unparsable: u64,
    pub published: u64,
}

impl BusState {
    pub fn new(max_lag: Duration) -> BusState {
        BusState {
            epoch: Instant::now(),
            max_lag,
            connected: AtomicBool::new(false),
            applied_seq: AtomicU64::new(0),
            stream_last_seq: AtomicU64::new(0),
            applied_outbox_id: AtomicU64::new(0),
            last_contact_ms: AtomicU64::new(0),
            behind_since_ms: AtomicU64::new(0),
            last_message_unix_ms: AtomicU64::new(0),
            messages_applied: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            unparsable: AtomicU64::new(0),
            published: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    pub fn applied_outbox_id(&self) -> u64 {
        self.applied_outbox_id.load(Ordering::Acquire)
    }

    /// Whether this node has applied the invalidation with outbox id `id` (and so every earlier
    /// one: ids are commit-ordered and applied in stream order).
    pub fn has_applied(&self, id: u64) -> bool {
        self.applied_outbox_id() >= id
    }

    pub fn set_connected(&self, on: bool) {
        self.connected.store(on, Ordering::Release);
    }

    /// The stream answered; `last_seq` is its last sequence now.
    pub fn contact(&self, last_seq: u64) {
        let now = self.now_ms();
        self.last_contact_ms.store(now, Ordering::Release);
        self.stream_last_seq.fetch_max(last_seq, Ordering::AcqRel);
        self.update_behind(now);
    }

    fn update_behind(&self, now: u64) {
        if self.applied_seq() >= self.stream_last_seq.load(Ordering::Acquire) {
            self.behind_since_ms.store(0, Ordering::Release);
        } else {
            let _ =
                self.behind_since_ms
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Starts (or restarts) at `seq` without applying anything before it: the position after a
    /// full soft purge, or the end of the stream for a node that starts empty. `outbox_id` is the
    /// outbox id of the message at `seq`, when it has one.
    pub fn reset_to(&self, seq: u64, outbox_id: Option<u64>) {
        self.applied_seq.store(seq, Ordering::Release);
        self.stream_last_seq.store(seq, Ordering::Release);
        if let Some(id) = outbox_id {
            self.applied_outbox_id.fetch_max(id, Ordering::AcqRel);
        }
        self.update_behind(self.now_ms());
    }

    /// A message was applied (its purge is done).
    pub fn applied(&self, seq: u64, outbox_id: Option<u64>) {
        self.applied_seq.store(seq, Ordering::Release);
        self.stream_last_seq.fetch_max(seq, Ordering::AcqRel);
        if let Some(id) = outbox_id {
            self.applied_outbox_id.fetch_max(id, Ordering::AcqRel);
        }
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_message_unix_ms.store(unix, Ordering::Release);
        self.messages_applied.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        self.last_contact_ms.store(now, Ordering::Release);
        self.update_behind(now);
    }

    /// Whether the node may be missing invalidations: no contact with the bus for `max_lag`, or
    /// behind the stream for that long. Group-tagged entries are then revalidated before use.
    pub fn degraded(&self) -> bool {
        let now = self.now_ms();
        let lag = self.max_lag.as_millis() as u64;
        let contact = self.last_contact_ms.load(Ordering::Acquire);
        if contact == 0 || now.saturating_sub(contact) > lag {
            return true;
        }
        let behind = self.behind_since_ms.load(Ordering::Acquire);
        behind != 0 && now.saturating_sub(behind) > lag
    }

    pub fn snapshot(&self) -> BusSnapshot {
        let now = self.now_ms();
        let applied = self.applied_seq();
        let last = self.stream_last_seq.load(Ordering::Acquire).max(applied);
        let contact = self.last_contact_ms.load(Ordering::Acquire);
        let message = self.last_message_unix_ms.load(Ordering::Acquire);
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let state = if !self.connected.load(Ordering::Acquire) {
            "disconnected"
        } else if self.degraded() {
            "lagging"
        } else {
            "connected"
        };
        BusSnapshot {
            state,
            applied_seq: applied,
            stream_last_seq: last,
            lag: last - applied,
            applied_outbox_id: self.applied_outbox_id(),
            last_contact_ms_ago: (contact != 0).then(|| now.saturating_sub(contact)),
            last_message_age_ms: (message != 0).then(|| unix_now.saturating_sub(message)),
            messages_applied: self.messages_applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            unparsable: self.unparsable.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_until_contact_and_while_behind() {
        let s = BusState::new(Duration::from_millis(50));
        assert!(s.degraded(), "no contact yet");
        s.reset_to(10, Some(7));
        s.contact(10);
        assert!(!s.degraded());
        assert!(s.has_applied(7) && !s.has_applied(8));
        s.contact(12);
        assert!(!s.degraded(), "behind, but not for long");
        std::thread::sleep(Duration::from_millis(80));
        s.contact(12);
        assert!(s.degraded(), "behind for longer than max_lag");
        s.applied(11, Some(8));
        s.applied(12, None);
        assert!(!s.degraded());
        assert!(s.has_applied(8));
        let snap = s.snapshot();
        assert_eq!(
            (snap.applied_seq, snap.lag, snap.messages_applied),
            (12, 0, 2)
        );
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.degraded(), "no contact for longer than max_lag");
    }
}
