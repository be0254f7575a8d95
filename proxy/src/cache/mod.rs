//! The cache: RFC 9111 policy, `Vary`, the bounded store with its handlers and indexes, and
//! invalidation.

pub mod handlers;
pub mod hit;
pub mod index;
pub mod invalidate;
pub mod policy;
pub mod storage;
pub mod vary;
