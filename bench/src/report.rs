//! The results: JSON (everything) and a Markdown summary (the tables the README shows), written to
//! `<results dir>/latest.{json,md}` and printed.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::fleet::FleetReport;
use crate::http_bench::{Coalescing, HttpReport};
use crate::machine::Machine;
use crate::origin_bench::OriginRow;
use crate::peers::{Load, Peer, PeerReport};
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
    pub fleet: Option<FleetReport>,
    /// The peer comparison (proxy, nginx, HAProxy in front of the tiny origin).
    #[serde(default)]
    pub peers: Option<PeerReport>,
    pub targets: Vec<TargetCheck>,
}

/// `–` for an unknown (NaN) figure, else `fmt(v)`.
fn known(v: f64, fmt: impl FnOnce(f64) -> String) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        fmt(v)
    }
}

/// Microseconds as milliseconds: two decimals below 10 ms, none above.
fn ms(us: f64) -> String {
    known(us, |us| {
        if us >= 10_000.0 {
            format!("{:.0}", us / 1000.0)
        } else {
            format!("{:.2}", us / 1000.0)
        }
    })
}

fn num(v: f64) -> String {
    known(v, |v| format!("{v:.0}"))
}

/// Requests per second: one decimal below 10 (an unindexed query manages a fraction of one).
fn rate(v: f64) -> String {
    if v.is_finite() && v < 10.0 {
        format!("{v:.1}")
    } else {
        num(v)
    }
}

/// A share in 0..1 as `12.3 %`.
fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// A ratio as `1.23×`.
fn times(v: f64) -> String {
    format!("{v:.2}×")
}

