//! The fleet's invalidation bus, as the origin (which publishes its outbox) and the proxy (which
//! follows the stream) share it: one `[bus]` configuration section ([`BusConfig`]), one way to
//! connect to NATS and to create the JetStream stream ([`connect`], [`ensure_stream`]), and one
//! message format ([`Invalidation`]).

mod config;
mod message;
mod nats;

pub use config::{redact, BusConfig};
pub use message::{outbox_id, Invalidation, MessageError, MAX_MESSAGE_BYTES};
pub use nats::{connect, ensure_stream, BoxError};
