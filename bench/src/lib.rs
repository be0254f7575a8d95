//! llmselect-bench: the benchmark suite behind the README's performance figures.
//!
//! [`loadgen`] is a closed-loop keep-alive HTTP/1.1 load generator; [`procs`] starts the release
//! binaries (origin, proxy) and nginx as pinned child processes; [`db`] creates and seeds a
//! throwaway database; the parts are [`origin_bench`], [`http_bench`], [`workload`] and
//! [`fleet`] (nats-server, two origins and three proxies on one invalidation stream);
//! [`report`] writes `bench/results/latest.{md,json}`. [`suite::run`] ties them together.
//! [`reliability`] is the fault-injection suite behind `scripts/reliability.sh`.

pub mod cli;
pub mod client;
pub mod db;
pub mod fixtures;
pub mod fleet;
pub mod http_bench;
pub mod loadgen;
pub mod machine;
pub mod origin_bench;
pub mod peers;
pub mod procs;
pub mod promtext;
pub mod reliability;
pub mod report;
pub mod responder;
pub mod stats;
pub mod suite;
pub mod targets;
pub mod workload;
pub mod wrk;
pub mod zipf;
