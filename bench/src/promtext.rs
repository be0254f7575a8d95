//! Reading counters out of Prometheus text exposition (the origin's `/metrics`).

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
}
