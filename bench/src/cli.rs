//! Command-line options. `--quick` shrinks every size and duration to a few-second smoke run.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The parts of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Endpoint latency straight at the origin, without and with the performance indexes.
    Origin,
    /// Origin vs proxy vs nginx proxy_cache at fixed concurrency, and the cold-key stampede.
    Http,
    /// Zipf read-mostly mix with writes through the proxy: hit rate and stale reads.
    Workload,
    /// Three proxies and two origins on one NATS JetStream invalidation stream: propagation delay,
    /// invalidations per second per node, the workload spread over the nodes.
    Fleet,
    /// The proxy vs nginx `proxy_cache` vs HAProxy `cache` in front of a tiny in-memory origin:
    /// 1 KiB hits, `no-store` pass-through, 64 KiB hits, server CPU µs per request.
    Peers,
}

#[derive(Debug, Parser)]
#[command(
    name = "llmselect-bench",
    version,
    about = "llmselect-edge benchmark suite"
)]
pub struct Cli {
    /// Admin URL of a PostgreSQL server; a throwaway database is created next to it.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Directory holding the llmselect-origin and llmselect-proxy binaries (default: this
    /// binary's directory, i.e. the same cargo profile).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// nginx binary used as the reference cache.
    #[arg(long, default_value = "nginx")]
    pub nginx: String,
    /// HAProxy binary, the second peer of the comparison (its `cache` section).
    #[arg(long, default_value = "haproxy")]
    pub haproxy: String,
    /// Connections of the peer comparison.
    #[arg(long, default_value_t = 64)]
    pub peer_connections: usize,
    /// The cacheable path of the HTTP comparison (one provider's models: about 1 KiB of JSON).
    #[arg(long, default_value = "/api/v1/models?provider=anthropic")]
    pub hit_path: String,
    /// Profile the proxy and nginx with `perf record -g` during their first hit run at the
    /// highest concurrency, into PREFIX-proxy.data and PREFIX-nginx.data (`perf report -i`).
    #[arg(long, value_name = "PREFIX")]
    pub perf: Option<PathBuf>,
    /// wrk binary for the cross-check of the hit figures.
    #[arg(long, default_value = "wrk")]
    pub wrk: String,
    /// Skip the wrk cross-check.
    #[arg(long)]
    pub no_wrk: bool,
    /// Pin the servers to these CPUs with `taskset -c` (pin the bench itself to others).
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// Which parts to run (comma-separated; all by default).
    #[arg(long, value_delimiter = ',', default_values = ["origin", "http", "workload", "fleet", "peers"])]
    pub parts: Vec<Part>,
    /// Smoke run: tiny dataset, sub-second measurements.
    #[arg(long)]
    pub quick: bool,
    #[arg(long)]
    pub users: Option<i64>,
    #[arg(long)]
    pub conversations: Option<i64>,
    #[arg(long)]
    pub messages: Option<i64>,
    #[arg(long)]
    pub comparisons: Option<i64>,
    /// Seconds measured per run (after a 20 % warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Interleaved rounds of the HTTP comparison (medians reported).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Connection counts of the HTTP comparison.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    pub levels: Vec<usize>,
    /// Connection counts of the origin endpoint runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8])]
    pub origin_connections: Vec<usize>,
    /// Users logged in for the origin runs and the workload.
    #[arg(long)]
    pub login_users: Option<usize>,
    /// Concurrent requests of the cold-key stampede.
    #[arg(long)]
    pub stampede: Option<usize>,
    /// Worker threads of the proxy (one per server CPU is fair against one nginx worker).
    #[arg(long, default_value_t = 1)]
    pub proxy_threads: usize,
    /// Workers of every server in the peers part: nginx worker processes, HAProxy threads and
    /// proxy threads (the scaling comparison; `scripts/bench.sh --unpinned` leaves them unpinned).
    #[arg(long, default_value_t = 1)]
    pub peer_workers: usize,
    /// Run the proxy with `server.work_stealing = false` (one single-threaded runtime per worker).
    #[arg(long)]
    pub proxy_no_work_stealing: bool,
    /// Share of workload requests that are writes.
    #[arg(long, default_value_t = 0.01)]
    pub write_share: f64,
    /// Zipf exponent of the workload's user popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Seconds of the measured workload run.
    #[arg(long)]
    pub workload_secs: Option<f64>,
    #[arg(long, default_value_t = 32)]
    pub workload_connections: usize,
    /// nats-server binary (with JetStream) of the fleet part.
    #[arg(long, default_value = "nats-server")]
    pub nats_server: String,
    /// Renames whose propagation to every node the fleet part measures.
    #[arg(long)]
    pub fleet_renames: Option<usize>,
    /// Invalidations published straight to the stream for the fleet's throughput run.
    #[arg(long)]
    pub fleet_messages: Option<usize>,
    /// Where latest.json and latest.md go.
    #[arg(long, default_value = "bench/results")]
    pub results_dir: PathBuf,
    /// Keep the benchmark database (its name is printed) instead of dropping it.
    #[arg(long)]
    pub keep_db: bool,
    /// Reuse an existing, already seeded database (by name) instead of creating and seeding one.
    #[arg(long)]
    pub reuse_db: Option<String>,
}

/// Effective sizes and durations after `--quick` and explicit flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub users: i64,
    pub conversations: i64,
    pub messages: i64,
    pub comparisons: i64,
    pub duration: f64,
    pub rounds: usize,
    pub login_users: usize,
    pub stampede: usize,
    pub workload_secs: f64,
    pub fleet_renames: usize,
    pub fleet_messages: usize,
}

impl Cli {
    pub fn settings(&self) -> Settings {
        let q = self.quick;
        Settings {
            users: self.users.unwrap_or(if q { 200 } else { 10_000 }),
            conversations: self
                .conversations
                .unwrap_or(if q { 2_000 } else { 100_000 }),
            messages: self.messages.unwrap_or(if q { 20_000 } else { 1_000_000 }),
            comparisons: self.comparisons.unwrap_or(if q { 1_000 } else { 50_000 }),
            duration: self.duration.unwrap_or(if q { 0.4 } else { 3.0 }),
            rounds: self.rounds.unwrap_or(if q { 1 } else { 3 }),
            login_users: self.login_users.unwrap_or(if q { 40 } else { 1_000 }),
            stampede: self.stampede.unwrap_or(if q { 100 } else { 1_000 }),
            workload_secs: self.workload_secs.unwrap_or(if q { 1.0 } else { 15.0 }),
            fleet_renames: self.fleet_renames.unwrap_or(if q { 30 } else { 300 }),
            fleet_messages: self
                .fleet_messages
                .unwrap_or(if q { 2_000 } else { 20_000 }),
        }
    }

    /// The command line as typed, for the report.
    pub fn command_line() -> String {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("llmselect-bench {}", args.join(" "))
    }
}
