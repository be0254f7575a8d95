//! The HTTP layer: hyper 1.x server, router, request context, responses, input validation, and
//! the operations listener (`ops`: metrics and detailed health), request time budgets (`budget`)
//! and the front end's static files (`static_files`).

pub mod budget;
pub mod input;
pub mod ops;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod static_files;
