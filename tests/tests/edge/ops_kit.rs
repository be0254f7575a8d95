//! The observability kit under `ops/`: `promtool` accepts the alerting rules and the scrape
//! configuration, and every metric the rules and the Grafana dashboard name exists in a live
//! scrape of the proxy and the origin (after traffic through both, an LLM call and a purge).

use super::*;
use llmselect_e2e::fake_llm::FakeConfig;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

/// Runs `promtool` with `args`; panics with its output when it fails.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (Debian package prometheus; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The metric names of the Prometheus text exposition (histogram series map to their family).
fn exposed(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The metric names an expression uses: identifiers of our two services, with the series
/// suffixes of histograms reduced to their family.
fn used_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (expr[i..].starts_with("proxy_") || expr[i..].starts_with("origin_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let end = expr[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| i + n);
        let name = &expr[i..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_string());
        i = end;
    }
    names
}

/// Every `expr` in the rules file and the dashboard.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules = std::fs::read_to_string(ops_dir().join("prometheus/alerts.yml")).unwrap();
    // `expr: |` blocks and one-line exprs: the metric names are what matters, so take every line
    // of the file that is not a comment, annotation or label
    for line in rules.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.starts_with("summary:") || t.starts_with("runbook:") {
            continue;
        }
        out.push(("alerts.yml".to_string(), t.to_string()));
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(ops_dir().join("grafana/llmselect-edge.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("dashboard panel {:?}", panel["title"]),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_use_only_metrics_the_services_expose() {
    promtool(&[
        "check",
        "rules",
        ops_dir().join("prometheus/alerts.yml").to_str().unwrap(),
    ]);
    promtool(&[
        "check",
        "config",
        "--syntax-only",
        ops_dir()
            .join("prometheus/prometheus.yml")
            .to_str()
            .unwrap(),
    ]);

    let s = Stack::builder()
        .fake_llm(FakeConfig::instant())
        .origin(|cfg| cfg.providers.openai_api_key = Some("sys-test-key".into()))
        .user("alice")
        .proxy(|_| {})
        .start()
        .await;
    let alice = s.user();
    // traffic through the proxy (a miss and a hit), a purge, an LLM call (plain and streamed)
    for _ in 0..2 {
        as_user(&s, alice, Method::GET, LIST).await;
    }
    let (status, _) = s.proxy().purge(json!({"all": true})).await;
    assert_eq!(status, 200);
    let chat = json!({"provider": "openai", "model": "gpt-4o",
                      "messages": [{"role": "user", "content": "Hi"}]});
    for path in ["/api/v1/chat", "/api/v1/chat/stream"] {
        let r = s
            .origin()
            .request_as(alice, Method::POST, path)
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
    }

    let proxy_scrape = s.proxy().metrics_text().await;
    let origin_scrape = s.origin().metrics_text().await;
    let mut exposed_names = exposed(&proxy_scrape);
    exposed_names.extend(exposed(&origin_scrape));

    let mut missing = Vec::new();
    let mut checked = BTreeSet::new();
    for (place, expr) in expressions() {
        for name in used_in(&expr) {
            if !exposed_names.contains(&name) {
                missing.push(format!("{place}: {name}"));
            }
            checked.insert(name);
        }
    }
    assert!(missing.is_empty(), "not in a live scrape: {missing:#?}");
    // the check saw the kit's main metrics (it cannot pass by reading nothing)
    for name in [
        "proxy_requests_total",
        "proxy_store_capacity_bytes",
        "origin_db_pool_pending_gets",
        "origin_llm_calls_total",
        "origin_llm_time_to_first_token_seconds",
    ] {
        assert!(checked.contains(name), "{name} is not used by the kit");
    }
}
