//! Slow-query and slow-request logs, `X-Response-Time` on every response.

use llmselect_e2e::http::header;
use llmselect_e2e::origin::{capture_logs, spawn_origin};
use reqwest::Method;

use crate::support::{get, get_anonymous};

fn is_response_time(v: &str) -> bool {
    let Some(num) = v.strip_suffix('s') else {
        return false;
    };
    let mut parts = num.split('.');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.len() == 3 && b.bytes().all(|c| c.is_ascii_digit()))
}

#[tokio::test]
async fn slow_queries_are_logged_without_parameters() {
    let logs = capture_logs();
    let o = spawn_origin(|c| c.database.slow_query_threshold_ms = 0).await;
    let u = o.user("alice").await;
    let r = get(&o, &u, "/api/v1/conversations?search=needle-secret").await;
    assert_eq!(r.status(), 200);
    let events = logs.events_named("slow_query");
    let auth = events
        .iter()
        .find(|e| e["fields"]["name"] == "user_by_id")
        .expect("the auth statement was logged");
    assert_eq!(auth["level"], "WARN");
    // Whitespace collapsed, cut at 200 characters.
    assert_eq!(
        auth["fields"]["statement"],
        "SELECT u.id, u.username, u.is_admin, u.cache_version, (EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = $2) OR u.token_generation <> $3) AS revoked, u.disabled_at IS NOT NULL AS disabled FROM user"
    );
    assert!(auth["fields"]["duration_ms"].is_number());
    let list = events
        .iter()
        .find(|e| e["fields"]["name"] == "conversation_search_page")
        .unwrap();
    assert_eq!(
        list["fields"]["statement"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        200,
        "truncated"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.to_string().contains("needle-secret")),
        "no parameters"
    );
    let text = o.metrics_text().await;
    let slow: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("origin_db_slow_queries_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(slow >= 3);
}

#[tokio::test]
async fn slow_requests_are_logged() {
    let logs = capture_logs();
    let o = spawn_origin(|c| c.http.slow_request_threshold_ms = 0).await;
    let r = get_anonymous(&o, "/api/v1/models?provider=openai").await;
    assert_eq!(r.status(), 200);
    let events = logs.events_named("slow_request");
    let e = events
        .iter()
        .find(|e| e["fields"]["path"] == "/api/v1/models")
        .expect("slow request event");
    assert_eq!(e["level"], "WARN");
    assert_eq!(e["fields"]["method"], "GET");
    assert_eq!(e["fields"]["status"], 200);
    assert_eq!(e["fields"]["remote_addr"], "127.0.0.1");
    assert!(e["fields"]["duration"].is_number());
}

#[tokio::test]
async fn every_response_has_x_response_time() {
    let o = spawn_origin(|c| c.http.max_body_bytes = 256).await;
    let u = o.user("bob").await;
    let etag = header(&get_anonymous(&o, "/api/v1/models").await, "etag");
    let requests = vec![
        o.http.get(o.url("/health")),
        o.http
            .get(o.url("/api/v1/models"))
            .header("If-None-Match", etag),
        o.http.get(o.url("/api/v1/missing")),
        o.http.get(o.url("/api/v1/conversations")),
        o.http.put(o.url("/api/v1/models")),
        o.http.request(Method::OPTIONS, o.url("/api/v1/models")),
        o.http
            .post(o.url("/api/v1/auth/login"))
            .header("Content-Type", "application/json")
            .body("x".repeat(1024)),
        o.get_as(&u, "/api/v1/conversations"),
    ];
    let mut statuses = Vec::new();
    for req in requests {
        let r = req.send().await.unwrap();
        let v = header(&r, "x-response-time");
        assert!(is_response_time(&v), "{} {v:?}", r.url());
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 304, 404, 401, 405, 200, 413, 200]);
}
