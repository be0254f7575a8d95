//! Reading counters and histograms out of Prometheus text exposition (the origin's and the
//! proxies' `/metrics`).

use std::net::SocketAddr;

/// Sum of every sample of metric `name` whose labels include all of `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            if all {
                value.trim().parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// The cumulative buckets `(le, count)` of histogram `name` (its `<name>_bucket` series summed
/// over any other labels), by ascending `le`; `+Inf` is `f64::INFINITY`.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let series = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&series)) {
        let Some((labels, value)) = line[series.len()..].rsplit_once(' ') else {
            continue;
        };
        let le = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("le=\""))
            .map(|v| v.trim_end_matches('}').trim_end_matches('"'));
        let le = match le {
            Some("+Inf") => f64::INFINITY,
            Some(v) => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
            None => continue,
        };
        let Ok(count) = value.trim().parse::<f64>() else {
            continue;
        };
        match out.iter_mut().find(|(l, _)| *l == le) {
            Some(b) => b.1 += count,
            None => out.push((le, count)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Quantile `q` of cumulative `buckets` as Prometheus' `histogram_quantile` estimates it: linear
/// within the bucket that holds the rank (from 0 for the first), the highest finite bound when
/// the rank falls into `+Inf`; NaN without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower;
            }
            if count == below {
                return le;
            }
            return lower + (le - lower) * (rank - below) / (count - below);
        }
        (lower, below) = (le, count);
    }
    lower
}

/// The origin's metrics page, from its operations listener `ops` (`--metrics-listen`).
pub async fn scrape(ops: SocketAddr) -> anyhow::Result<String> {
    let reply = crate::client::get(ops, "/metrics", None).await?;
    anyhow::ensure!(reply.status.is_success(), "/metrics: {}", reply.status);
    Ok(reply.text())
}

/// `origin_http_requests_total` of one route (all statuses), or of every route (scrapes are not
/// counted: they go to the operations listener `ops`).
pub async fn origin_requests(ops: SocketAddr, route: Option<&str>) -> anyhow::Result<f64> {
    let text = scrape(ops).await?;
    let labels: &[(&str, &str)] = match &route {
        Some(r) => &[("route", r)],
        None => &[],
    };
    Ok(sum(&text, "origin_http_requests_total", labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_series() {
        let text = "# HELP x\nreq_total{route=\"a\",status=\"200\"} 3\nreq_total{route=\"a\",status=\"404\"} 1\nreq_total{route=\"b\",status=\"200\"} 5\nother 9\n";
        assert_eq!(sum(text, "req_total", &[("route", "a")]), 4.0);
        assert_eq!(sum(text, "req_total", &[]), 9.0);
        assert_eq!(sum(text, "other", &[]), 9.0);
    }

    #[test]
    fn histogram_buckets_and_quantiles() {
        let text = "# TYPE h histogram\nh_bucket{le=\"0.001\"} 0\nh_bucket{le=\"0.002\"} 50\nh_bucket{le=\"0.004\"} 100\nh_bucket{le=\"+Inf\"} 100\nh_sum 0.2\nh_count 100\n";
        let b = buckets(text, "h");
        assert_eq!(
            b,
            vec![
                (0.001, 0.0),
                (0.002, 50.0),
                (0.004, 100.0),
                (f64::INFINITY, 100.0)
            ]
        );
        assert!((histogram_quantile(0.5, &b) - 0.002).abs() < 1e-12);
        assert!((histogram_quantile(0.75, &b) - 0.003).abs() < 1e-12);
        assert!((histogram_quantile(0.25, &b) - 0.0015).abs() < 1e-12);
        let over = [(0.001, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &over), 0.001);
        assert!(histogram_quantile(0.5, &[]).is_nan());
    }
}
