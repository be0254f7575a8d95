//! Test harness of the end-to-end suites under `tests/tests/`: each piece starts a real component
//! on an ephemeral loopback port, and [`stack::Stack`] starts the pieces a test needs, wired to
//! each other.
//!
//! Components: [`db`] (a PostgreSQL database per test), [`origin`] (the real origin),
//! [`scripted_origin`] (a programmable origin for proxy tests), [`proxy`] (the caching proxy),
//! [`fake_llm`] (the fake provider), [`nats`] (a private nats-server and a partition relay), [`raw_origin`] (fixed bytes on a raw
//! socket, for interim responses).
//! [`browser`] (headless Chromium through chromedriver), [`private_pg`] (a throwaway PostgreSQL
//! server a test may stop and restart) and [`pg_faults`] (the PostgreSQL fault scenario). Helpers shared by every suite: [`http`]
//! (send and read responses), [`wait`] (polling) and [`tls`] (a test CA and HTTPS clients).

pub mod browser;
pub mod db;
pub mod fake_llm;
pub mod http;
pub mod nats;
pub mod origin;
pub mod pg_faults;
pub mod private_pg;
pub mod proxy;
pub mod raw_origin;
pub mod rng;
pub mod scripted_origin;
pub mod stack;
pub mod tls;
pub mod wait;