/// Writes a Markdown table: `head` (the header and alignment lines), then one line per row.
fn table<const N: usize>(s: &mut String, head: &str, rows: impl IntoIterator<Item = [String; N]>) {
    s.push_str(head);
    s.push('\n');
    for row in rows {
        let _ = writeln!(s, "| {} |", row.join(" | "));
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
            "Machine: {} × {} ({} online), {:.0} GiB RAM, Linux {}; {}; {}; commit {}. {}\n",
            m.cpus,
            m.cpu_model,
            m.cpus,
            m.memory_gib,
            m.kernel,
            m.postgres,
            m.nginx,
            m.commit,
            if m.server_cpus == "any" {
                "Servers and load generator unpinned.".to_string()
            } else {
                format!(
                    "Servers pinned to CPU {}, load generator to CPU {}.",
                    m.server_cpus, m.client_cpus
                )
            }
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
            s.push_str("## Targets\n\n");
            table(
                &mut s,
                "| target | measured | met |\n|---|---|---|",
                self.targets.iter().map(|t| {
                    [
                        t.target.clone(),
                        t.measured.clone(),
                        (if t.met { "yes" } else { "**no**" }).into(),
                    ]
                }),
            );
            s.push('\n');
        }
        if !self.origin.is_empty() {
            let _ = writeln!(
                s,
                "## Origin endpoints, without → with the performance indexes (migration 0002)\n\nKeep-alive connections straight to the origin, requests spread over the logged-in users. Latency in ms.\n"
            );
            // One line per endpoint and connection count, in measurement order; an endpoint
            // measured only with the indexes (the searches) has no "before" figures.
            let mut keys: Vec<(&str, usize)> = Vec::new();
            for r in &self.origin {
                if !keys.contains(&(r.endpoint.as_str(), r.connections)) {
                    keys.push((r.endpoint.as_str(), r.connections));
                }
            }
            let find = |indexes: bool, (endpoint, connections): (&str, usize)| {
                self.origin.iter().find(|r| {
                    r.indexes == indexes && r.endpoint == endpoint && r.connections == connections
                })
            };
            let figures = |r: Option<&OriginRow>| {
                r.map(|r| (r.rps, r.p50_us, r.p99_us, r.statements_per_request))
                    .unwrap_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN))
            };
            table(
                &mut s,
                "| endpoint | conns | req/s before | req/s after | p50 before | p50 after | p99 before | p99 after | statements/request |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                keys.iter().map(|&key| {
                    let (br, b50, b99, _) = figures(find(false, key));
                    let (ar, a50, a99, ast) = figures(find(true, key));
                    [
                        key.0.to_string(),
                        key.1.to_string(),
                        known(br, rate),
                        rate(ar),
                        known(b50, ms),
                        ms(a50),
                        known(b99, ms),
                        ms(a99),
                        known(ast, |v| format!("{v:.1}")),
                    ]
                }),
            );
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
            table(
                &mut s,
                "| target | conns | req/s | p50 | p99 | X-Cache HIT | origin req | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|",
                h.rows.iter().map(|r| {
                    [
                        r.target.clone(),
                        r.connections.to_string(),
                        rate(r.rps),
                        ms(r.p50_us),
                        ms(r.p99_us),
                        percent(r.hit_share),
                        num(r.origin_requests),
                        r.errors.to_string(),
                    ]
                }),
            );
            table(
                &mut s,
                "\n| conns | proxy hit / nginx hit (req/s) | proxy hit / origin (req/s) | proxy miss / nginx miss (req/s) |\n|---:|---:|---:|---:|",
                h.ratios.iter().map(|r| {
                    [
                        r.connections.to_string(),
                        times(r.proxy_over_nginx_hit_rps),
                        times(r.proxy_over_origin_rps),
                        times(r.proxy_over_nginx_miss_rps),
                    ]
                }),
            );
            s.push('\n');
            if !h.wrk.is_empty() {
                table(
                    &mut s,
                    "Cross-check with `wrk -t1` (same CPUs as the load generator, one run each):\n\n| target | conns | req/s | p50 | p99 | non-2xx |\n|---|---:|---:|---:|---:|---:|",
                    h.wrk.iter().map(|r| {
                        [
                            r.target.clone(),
                            r.connections.to_string(),
                            rate(r.rps),
                            ms(r.p50_us),
                            ms(r.p99_us),
                            r.non_2xx.to_string(),
                        ]
                    }),
                );
                s.push('\n');
            }
        }
        if !self.coalescing.is_empty() {
            table(
                &mut s,
                "## Cold-key stampede\n\n| server | concurrent requests | origin requests | ok | errors | p50 | p99 |\n|---|---:|---:|---:|---:|---:|---:|",
                self.coalescing.iter().map(|c| {
                    [
                        c.server.clone(),
                        c.concurrent_requests.to_string(),
                        num(c.origin_requests),
                        c.ok.to_string(),
                        c.errors.to_string(),
                        ms(c.p50_us),
                        ms(c.p99_us),
                    ]
                }),
            );
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
            table(
                &mut s,
                "| requests | req/s | read hit rate | origin requests | origin requests saved | writes | stale reads | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|",
                [[
                    w.requests.to_string(),
                    format!("{:.0}", w.rps),
                    percent(w.hit_rate),
                    num(w.origin_requests),
                    percent(w.origin_requests_saved),
                    w.writes.to_string(),
                    w.stale_reads.to_string(),
                    w.errors.to_string(),
                ]],
            );
            s.push('\n');
            table(
                &mut s,
                "| kind | requests | hit rate | X-Cache | stale | p50 | p99 |\n|---|---:|---:|---|---:|---:|---:|",
                w.kinds.iter().map(|k| {
                    let x_cache: Vec<String> =
                        k.x_cache.iter().map(|(v, n)| format!("{v} {n}")).collect();
                    [
                        k.kind.clone(),
                        k.requests.to_string(),
                        percent(k.hit_rate),
                        x_cache.join(", "),
                        k.stale.to_string(),
                        ms(k.p50_us),
                        ms(k.p99_us),
                    ]
                }),
            );
            s.push('\n');
        }
        if let Some(f) = &self.fleet {
            let p = &f.propagation;
            let t = &f.throughput;
            let w = &f.workload;
            let _ = writeln!(
                s,
                "## Fleet: {} proxies, {} origins, one invalidation stream\n\nEach proxy balances over both origins and follows the NATS JetStream stream ({}); the origins publish their outbox. Latency in ms.\n",
                f.shape.proxies, f.shape.origins, f.shape.nats_server
            );
            let hist = |v: fn(&crate::fleet::HistogramQuantiles) -> f64| {
                p.bus_histogram.as_ref().map_or("–".into(), |h| ms(v(h)))
            };
            table(
                &mut s,
                "| propagation of a rename | renames | p50 | p99 | max | timeouts |\n|---|---:|---:|---:|---:|---:|",
                [
                    [
                        format!(
                            "commit → applied on every node (`/stats` polled every {} ms)",
                            crate::fleet::POLL_MICROS as f64 / 1000.0
                        ),
                        p.renames.to_string(),
                        ms(p.all_nodes.p50_us),
                        ms(p.all_nodes.p99_us),
                        ms(p.all_nodes.max_us),
                        p.timeouts.to_string(),
                    ],
                    [
                        "commit → applied on the first node".to_string(),
                        p.renames.to_string(),
                        ms(p.first_node.p50_us),
                        ms(p.first_node.p99_us),
                        ms(p.first_node.max_us),
                        "".into(),
                    ],
                    [
                        "publication → applied, per node (`proxy_bus_propagation_seconds`, bucket-interpolated)".to_string(),
                        p.bus_histogram.as_ref().map_or("–".into(), |h| num(h.count)),
                        hist(|h| h.p50_us),
                        hist(|h| h.p99_us),
                        "–".into(),
                        "".into(),
                    ],
                ],
            );
            let _ = writeln!(
                s,
                "\n{} invalidations published straight to the stream ({} in flight), acknowledged at {} per second; applied per node (first publication → the node's `applied_seq` at the last one):\n",
                t.messages,
                t.in_flight,
                num(t.acked_per_sec)
            );
            table(
                &mut s,
                "| node | applied/s | seconds | most behind the acknowledged sequence |\n|---|---:|---:|---:|",
                t.nodes.iter().map(|n| {
                    [
                        if n.timed_out {
                            format!("{} (**did not catch up**)", n.node)
                        } else {
                            n.node.clone()
                        },
                        rate(n.applied_per_sec),
                        format!("{:.2}", n.seconds),
                        n.max_behind.to_string(),
                    ]
                }),
            );
            let _ = writeln!(
                s,
                "\nWorkload spread over the {} nodes (requests in turn), each user echoing its last write's `LLMSelect-Invalidation-Id`; {} connections, {:.0} s after a warm-up of every key on every node{}:\n",
                w.nodes,
                w.spec.connections,
                w.spec.duration_secs,
                if w.spec.warm_every_key { "" } else { " (skipped)" }
            );
            table(
                &mut s,
                "| requests | req/s | read hit rate | origin requests saved | writes | reads echoing a write | stale reads | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|",
                [[
                    w.requests.to_string(),
                    format!("{:.0}", w.rps),
                    percent(w.hit_rate),
                    percent(w.origin_requests_saved),
                    w.writes.to_string(),
                    w.reads_with_position.to_string(),
                    w.stale_reads.to_string(),
                    w.errors.to_string(),
                ]],
            );
            s.push('\n');
        }
        if let Some(p) = &self.peers {
            peers_markdown(&mut s, p);
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

/// The peer comparison: the issue's summary table, then every run's figures.
fn peers_markdown(s: &mut String, p: &PeerReport) {
    let _ = writeln!(
        s,
        "## Peers: proxy vs nginx proxy_cache vs HAProxy cache ({})\n\nA tiny hyper origin (one thread, answers from memory) serving {} × 1 KiB and {} × 64 KiB cacheable objects, a `no-store` path and, for the miss runs, any other 1 KiB object (each request a new one); every server with {}; {} connections walking over the objects, {:.0} s per run, medians of {} interleaved rounds, ratios taken within each round. CPU is user + system time of the server process from `/proc/<pid>/stat` over the measured window, per request. Load average before / after: {} / {}.\n",
        p.haproxy_version,
        crate::peers::OBJECTS,
        crate::peers::OBJECTS,
        match p.workers {
            1 => "one worker".to_string(),
            n => format!("{n} workers (nginx worker processes, HAProxy threads, proxy threads)"),
        },
        p.connections,
        p.duration_secs,
        p.rounds,
        p.loadavg_before,
        p.loadavg_after
    );
    let cell = |load: Load, peer: Peer, f: &dyn Fn(&crate::peers::PeerRow) -> String| {
        p.row(load, peer).map_or("–".to_string(), f)
    };
    let rps_cell = |r: &crate::peers::PeerRow| {
        if r.peer == Peer::Proxy {
            format!(
                "{} ({:.2}× nginx, {:.2}× HAProxy)",
                rate(r.rps),
                r.over_nginx,
                r.over_haproxy
            )
        } else {
            rate(r.rps)
        }
    };
    let cpu_cell = |r: &crate::peers::PeerRow| format!("{:.1} µs", r.cpu_us);
    let both_cell = |r: &crate::peers::PeerRow| {
        format!(
            "{:.1} µs ({:.1} + {:.1})",
            r.cpu_us + r.origin_cpu_us,
            r.cpu_us,
            r.origin_cpu_us
        )
    };
    let line = |name: &str, load: Load, f: &dyn Fn(&crate::peers::PeerRow) -> String| {
        let mut row = [
            name.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
        for (i, peer) in Peer::ALL.iter().enumerate() {
            row[i + 1] = cell(load, *peer, f);
        }
        row
    };
    table(
        s,
        "| scenario | this proxy | nginx proxy_cache | HAProxy cache | bare responder (the limit) |\n|---|---|---|---|---|",
        [
            line("1 KiB hits, req/s", Load::SmallHit, &rps_cell),
            line("server CPU per hit", Load::SmallHit, &cpu_cell),
            line("`no-store` pass-through, req/s", Load::NoStore, &rps_cell),
            line(
                "server CPU per pass-through request (server + origin)",
                Load::NoStore,
                &both_cell,
            ),
            line("1 KiB misses (a new key per request), req/s", Load::Miss, &rps_cell),
            line(
                "CPU per miss (server + origin)",
                Load::Miss,
                &both_cell,
            ),
            line("64 KiB hits, req/s", Load::BigHit, &rps_cell),
            line("server CPU per 64 KiB hit", Load::BigHit, &cpu_cell),
        ],
    );
    s.push('\n');
    table(
        s,
        "| scenario | server | req/s | p50 | p99 | CPU µs/req | origin CPU µs/req | origin req | errors | ×nginx | ×HAProxy |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        p.rows.iter().map(|r| {
            [
                r.load_label(),
                r.peer.label().to_string(),
                rate(r.rps),
                ms(r.p50_us),
                ms(r.p99_us),
                format!("{:.1}", r.cpu_us),
                format!("{:.1}", r.origin_cpu_us),
                r.origin_requests.to_string(),
                r.errors.to_string(),
                times(r.over_nginx),
                times(r.over_haproxy),
            ]
        }),
    );
    s.push('\n');
    if !p.slow_stampedes.is_empty() {
        let _ = writeln!(
            s,
            "Cold-key stampede on a slow origin: {} concurrent requests (each on its own connection, all connected first) for one never-seen key whose origin answers after {} ms; medians of {} rounds, origin requests summed. CPU is the server's per request over the stampede, connections included.\n",
            p.slow_stampedes[0].requests,
            crate::responder::SLOW.as_millis(),
            p.rounds
        );
        table(
            s,
            "| server | origin requests | ok | errors | p50 | p99 | CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|",
            p.slow_stampedes.iter().map(|r| {
                [
                    r.peer.label().to_string(),
                    r.origin_requests.to_string(),
                    r.ok.to_string(),
                    r.errors.to_string(),
                    ms(r.p50_us),
                    ms(r.p99_us),
                    format!("{:.1}", r.cpu_us),
                ]
            }),
        );
        s.push('\n');
    }
    if let Some(m) = &p.memory {
        let _ = writeln!(
            s,
            "Memory per cached entry: {} new 1 KiB objects requested through the proxy, {} stored (admin `/stats`), grew its RSS from {:.1} to {:.1} MiB, {:.0} B per stored entry, of which {} B body and {} B origin header: **{:.0} B overhead per entry**.\n",
            m.entries,
            m.stored,
            m.rss_before_bytes as f64 / 1048576.0,
            m.rss_after_bytes as f64 / 1048576.0,
            m.overhead_bytes + (m.body_bytes + m.header_bytes) as f64,
            m.body_bytes,
            m.header_bytes,
            m.overhead_bytes
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fleet::{FleetShape, HistogramQuantiles, NodeRate, Propagation, Throughput};
    use crate::http_bench::{HttpRow, Ratio};
    use crate::stats::Summary;
    use crate::workload::{KindRow, WorkloadSpec};
    use crate::wrk::WrkRow;

    /// One of everything, with a missing "after" row and NaN figures.
    fn sample() -> Report {
        let origin_row = |endpoint: &str, indexes: bool, rps: f64| OriginRow {
            endpoint: endpoint.into(),
            indexes,
            connections: 1,
            requests: 10,
            errors: 1,
            rps,
            p50_us: 1234.0,
            p99_us: 23456.0,
            statements_per_request: 2.0,
        };
        Report {
            generated_at: "2026-01-01 00:00 UTC".into(),
            command: "bench --quick".into(),
            quick: true,
            machine: Machine::default(),
            seed: Some(SeedInfo {
                requested: serde_json::Value::Null,
                rows: vec![("users".into(), 10), ("messages".into(), 100)],
                seconds: 1.25,
                origin_summary: String::new(),
            }),
            origin: vec![
                origin_row("list", false, 0.4),
                origin_row("list", true, 2434.0),
                origin_row("models", false, 11770.0),
            ],
            http: Some(HttpReport {
                path: "/api/v1/models".into(),
                rows: vec![HttpRow {
                    target: "proxy hit".into(),
                    connections: 64,
                    rounds: 3,
                    rps: 63978.4,
                    p50_us: 980.0,
                    p99_us: f64::NAN,
                    requests: 100,
                    errors: 0,
                    hit_share: 1.0,
                    origin_requests: 0.0,
                    body_bytes: 748,
                }],
                ratios: vec![Ratio {
                    connections: 64,
                    proxy_over_nginx_hit_rps: 0.8412,
                    proxy_over_origin_rps: 0.91,
                    proxy_over_nginx_miss_rps: f64::NAN,
                    proxy_hit_p99_us: 1360.0,
                    nginx_hit_p99_us: 1170.0,
                }],
                wrk: vec![WrkRow {
                    target: "nginx proxy_cache hit".into(),
                    connections: 1,
                    rps: 16455.2,
                    p50_us: 60.0,
                    p99_us: 280.0,
                    non_2xx: 3,
                    socket_errors: String::new(),
                }],
            }),
            coalescing: vec![Coalescing {
                server: "proxy".into(),
                concurrent_requests: 1000,
                ok: 1000,
                errors: 0,
                origin_requests: 1.0,
                p50_us: 15000.0,
                p99_us: 31000.0,
            }],
            workload: Some(WorkloadReport {
                spec: WorkloadSpec {
                    users: 100,
                    zipf_s: 1.1,
                    write_share: 0.02,
                    list_share: 0.4,
                    models_share: 0.2,
                    connections: 16,
                    duration_secs: 5.0,
                    warm_every_key: false,
                },
                nodes: 1,
                requests: 1000,
                rps: 200.4,
                reads: 980,
                read_hits: 950,
                hit_rate: 0.9694,
                writes: 20,
                reads_with_position: 0,
                stale_reads: 0,
                errors: 0,
                origin_requests: 60.0,
                origin_requests_saved: 0.94,
                kinds: vec![KindRow {
                    kind: "list".into(),
                    requests: 400,
                    errors: 0,
                    hits: 390,
                    hit_rate: 0.975,
                    stale: 0,
                    x_cache: BTreeMap::from([("HIT".into(), 390), ("MISS".into(), 10)]),
                    p50_us: 250.0,
                    p99_us: 900.0,
                }],
                proxy_stats: serde_json::Value::Null,
            }),
            fleet: None,
            peers: None,
            targets: vec![TargetCheck {
                target: "proxy hits never reach the origin".into(),
                measured: "0 origin requests".into(),
                met: true,
            }],
        }
    }

    /// `sample()` with a fleet part (its workload is the sample's, over 3 nodes).
    fn with_fleet() -> Report {
        let mut r = sample();
        let mut workload = r.workload.clone().expect("the sample has a workload");
        workload.nodes = 3;
        workload.reads_with_position = 12;
        let summary = |p50: f64, p99: f64| Summary {
            count: 30,
            p50_us: p50,
            p90_us: p99,
            p99_us: p99,
            max_us: p99 * 2.0,
            mean_us: p50,
        };
        r.fleet = Some(FleetReport {
            shape: FleetShape {
                proxies: 3,
                origins: 2,
                nats_server: "nats-server: v2.9.10".into(),
            },
            propagation: Propagation {
                renames: 30,
                all_nodes: summary(2345.0, 6789.0),
                first_node: summary(1234.0, 4567.0),
                timeouts: 0,
                bus_histogram: Some(HistogramQuantiles {
                    count: 90.0,
                    p50_us: 750.0,
                    p99_us: 2400.0,
                }),
            },
            throughput: Throughput {
                messages: 2000,
                in_flight: 1000,
                publish_seconds: 0.1,
                acked_per_sec: 20000.4,
                nodes: vec![
                    NodeRate {
                        node: "proxy-1".into(),
                        seconds: 0.125,
                        applied_per_sec: 16000.0,
                        max_behind: 800,
                        timed_out: false,
                    },
                    NodeRate {
                        node: "proxy-2".into(),
                        seconds: 60.0,
                        applied_per_sec: 12.5,
                        max_behind: 2000,
                        timed_out: true,
                    },
                ],
                applied_per_sec: 12.5,
            },
            workload,
        });
        r
    }

    /// The layout the README shows, pinned: headings, columns, number formats, blank lines.
    #[test]
    fn markdown_layout() {
        assert_eq!(sample().markdown(), EXPECTED);
        let fleet = with_fleet().markdown();
        assert_eq!(fleet.strip_prefix(EXPECTED), Some(FLEET));
    }

    const EXPECTED: &str = r#"# llmselect-edge benchmark results

Generated 2026-01-01 00:00 UTC by `bench --quick` (quick smoke run: figures are not meaningful).

Machine: 0 ×  (0 online), 0 GiB RAM, Linux ; ; ; commit . Servers pinned to CPU , load generator to CPU .

Dataset: users 10, messages 100 (seeded in 1.2 s with set-based SQL).

## Targets

| target | measured | met |
|---|---|---|
| proxy hits never reach the origin | 0 origin requests | yes |

## Origin endpoints, without → with the performance indexes (migration 0002)

Keep-alive connections straight to the origin, requests spread over the logged-in users. Latency in ms.

| endpoint | conns | req/s before | req/s after | p50 before | p50 after | p99 before | p99 after | statements/request |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
| list | 1 | 0.4 | 2434 | 1.23 | 1.23 | 23 | 23 | 2.0 |
| models | 1 | 11770 | – | 1.23 | – | 23 | – | – |

Errors: 3.

## HTTP: origin vs proxy vs nginx proxy_cache

`GET /api/v1/models` (748 B body), closed loop, keep-alive; medians of 3 interleaved rounds. Latency in ms. "origin req" is the origin's `origin_http_requests_total` delta over the runs (hits must not move it).

| target | conns | req/s | p50 | p99 | X-Cache HIT | origin req | errors |
|---|---:|---:|---:|---:|---:|---:|---:|
| proxy hit | 64 | 63978 | 0.98 | – | 100.0 % | 0 | 0 |

| conns | proxy hit / nginx hit (req/s) | proxy hit / origin (req/s) | proxy miss / nginx miss (req/s) |
|---:|---:|---:|---:|
| 64 | 0.84× | 0.91× | NaN× |

Cross-check with `wrk -t1` (same CPUs as the load generator, one run each):

| target | conns | req/s | p50 | p99 | non-2xx |
|---|---:|---:|---:|---:|---:|
| nginx proxy_cache hit | 1 | 16455 | 0.06 | 0.28 | 3 |

## Cold-key stampede

| server | concurrent requests | origin requests | ok | errors | p50 | p99 |
|---|---:|---:|---:|---:|---:|---:|
| proxy | 1000 | 1 | 1000 | 0 | 15 | 31 |

## Workload through the proxy

100 users drawn Zipf(s = 1.1), 2.0 % writes (new messages), reads 40 % lists / 20 % models / rest details; 16 connections, 5 s after a warm-up that read every key once (skipped).

| requests | req/s | read hit rate | origin requests | origin requests saved | writes | stale reads | errors |
|---:|---:|---:|---:|---:|---:|---:|---:|
| 1000 | 200 | 96.9 % | 60 | 94.0 % | 20 | 0 | 0 |

| kind | requests | hit rate | X-Cache | stale | p50 | p99 |
|---|---:|---:|---|---:|---:|---:|
| list | 400 | 97.5 % | HIT 390, MISS 10 | 0 | 0.25 | 0.90 |

"#;

    const FLEET: &str = r#"## Fleet: 3 proxies, 2 origins, one invalidation stream

Each proxy balances over both origins and follows the NATS JetStream stream (nats-server: v2.9.10); the origins publish their outbox. Latency in ms.

| propagation of a rename | renames | p50 | p99 | max | timeouts |
|---|---:|---:|---:|---:|---:|
| commit → applied on every node (`/stats` polled every 0.25 ms) | 30 | 2.35 | 6.79 | 14 | 0 |
| commit → applied on the first node | 30 | 1.23 | 4.57 | 9.13 |  |
| publication → applied, per node (`proxy_bus_propagation_seconds`, bucket-interpolated) | 90 | 0.75 | 2.40 | – |  |

2000 invalidations published straight to the stream (1000 in flight), acknowledged at 20000 per second; applied per node (first publication → the node's `applied_seq` at the last one):

| node | applied/s | seconds | most behind the acknowledged sequence |
|---|---:|---:|---:|
| proxy-1 | 16000 | 0.12 | 800 |
| proxy-2 (**did not catch up**) | 12 | 60.00 | 2000 |

Workload spread over the 3 nodes (requests in turn), each user echoing its last write's `LLMSelect-Invalidation-Id`; 16 connections, 5 s after a warm-up of every key on every node (skipped):

| requests | req/s | read hit rate | origin requests saved | writes | reads echoing a write | stale reads | errors |
|---:|---:|---:|---:|---:|---:|---:|---:|
| 1000 | 200 | 96.9 % | 94.0 % | 20 | 12 | 0 | 0 |

"#;
}
