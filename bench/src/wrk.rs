//! A second opinion from `wrk` (C, epoll) on the hit figures, so a limit of our own load
//! generator cannot hide behind the ratios. It runs with this process's CPU affinity, i.e. on the
//! load generator's CPUs.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct WrkRow {
    pub target: String,
    pub connections: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub non_2xx: u64,
    pub socket_errors: String,
}

/// `12.34us` / `1.20ms` / `2.00s` → microseconds.
fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1_000.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1_000_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

/// Reads requests/s and the 50 % / 99 % latency lines of `wrk --latency` output.
pub fn parse(target: &str, connections: usize, out: &str) -> WrkRow {
    let mut row = WrkRow {
        target: target.to_string(),
        connections,
        rps: 0.0,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        non_2xx: 0,
        socket_errors: String::new(),
    };
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            row.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("50%") {
            row.p50_us = parse_duration_us(v).unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("99%") {
            row.p99_us = parse_duration_us(v).unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            row.non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            row.socket_errors = v.trim().to_string();
        }
    }
    row
}

/// Runs `wrk -t1 -c<connections> -d<duration> --latency http://<addr><path>`.
pub async fn run(
    wrk: &str,
    target: &str,
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<WrkRow> {
    let secs = duration.as_secs().max(1);
    let out = tokio::task::spawn_blocking({
        let wrk = wrk.to_string();
        let url = format!("http://{addr}{path}");
        move || {
            Command::new(wrk)
                .args([
                    "-t1",
                    &format!("-c{connections}"),
                    &format!("-d{secs}s"),
                    "--latency",
                ])
                .arg(url)
                .output()
        }
    })
    .await??;
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(parse(
        target,
        connections,
        &String::from_utf8_lossy(&out.stdout),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "  Latency Distribution\n     50%  120.00us\n     75%  1.50ms\n     99%    2.10ms\n  Non-2xx or 3xx responses: 3\nRequests/sec:  45678.90\n";
        let r = parse("x", 64, out);
        assert_eq!(r.rps, 45678.90);
        assert_eq!(r.p50_us, 120.0);
        assert_eq!(r.p99_us, 2100.0);
        assert_eq!(r.non_2xx, 3);
    }
}
