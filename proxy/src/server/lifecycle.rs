//! Connection and in-flight request counts of one proxy instance, and its draining flag.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared by the connection guard, the request hooks and the shutdown path.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    connections: AtomicUsize,
    inflight: AtomicUsize,
}

/// One open client connection; released on drop.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Lifecycle>);

/// One request being processed (held by the request context); released on drop.
#[derive(Debug)]
pub struct InflightGuard(Arc<Lifecycle>);

impl Lifecycle {
    /// Takes a connection slot unless `max` are open or the proxy is draining.
    pub fn admit(self: &Arc<Self>, max: usize) -> Result<ConnectionSlot, Refusal> {
        if self.draining() {
            return Err(Refusal::Draining);
        }
        let mut current = self.connections.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return Err(Refusal::Limit);
            }
            match self.connections.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(ConnectionSlot(self.clone())),
                Err(now) => current = now,
            }
        }
    }

    /// Counts a request until the returned guard drops.
    pub fn request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts draining (new connections are refused, responses say `Connection: close`) and
    /// blocks until no request is in flight or `grace` has passed. Returns whether it drained.
    pub fn drain(&self, grace: Duration) -> bool {
        self.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        loop {
            if self.inflight() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Limit,
    Draining,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::Draining => "draining",
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_returned() {
        let l = Arc::new(Lifecycle::default());
        let a = l.admit(2).unwrap();
        let _b = l.admit(2).unwrap();
        assert_eq!(l.admit(2).unwrap_err(), Refusal::Limit);
        drop(a);
        assert!(l.admit(2).is_ok());
    }

    #[test]
    fn drain_returns_once_requests_finish() {
        let l = Arc::new(Lifecycle::default());
        let req = l.request();
        let l2 = l.clone();
        let t = std::thread::spawn(move || l2.drain(Duration::from_secs(30)));
        // refused while draining
        while !l.draining() {
            std::thread::yield_now();
        }
        assert_eq!(l.admit(10).unwrap_err(), Refusal::Draining);
        drop(req);
        assert!(t.join().unwrap());
        assert!(!l.drain(Duration::ZERO) || l.inflight() == 0);
    }
}
