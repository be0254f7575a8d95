//! Cold keys whose first fill is under way, so that requests arriving meanwhile can wait for it
//! beneath pingora (in the raw HTTP/1 front) instead of each entering pingora's proxy state
//! machine to wait on its cache lock.
//!
//! pingora's cache lock already makes one request the fetcher of a cold key and lets the others
//! wait, but each waiter pays for a whole pingora request on the way in and again on the way
//! out (a session, a lookup, the hit path and a response header built and serialized per
//! request). A thousand requests on one cold key cost about a millisecond of CPU each way that
//! way. Here the fetcher registers the key when pingora makes it the cache lock writer of a
//! miss (`ProxyHttp::cache_miss`); the front finds the registration, waits until the fill has
//! moved on, and then answers from what the store holds: the committed entry, or the fill in
//! progress read as it arrives (`cache::inflight`). Anything it cannot answer exactly as
//! pingora would still goes to pingora.
//!
//! A registration ends (its waiters wake) when the response header of the fill is published for
//! readers (streamed fills), when the fill is committed or refused, when the response turns
//! out to be uncacheable, and at the latest when the fetching request ends (its guard drops).

use super::HashMap;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Keys (primary hashes) with a first fill under way.
#[derive(Default)]
pub struct FirstFills {
    fills: Mutex<HashMap<HashBinary, Registration>>,
    next_id: AtomicU64,
}

struct Registration {
    id: u64,
    /// Sends once (`true`) when the fill moved on; dropping it wakes the waiters too.
    moved: watch::Sender<bool>,
}

/// Held by the fetching request: ends the registration when dropped.
pub struct FirstFillGuard {
    fills: Arc<FirstFills>,
    primary: HashBinary,
    id: u64,
}

impl std::fmt::Debug for FirstFillGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstFillGuard")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for FirstFillGuard {
    fn drop(&mut self) {
        let mut fills = self.fills.fills.lock();
        if fills.get(&self.primary).is_some_and(|r| r.id == self.id) {
            if let Some(r) = fills.remove(&self.primary) {
                r.moved.send_replace(true);
            }
        }
    }
}

impl FirstFills {
    /// Registers the first fill of `primary`; `None` when one is registered already (pingora's
    /// lock timed out and a second fetcher started: its waiters keep waiting on the first).
    pub fn begin(self: &Arc<Self>, primary: HashBinary) -> Option<FirstFillGuard> {
        let mut fills = self.fills.lock();
        if fills.contains_key(&primary) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        fills.insert(
            primary,
            Registration {
                id,
                moved: watch::channel(false).0,
            },
        );
        Some(FirstFillGuard {
            fills: self.clone(),
            primary,
            id,
        })
    }

    /// The fill of `primary` moved on (its header is readable, it was committed or refused):
    /// wakes its waiters; requests arriving later look at the store themselves.
    pub fn moved(&self, primary: &HashBinary) {
        if let Some(r) = self.fills.lock().remove(primary) {
            r.moved.send_replace(true);
        }
    }

    /// A receiver that changes when the first fill of `primary` moves on, if one is under way.
    pub fn watch(&self, primary: &HashBinary) -> Option<watch::Receiver<bool>> {
        self.fills.lock().get(primary).map(|r| r.moved.subscribe())
    }

    /// Registrations under way.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.fills.lock().len()
    }
}

/// Waits until the watched fill moved on; `false` when `limit` passed first.
pub async fn wait_moved(mut rx: watch::Receiver<bool>, limit: std::time::Duration) -> bool {
    // an error means the registration was dropped: it moved on too
    let moved = rx.wait_for(|moved| *moved);
    tokio::time::timeout(limit, moved).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u8) -> HashBinary {
        [n; 16]
    }

    #[tokio::test]
    async fn waiters_wake_when_the_fill_moves_on_or_its_fetcher_ends() {
        let fills = Arc::new(FirstFills::default());
        let guard = fills.begin(key(1)).expect("first");
        assert!(fills.begin(key(1)).is_none(), "one registration per key");
        let rx = fills.watch(&key(1)).expect("registered");
        assert!(!wait_moved(rx.clone(), Duration::from_millis(10)).await);
        fills.moved(&key(1));
        assert!(wait_moved(rx, Duration::from_secs(5)).await);
        assert!(
            fills.watch(&key(1)).is_none(),
            "later requests look at the store"
        );
        // the guard of a registration that already moved on removes nothing newer
        let newer = fills
            .begin(key(1))
            .expect("a new fill after the first moved on");
        drop(guard);
        assert_eq!(fills.len(), 1);
        let rx = fills.watch(&key(1)).expect("still registered");
        drop(newer);
        assert!(wait_moved(rx, Duration::from_secs(5)).await);
        assert_eq!(fills.len(), 0);
    }
}
