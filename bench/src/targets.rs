//! The targets, decided from the measured figures.

use crate::http_bench::Target;
use crate::peers::{Load, Peer};
use crate::report::{Report, TargetCheck};

pub fn check(r: &Report) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    if let Some(h) = &r.http {
        for ratio in &h.ratios {
            out.push(TargetCheck {
                target: format!(
                    "proxy hits ≥ 1.2× nginx proxy_cache req/s ({} conns)",
                    ratio.connections
                ),
                measured: format!("{:.2}×", ratio.proxy_over_nginx_hit_rps),
                met: ratio.proxy_over_nginx_hit_rps >= 1.2,
            });
        }
        if let Some(ratio) = h.ratios.iter().find(|x| x.connections == 64) {
            out.push(TargetCheck {
                target: "proxy hit p99 ≤ 1 ms at 64 connections".into(),
                measured: format!("{:.2} ms", ratio.proxy_hit_p99_us / 1000.0),
                met: ratio.proxy_hit_p99_us <= 1000.0,
            });
        }
        for &c in &[1usize, 64] {
            let find = |label: &str| {
                h.wrk
                    .iter()
                    .find(|w| w.connections == c && w.target == label)
            };
            if let (Some(p), Some(n)) = (
                find(Target::ProxyHit.label()),
                find(Target::NginxHit.label()),
            ) {
                if n.rps > 0.0 {
                    out.push(TargetCheck {
                        target: format!("same, measured by wrk ({c} conns)"),
                        measured: format!(
                            "{:.2}× (p99 {:.2} ms vs {:.2} ms)",
                            p.rps / n.rps,
                            p.p99_us / 1000.0,
                            n.p99_us / 1000.0
                        ),
                        met: p.rps / n.rps >= 1.2,
                    });
                }
            }
        }
        let hit_origin: f64 = h
            .rows
            .iter()
            .filter(|x| x.target == Target::ProxyHit.label())
            .map(|x| x.origin_requests)
            .sum();
        out.push(TargetCheck {
            target: "proxy hits never reach the origin".into(),
            measured: format!("{hit_origin:.0} origin requests during hit runs"),
            met: hit_origin == 0.0,
        });
    }
    if let Some(c) = r.coalescing.iter().find(|c| c.server == "proxy") {
        out.push(TargetCheck {
            target: format!(
                "{} concurrent requests on one cold key → 1 origin request",
                c.concurrent_requests
            ),
            measured: format!(
                "{:.0} origin request(s), {} errors",
                c.origin_requests, c.errors
            ),
            met: c.origin_requests == 1.0 && c.errors == 0,
        });
    }
    for row in r
        .origin
        .iter()
        .filter(|x| x.indexes && x.endpoint.starts_with("conversation list"))
    {
        out.push(TargetCheck {
            target: format!(
                "{} at {} conns: p99 < 5 ms, ≤ 2 statements/request",
                row.endpoint, row.connections
            ),
            measured: format!(
                "p99 {:.2} ms, {:.1} statements",
                row.p99_us / 1000.0,
                row.statements_per_request
            ),
            met: row.p99_us < 5000.0 && row.statements_per_request <= 2.0,
        });
    }
    if let Some(w) = &r.workload {
        out.push(TargetCheck {
            target: "read-mostly mix: hit rate ≥ 95 %, 0 stale reads".into(),
            measured: format!("{:.1} %, {} stale reads", w.hit_rate * 100.0, w.stale_reads),
            met: w.hit_rate >= 0.95 && w.stale_reads == 0,
        });
    }
    if let Some(p) = &r.peers {
        let c = p.connections;
        if let Some(h) = p.row(Load::SmallHit, Peer::Proxy) {
            out.push(TargetCheck {
                target: format!(
                    "1 KiB hits at {c} connections: ≥ 1.2× nginx and ≥ 1.0× HAProxy req/s"
                ),
                measured: format!("{:.2}× nginx, {:.2}× HAProxy", h.over_nginx, h.over_haproxy),
                met: h.over_nginx >= 1.2 && h.over_haproxy >= 1.0,
            });
            out.push(TargetCheck {
                target: "server CPU per 1 KiB hit ≤ 15 µs".into(),
                measured: format!("{:.1} µs", h.cpu_us),
                met: h.cpu_us <= 15.0,
            });
        }
        if let Some(n) = p.row(Load::NoStore, Peer::Proxy) {
            out.push(TargetCheck {
                target: "`no-store` pass-through: ≥ 1.0× HAProxy req/s".into(),
                measured: format!(
                    "{:.2}× HAProxy ({:.2}× nginx)",
                    n.over_haproxy, n.over_nginx
                ),
                met: n.over_haproxy >= 1.0,
            });
            out.push(TargetCheck {
                target: "proxy CPU per pass-through request ≤ 40 µs".into(),
                measured: format!("{:.1} µs (+ {:.1} µs origin)", n.cpu_us, n.origin_cpu_us),
                met: n.cpu_us <= 40.0,
            });
        }
        if let Some(m) = p.row(Load::Miss, Peer::Proxy) {
            out.push(TargetCheck {
                target: "1 KiB misses (a new key per request): ≥ 1.0× HAProxy req/s".into(),
                measured: format!(
                    "{:.2}× HAProxy ({:.2}× nginx); {:.1} µs of proxy CPU per miss",
                    m.over_haproxy, m.over_nginx, m.cpu_us
                ),
                met: m.over_haproxy >= 1.0,
            });
        }
        if let Some(b) = p.row(Load::BigHit, Peer::Proxy) {
            out.push(TargetCheck {
                target: "64 KiB hits: ≥ 1.0× HAProxy req/s".into(),
                measured: format!("{:.2}× HAProxy", b.over_haproxy),
                met: b.over_haproxy >= 1.0,
            });
        }
        if let Some(m) = &p.memory {
            out.push(TargetCheck {
                target: "memory per cached entry overhead (beyond body and header bytes) reported"
                    .into(),
                measured: format!(
                    "{:.0} B per entry ({} entries stored)",
                    m.overhead_bytes, m.stored
                ),
                met: m.overhead_bytes.is_finite(),
            });
        }
        let leaked: Vec<String> = p
            .rows
            .iter()
            .filter(|r| r.load.is_hit() && r.peer != Peer::Responder && r.origin_requests > 0)
            .map(|r| format!("{} {}", r.peer.label(), r.load.label()))
            .collect();
        out.push(TargetCheck {
            target: "peer hit runs never reach the origin (every cache)".into(),
            measured: if leaked.is_empty() {
                "0 origin requests".into()
            } else {
                format!("origin requests during: {}", leaked.join(", "))
            },
            met: leaked.is_empty(),
        });
    }
    if let (Some(p), Some(n)) = (
        r.coalescing.iter().find(|c| c.server == "proxy"),
        r.coalescing
            .iter()
            .find(|c| c.server == "nginx proxy_cache"),
    ) {
        out.push(TargetCheck {
            target: format!(
                "{} concurrent requests on one cold key: p50 within 2× nginx's",
                p.concurrent_requests
            ),
            measured: format!(
                "p50 {:.1} ms vs {:.1} ms ({:.2}×)",
                p.p50_us / 1000.0,
                n.p50_us / 1000.0,
                p.p50_us / n.p50_us
            ),
            met: p.p50_us <= 2.0 * n.p50_us,
        });
    }
    if let Some(p) = &r.peers {
        let of = |peer| p.slow_stampedes.iter().find(|s| s.peer == peer);
        if let (Some(proxy), Some(nginx)) = (of(Peer::Proxy), of(Peer::Nginx)) {
            out.push(TargetCheck {
                target: format!(
                    "{} concurrent requests on one cold key, origin answering after {} ms: p50 within 2× nginx's",
                    proxy.requests,
                    crate::responder::SLOW.as_millis()
                ),
                measured: format!(
                    "p50 {:.1} ms vs {:.1} ms ({:.2}×), {} vs {} origin requests",
                    proxy.p50_us / 1000.0,
                    nginx.p50_us / 1000.0,
                    proxy.p50_us / nginx.p50_us,
                    proxy.origin_requests,
                    nginx.origin_requests
                ),
                met: proxy.p50_us <= 2.0 * nginx.p50_us,
            });
        }
    }
    if let Some(f) = &r.fleet {
        let lost =
            f.propagation.timeouts + f.throughput.nodes.iter().filter(|n| n.timed_out).count();
        out.push(TargetCheck {
            target: format!(
                "fleet of {} nodes: every invalidation applied on every node, 0 stale reads (read-your-writes on any node)",
                f.shape.proxies
            ),
            measured: format!(
                "{} renames p99 {:.2} ms to all nodes, {lost} not applied; {} stale reads",
                f.propagation.renames,
                f.propagation.all_nodes.p99_us / 1000.0,
                f.workload.stale_reads
            ),
            met: lost == 0 && f.workload.stale_reads == 0,
        });
    }
    out
}
