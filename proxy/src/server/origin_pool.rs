//! Idle keep-alive connections to the origins for the front's pass-through
//! ([`super::forward`]), one pool per worker thread.
//!
//! Per thread, not shared: pingora runs each worker thread's connections on that thread (its own
//! runtime unless work stealing moves tasks), so a connection parked by a thread is taken again
//! by the same thread without a lock and stays with the I/O driver it was registered with.
//! pingora's own pool (used by requests that go through its proxy state machine) is separate.

use super::timer::ReusedTimer;
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A connection to an origin, with the timer its reads wait with: one per connection, so the
/// read deadlines of its responses only move later ([`ReusedTimer`]).
pub struct OriginConn {
    pub stream: TcpStream,
    pub read_timer: ReusedTimer,
}

impl OriginConn {
    pub fn new(stream: TcpStream) -> OriginConn {
        OriginConn {
            stream,
            read_timer: ReusedTimer::default(),
        }
    }

    /// Reads more of the origin's response into `buf`; `None` when `limit` passes first.
    pub async fn read(&mut self, limit: Duration, buf: &mut BytesMut) -> Option<io::Result<usize>> {
        self.read_timer
            .limit(limit, self.stream.read_buf(buf))
            .await
    }
}

/// Idle connections kept per origin and thread; more are closed when they come back.
const MAX_IDLE_PER_ORIGIN: usize = 128;

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<(OriginConn, Instant)>>> =
        RefCell::new(HashMap::new());
}

/// Takes an idle connection to `addr` that was parked less than `idle` ago and that the origin
/// has not closed (or written to) since, newest first. Stale ones are dropped on the way.
pub fn take(addr: SocketAddr, idle: Duration) -> Option<OriginConn> {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let conns = pool.get_mut(&addr)?;
        while let Some((conn, parked)) = conns.pop() {
            if parked.elapsed() < idle && is_quiet(&conn.stream) {
                return Some(conn);
            }
        }
        None
    })
}

/// Parks a connection whose last response ended cleanly.
pub fn put(addr: SocketAddr, conn: OriginConn) {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let conns = pool.entry(addr).or_default();
        if conns.len() < MAX_IDLE_PER_ORIGIN {
            conns.push((conn, Instant::now()));
        }
    })
}

/// Whether an idle connection has nothing to read: neither a close by the origin nor stray
/// bytes (either makes it unusable for the next request).
fn is_quiet(conn: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
