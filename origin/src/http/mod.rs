//! The HTTP layer: hyper 1.x server, router, request context, responses and input validation.

pub mod input;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
