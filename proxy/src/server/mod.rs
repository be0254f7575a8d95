//! The client side of the proxy listener: defences against slow and numerous clients, and the
//! bookkeeping a fast graceful shutdown needs.
//!
//! - [`ClientGuard`] wraps pingora's HTTP application: it caps the open client connections
//!   (refusing the excess with a `503` at once) and wraps every accepted stream in a
//!   [`DeadlineStream`], which enforces a deadline on each request header block. pingora's own
//!   downstream read timeout applies per read, so a header trickled one byte at a time would
//!   otherwise never be cut.
//! - [`HitFront`] sits between the guard and pingora: it writes plain fresh hits on HTTP/1
//!   connections from bytes prepared at store time and hands every other request to pingora.
//! - [`Forwarder`] is the front's pass-through: requests for URLs the cache knows it cannot
//!   store are forwarded to the origin beneath pingora too, and plain misses of cold keys are
//!   fetched, stored and answered there ([`fill`]).
//! - [`Lifecycle`] counts connections and in-flight requests and carries the draining flag:
//!   a graceful shutdown ends as soon as no request is in flight (the grace period is a maximum).
//! - [`raise_nofile_limit`] lifts the soft open-file limit to the hard one at start.

mod chunked;
mod deadline;
mod fill;
mod forward;
mod front;
mod guard;
mod lifecycle;
mod nofile;
mod origin_pool;
mod timer;

pub use fill::FillSettings;
pub use forward::Forwarder;
pub use front::HitFront;
pub use guard::ClientGuard;
pub use lifecycle::{InflightGuard, Lifecycle};
pub use nofile::{connection_cap, raise_nofile_limit};
