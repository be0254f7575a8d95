//! The results: JSON (everything) and a Markdown summary (the tables the README shows), written to
//! `<results dir>/latest.{json,md}` and printed.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::http_bench::{Coalescing, HttpReport};
use crate::machine::Machine;
use crate::origin_bench::OriginRow;
use crate::workload::WorkloadReport;

#[derive(Debug, Clone, Serialize)]
pub struct SeedInfo {
    pub requested: serde_json::Value,
    pub rows: Vec<(String, i64)>,
    pub seconds: f64,
    pub origin_summary: String,
}

/// One target of the issue, with the figure that decides it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub command: String,
    pub quick: bool,
    pub machine: Machine,
    pub seed: Option<SeedInfo>,
    pub origin: Vec<OriginRow>,
    pub http: Option<HttpReport>,
    pub coalescing: Vec<Coalescing>,
    pub workload: Option<WorkloadReport>,
    pub targets: Vec<TargetCheck>,
}

fn ms(us: f64) -> String {
    if us.is_nan() {
        "–".into()
    } else if us >= 10_000.0 {
        format!("{:.0}", us / 1000.0)
    } else {
        format!("{:.2}", us / 1000.0)
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.0}")
    }
}

/// Requests per second: one decimal below 10 (an unindexed query manages a fraction of one).
fn rate(v: f64) -> String {
    if v.is_finite() && v < 10.0 {
        format!("{v:.1}")
    } else {
        num(v)
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(s, "# llmselect-edge benchmark results\n");
        let _ = writeln!(
            s,
            "Generated {} by `{}`{}.\n",
            self.generated_at,
            self.command,
            if self.quick {
                " (quick smoke run: figures are not meaningful)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "Machine: {} × {} ({} online), {:.0} GiB RAM, Linux {}; {}; {}; commit {}. Servers pinned to CPU {}, load generator to CPU {}.\n",
            m.cpus,
            m.cpu_model,
            m.cpus,
            m.memory_gib,
            m.kernel,
            m.postgres,
            m.nginx,
            m.commit,
            m.server_cpus,
            m.client_cpus
        );
        if let Some(seed) = &self.seed {
            let rows: Vec<String> = seed.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
            let _ = writeln!(
                s,
                "Dataset: {} (seeded in {:.1} s with set-based SQL).\n",
                rows.join(", "),
                seed.seconds
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                s,
                "## Targets\n\n| target | measured | met |\n|---|---|---|"
            );
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    t.target,
                    t.measured,
                    if t.met { "yes" } else { "**no**" }
                );
            }
            s.push('\n');
        }
        if !self.origin.is_empty() {
            let _ = writeln!(
                s,
                "## Origin endpoints, without → with the performance indexes (migration 0002)\n\nKeep-alive connections straight to the origin, requests spread over the logged-in users. Latency in ms.\n"
            );
            let _ = writeln!(
                s,
                "| endpoint | conns | req/s before | req/s after | p50 before | p50 after | p99 before | p99 after | statements/request |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            let befores = self.origin.iter().filter(|r| !r.indexes);
            for b in befores {
                let a = self.origin.iter().find(|r| {
                    r.indexes && r.endpoint == b.endpoint && r.connections == b.connections
                });
                let (ar, a50, a99, ast) = a
                    .map(|a| (a.rps, a.p50_us, a.p99_us, a.statements_per_request))
                    .unwrap_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    b.endpoint,
                    b.connections,
                    rate(b.rps),
                    rate(ar),
                    ms(b.p50_us),
                    ms(a50),
                    ms(b.p99_us),
                    ms(a99),
                    if ast.is_nan() {
                        "–".into()
                    } else {
                        format!("{ast:.1}")
                    }
                );
            }
            let errors: u64 = self.origin.iter().map(|r| r.errors).sum();
            let _ = writeln!(s, "\nErrors: {errors}.\n");
        }
        if let Some(h) = &self.http {
            let rounds = h.rows.first().map(|r| r.rounds).unwrap_or(0);
            let body = h.rows.first().map(|r| r.body_bytes).unwrap_or(0);
            let path = &h.path;
            let _ = writeln!(
                s,
                "## HTTP: origin vs proxy vs nginx proxy_cache\n\n`GET {path}` ({body} B body), closed loop, keep-alive; medians of {rounds} interleaved rounds. Latency in ms. \"origin req\" is the origin's `origin_http_requests_total` delta over the runs (hits must not move it).\n"
            );
            let _ = writeln!(
                s,
                "| target | conns | req/s | p50 | p99 | X-Cache HIT | origin req | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|"
            );
            for r in &h.rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {:.1} % | {} | {} |",
                    r.target,
                    r.connections,
                    rate(r.rps),
                    ms(r.p50_us),
                    ms(r.p99_us),
                    r.hit_share * 100.0,
                    num(r.origin_requests),
                    r.errors
                );
            }
            let _ = writeln!(
                s,
                "\n| conns | proxy hit / nginx hit (req/s) | proxy hit / origin (req/s) | proxy miss / nginx miss (req/s) |\n|---:|---:|---:|---:|"
            );
            for r in &h.ratios {
                let _ = writeln!(
                    s,
                    "| {} | {:.2}× | {:.2}× | {:.2}× |",
                    r.connections,
                    r.proxy_over_nginx_hit_rps,
                    r.proxy_over_origin_rps,
                    r.proxy_over_nginx_miss_rps
                );
            }
            s.push('\n');
            if !h.wrk.is_empty() {
                let _ = writeln!(
                    s,
                    "Cross-check with `wrk -t1` (same CPUs as the load generator, one run each):\n\n| target | conns | req/s | p50 | p99 | non-2xx |\n|---|---:|---:|---:|---:|---:|"
                );
                for r in &h.wrk {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} |",
                        r.target,
                        r.connections,
                        rate(r.rps),
                        ms(r.p50_us),
                        ms(r.p99_us),
                        r.non_2xx
                    );
                }
                s.push('\n');
            }
        }
        if !self.coalescing.is_empty() {
            let _ = writeln!(
                s,
                "## Cold-key stampede\n\n| server | concurrent requests | origin requests | ok | errors | p50 | p99 |\n|---|---:|---:|---:|---:|---:|---:|"
            );
            for c in &self.coalescing {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    c.server,
                    c.concurrent_requests,
                    num(c.origin_requests),
                    c.ok,
                    c.errors,
                    ms(c.p50_us),
                    ms(c.p99_us)
                );
            }
            s.push('\n');
        }
        if let Some(w) = &self.workload {
            let sp = &w.spec;
            let _ = writeln!(
                s,
                "## Workload through the proxy\n\n{} users drawn Zipf(s = {}), {:.1} % writes (new messages), reads {:.0} % lists / {:.0} % models / rest details; {} connections, {:.0} s after a warm-up that read every key once{}.\n",
                sp.users,
                sp.zipf_s,
                sp.write_share * 100.0,
                sp.list_share * 100.0,
                sp.models_share * 100.0,
                sp.connections,
                sp.duration_secs,
                if sp.warm_every_key { "" } else { " (skipped)" }
            );
            let _ = writeln!(
                s,
                "| requests | req/s | read hit rate | origin requests | origin requests saved | writes | stale reads | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {:.0} | {:.1} % | {} | {:.1} % | {} | {} | {} |\n",
                w.requests,
                w.rps,
                w.hit_rate * 100.0,
                num(w.origin_requests),
                w.origin_requests_saved * 100.0,
                w.writes,
                w.stale_reads,
                w.errors
            );
            let _ = writeln!(
                s,
                "| kind | requests | hit rate | X-Cache | stale | p50 | p99 |\n|---|---:|---:|---|---:|---:|---:|"
            );
            for k in &w.kinds {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.1} % | {} | {} | {} | {} |",
                    k.kind,
                    k.requests,
                    k.hit_rate * 100.0,
                    k.x_cache
                        .iter()
                        .map(|(v, n)| format!("{v} {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    k.stale,
                    ms(k.p50_us),
                    ms(k.p99_us)
                );
            }
            s.push('\n');
        }
        s
    }

    /// Writes `latest.json` and `latest.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("latest.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("latest.md"), self.markdown())?;
        Ok(())
    }
}
