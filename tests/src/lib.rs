//! Test harness shared by the end-to-end test binaries under `tests/tests/` and the benchmarks:
//! each piece starts a real component on an ephemeral loopback port.

pub mod db;
pub mod fake_llm;
pub mod nats;
pub mod origin;
pub mod proxy;
pub mod test_origin;
