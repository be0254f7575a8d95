//! `/health` (real round trip, pool state, 503 and recovery), pool exhaustion, `/metrics`, and the
//! split between the public port (readiness only, no `/metrics`) and the operations listener.

use std::net::SocketAddr;
use std::time::Duration;

use llmselect_e2e::db::TestDb;
use llmselect_e2e::http::header;
use llmselect_e2e::origin::spawn_origin;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually;
use serde_json::json;

use crate::support::{get, get_anonymous, get_ops, json, origin_with_user, Forwarder};

#[tokio::test]
async fn health_reports_database_and_pool() {
    let o = spawn_origin(|c| c.environment = "staging".into()).await;
    let r = get_ops(&o, "/health").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-store");
    let v = json(r).await;
    assert_eq!(v["status"], "ok");
    assert_eq!(v["environment"], "staging");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    let db = &v["database"];
    assert_eq!(db["connected"], true);
    assert_eq!(db["max_size"], 4);
    for key in [
        "pool_size",
        "connections",
        "checked_out",
        "checked_in",
        "overflow",
        "waiting",
        "timed_out",
    ] {
        assert!(db[key].is_number(), "{key}");
    }
    assert!(db["connections"].as_u64().unwrap() >= 1);
    o.stop().await;
}

fn pg_addr(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    let host = match u.host_str().unwrap() {
        "localhost" => "127.0.0.1",
        h => h,
    };
    format!("{host}:{}", u.port().unwrap_or(5432))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn health_goes_503_when_the_database_is_lost_and_recovers() {
    let db = TestDb::new().await;
    let fwd = Forwarder::start(pg_addr(db.url())).await;
    let mut via = url::Url::parse(db.url()).unwrap();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(fwd.addr.port())).unwrap();
    let s = Stack::builder()
        .database(db)
        .origin(|c| {
            c.database.url = via.to_string();
            c.database.pool_timeout_ms = 500;
            c.database.health_timeout_ms = 500;
        })
        .user("alice")
        .start()
        .await;
    let (o, u) = (s.origin(), s.user());
    let health = || async { get_ops(o, "/health").await };
    assert_eq!(health().await.status(), 200);

    fwd.cut();
    let body = eventually("health reports 503", || async {
        let r = health().await;
        (r.status() == 503).then_some(r)
    })
    .await;
    assert_eq!(header(&body, "cache-control"), "no-store");
    let v = json(body).await;
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["database"]["connected"], false);
    // The public port says only that it is not ready.
    let r = get_anonymous(o, "/health").await;
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await, json!({"status": "degraded"}));
    // Data endpoints answer a quick 503 JSON error, not a hang or a 500.
    let r = get(o, u, "/api/v1/conversations").await;
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["error"], "service_unavailable");

    fwd.restore();
    eventually("health recovers", || async {
        (health().await.status() == 200).then_some(())
    })
    .await;
    let r = get(o, u, "/api/v1/conversations").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn backends_terminated_by_the_server_are_replaced() {
    let s = origin_with_user("bob").await;
    let (o, u) = (s.origin(), s.user());
    assert_eq!(get(o, u, "/api/v1/conversations").await.status(), 200);
    let admin = o.db.admin_client().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&o.db.name()],
        )
        .await
        .unwrap();
    eventually("requests succeed again", || async {
        let r = get(o, u, "/api/v1/conversations").await;
        (r.status() == 200).then_some(())
    })
    .await;
    assert_eq!(get_anonymous(o, "/health").await.status(), 200);
}

#[tokio::test]
async fn pool_exhaustion_answers_503_quickly() {
    let o = spawn_origin(|c| {
        c.database.pool_max_size = 1;
        c.database.pool_timeout_ms = 300;
    })
    .await;
    let u = o.user("carol").await;
    // Hold a lock that the auth user load waits for, so one request keeps the only connection.
    let mut locker = o.db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let req = o.get_as(&u, "/api/v1/auth/me");
        async move { req.send().await.unwrap().status() }
    });
    let watcher = o.db.admin_client().await;
    let db_name = o.db.name().to_string();
    eventually("a request waits on the lock", || async {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db_name],
            )
            .await
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let r = get(&o, &u, "/api/v1/conversations").await;
    assert_eq!(r.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(
        json(r).await,
        json!({"error": "service_unavailable", "message": "Database connection pool exhausted; try again"})
    );
    tx.rollback().await.unwrap();
    assert_eq!(blocked.await.unwrap(), 200);
    let text = o.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l == "origin_db_pool_checkout_timeouts_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_use_route_templates_and_the_origin_prefix() {
    let s = origin_with_user("dan").await;
    let (o, u) = (s.origin(), s.user());
    let id = o.create_conversation(u, None).await;
    get(o, u, &format!("/api/v1/conversations/{id}")).await;
    get_anonymous(o, "/health").await;
    let r = get_ops(o, "/metrics").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert!(header(&r, "content-type").starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.contains(
        "origin_http_requests_total{route=\"GET /api/v1/conversations/{id}\",status=\"200\"} 1"
    ));
    assert!(!text.contains(&id), "raw paths never become labels");
    assert!(text.contains("origin_http_requests_total{route=\"GET /health\",status=\"200\"} 1"));
    assert!(text.contains("origin_http_request_duration_seconds_bucket{route=\"GET /health\""));
    assert!(text.contains(
        "origin_db_query_duration_seconds_count{statement=\"conversation_get_with_user\"} 1"
    ));
    for name in [
        "origin_db_pool_connections",
        "origin_db_pool_idle_connections",
        "origin_db_pool_in_use_connections",
        "origin_db_pool_pending_gets",
        "origin_db_slow_queries_total",
        "origin_http_slow_requests_total",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("origin_"), "{line}");
    }
}

#[tokio::test]
async fn the_public_port_has_no_metrics_and_a_minimal_health() {
    let o = spawn_origin(|c| c.environment = "staging".into()).await;
    let r = get_anonymous(&o, "/metrics").await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"], "not_found");
    let r = get_anonymous(&o, "/health").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(json(r).await, json!({"status": "ok"}), "no pool internals");

    // Both answer on the operations listener, which is another port.
    assert_ne!(o.metrics_addr.port(), o.addr.port());
    let r = get_ops(&o, "/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("origin_http_requests_total{route=\"unmatched\",status=\"404\"} 1"));
    let v = json(get_ops(&o, "/health").await).await;
    assert_eq!(v["environment"], "staging");
    assert_eq!(v["database"]["connected"], true);
    assert_eq!(get_ops(&o, "/api/v1/models").await.status(), 404);
}
