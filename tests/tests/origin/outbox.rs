//! The transactional outbox of fleet invalidations and its relay (issue 11), against a private
//! nats-server: no bus, no outbox; with a bus, a write's response names its outbox id and the
//! same invalidation arrives on the stream; a write made while the bus is down is published when
//! it is back; several instances publish each row once, and a surviving instance takes over; ids
//! are commit-ordered.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use llmselect_e2e::db::TestDb;
use llmselect_e2e::fake_llm::FakeConfig;
use llmselect_e2e::nats::{TestNats, STREAM, SUBJECT};
use llmselect_e2e::origin::{TestOrigin, TestUser};
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually_true as eventually;
use llmselect_origin::Config;
use reqwest::Method;
use serde_json::{json, Value};

/// One message of the invalidation stream.
#[derive(Debug, Clone)]
struct StreamMsg {
    msg_id: i64,
    body: Value,
}

/// Every message of the stream, in stream order (none when the stream does not exist yet).
async fn stream_messages(nats: &TestNats) -> Vec<StreamMsg> {
    let js = nats.jetstream().await;
    let Ok(stream) = js.get_stream(STREAM).await else {
        return Vec::new();
    };
    let info = stream.get_info().await.expect("stream info");
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let m = stream.get_raw_message(seq).await.expect("stream message");
        assert_eq!(m.subject.as_str(), SUBJECT);
        let msg_id = m
            .headers
            .get("Nats-Msg-Id")
            .expect("Nats-Msg-Id")
            .as_str()
            .parse()
            .expect("a decimal outbox id");
        out.push(StreamMsg {
            msg_id,
            body: serde_json::from_slice(&m.payload).expect("JSON body"),
        });
    }
    out
}

/// The outbox ids of the stream's messages, in stream order.
async fn published_ids(nats: &TestNats) -> Vec<i64> {
    stream_messages(nats)
        .await
        .iter()
        .map(|m| m.msg_id)
        .collect()
}

/// Waits until the relay has published and deleted every outbox row.
async fn outbox_drained(db: &TestDb, what: &str) {
    eventually(what, || async { outbox_ids(db).await.is_empty() }).await;
}

async fn outbox_ids(db: &TestDb) -> Vec<i64> {
    db.client()
        .await
        .query("SELECT id FROM cache_invalidations ORDER BY id", &[])
        .await
        .expect("outbox rows")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The relay settings of an origin on the stack's bus (fallback poll `poll_ms`).
fn relay(cfg: &mut Config, poll_ms: u64) {
    cfg.bus.relay_poll_ms = poll_ms;
    cfg.bus.publish_timeout_ms = 500;
}

/// A private nats-server and an origin on it (relay fallback poll `poll_ms`).
async fn on_bus(poll_ms: u64) -> Stack {
    Stack::builder()
        .bus()
        .origin(move |cfg| relay(cfg, poll_ms))
        .start()
        .await
}

/// The `LLMSelect-Invalidation-Id` of a response.
fn invalidation_id(r: &reqwest::Response) -> Option<i64> {
    r.headers()
        .get("llmselect-invalidation-id")
        .map(|v| v.to_str().unwrap().parse().expect("a decimal id"))
}

/// The groups of `Cache-Group-Invalidation` (`"a", "b"`).
fn invalidated_groups(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get("cache-group-invalidation")
        .expect("Cache-Group-Invalidation")
        .to_str()
        .unwrap()
        .split(',')
        .map(|g| g.trim().trim_matches('"').to_string())
        .collect()
}

/// Renames conversation `id` as `user`; asserts a 200.
async fn rename(o: &TestOrigin, user: &TestUser, id: &str, title: &str) -> reqwest::Response {
    let r = o
        .request_as(user, Method::PATCH, &format!("/api/v1/conversations/{id}"))
        .json(&json!({ "title": title }))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), 200);
    r
}

/// The value of an unlabelled metric.
async fn metric(o: &TestOrigin, name: &str) -> f64 {
    o.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name}"))
}

#[tokio::test]
async fn without_a_bus_a_rename_writes_no_outbox_row_and_names_no_invalidation_id() {
    let s = Stack::builder().origin(|_| {}).user("solo").start().await;
    let (o, u) = (s.origin(), s.user());
    let id = o.create_conversation(u, Some("a")).await;
    let r = rename(o, u, &id, "b").await;
    assert!(r.headers().contains_key("cache-group-invalidation"));
    assert_eq!(invalidation_id(&r), None);
    assert!(outbox_ids(&o.db).await.is_empty());
    assert_eq!(metric(o, "origin_outbox_published_total").await, 0.0);
}

#[tokio::test]
async fn a_rename_is_published_with_its_outbox_id_groups_and_path_then_its_row_deleted() {
    // A poll slower than the test: publication within it proves the relay is woken by the commit.
    let s = on_bus(60_000).await;
    let (nats, o) = (s.bus(), s.origin());
    let u = o.user("alice").await;
    let id = o.create_conversation(&u, Some("a")).await;
    let started = Instant::now();
    let r = rename(o, &u, &id, "b").await;
    let n = invalidation_id(&r).expect("LLMSelect-Invalidation-Id");
    let groups = invalidated_groups(&r);
    assert_eq!(groups.len(), 2, "{groups:?}");
    eventually("the rename is on the stream", || async {
        stream_messages(nats).await.iter().any(|m| m.msg_id == n)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let messages = stream_messages(nats).await;
    let m = messages.iter().find(|m| m.msg_id == n).unwrap();
    assert_eq!(
        m.body,
        json!({"groups": groups, "paths": [format!("/api/v1/conversations/{id}")]})
    );
    // The creation before it was published first, with its Location.
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].msg_id < n);
    assert_eq!(
        messages[0].body["paths"],
        json!([
            "/api/v1/conversations",
            format!("/api/v1/conversations/{id}")
        ])
    );
    outbox_drained(&o.db, "the published rows are deleted").await;
    assert_eq!(metric(o, "origin_outbox_published_total").await, 2.0);
    assert_eq!(metric(o, "origin_outbox_pending").await, 0.0);
    assert!(o
        .metrics_text()
        .await
        .contains("origin_outbox_publish_latency_seconds_count 2"));
}

#[tokio::test]
async fn a_write_made_while_the_bus_is_down_stays_in_the_outbox_until_it_is_back() {
    let s = on_bus(100).await;
    let (nats, o) = (s.bus(), s.origin());
    let u = o.user("bob").await;
    let id = o.create_conversation(&u, Some("a")).await;
    outbox_drained(&o.db, "the creation is published").await;
    nats.stop();
    // The write never waits for the bus.
    let started = Instant::now();
    let r = rename(o, &u, &id, "offline").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let n = invalidation_id(&r).expect("LLMSelect-Invalidation-Id");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        outbox_ids(&o.db).await,
        vec![n],
        "the row waits for the bus"
    );
    assert!(metric(o, "origin_outbox_publish_errors_total").await >= 1.0);
    nats.restart().await;
    eventually("the row is published", || async {
        stream_messages(nats).await.iter().any(|m| m.msg_id == n)
    })
    .await;
    outbox_drained(&o.db, "and deleted").await;
    let ids = published_ids(nats).await;
    assert_eq!(ids.len(), 2, "published once each: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_publish_each_row_once_and_a_survivor_takes_over() {
    let s = on_bus(100).await;
    let o2 = s.start_origin(|cfg| relay(cfg, 100)).await;
    let (nats, o1, db) = (s.bus(), s.origin(), &s.origin().db);
    let u = o1.user("carol").await;
    let id = o1.create_conversation(&u, Some("t")).await;
    let mut written = Vec::new();
    for i in 0..20 {
        let o = if i % 2 == 0 { o1 } else { &o2 };
        let r = rename(o, &u, &id, &format!("t{i}")).await;
        written.push(invalidation_id(&r).expect("id"));
    }
    outbox_drained(db, "every row is published").await;
    let published = published_ids(nats).await;
    assert_eq!(published.len(), 21, "one message per row: {published:?}");
    let unique: HashSet<i64> = published.iter().copied().collect();
    assert_eq!(unique.len(), 21);
    assert!(written.iter().all(|n| unique.contains(n)));
    assert!(published.windows(2).all(|w| w[0] < w[1]), "{published:?}");

    // Committed, not yet published, and the instance that wrote it goes away.
    nats.stop();
    let r = rename(o1, &u, &id, "failover").await;
    let n = invalidation_id(&r).expect("id");
    o1.stop().await;
    assert_eq!(outbox_ids(db).await, vec![n]);
    nats.restart().await;
    outbox_drained(db, "the survivor publishes the row").await;
    let published = published_ids(nats).await;
    assert_eq!(published.len(), 22, "{published:?}");
    assert_eq!(published.last(), Some(&n));
    assert!(metric(&o2, "origin_outbox_published_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_ids_are_commit_ordered_under_concurrent_writers() {
    let s = Stack::builder()
        .bus()
        .origin(|cfg| {
            relay(cfg, 100);
            cfg.database.pool_max_size = 16;
        })
        .start()
        .await;
    let (nats, o) = (s.bus(), s.origin());
    // Several users: one user's writes also serialise on their `users` row (cache_version).
    let mut conversations = Vec::new();
    for n in 0..4 {
        let u = o.user(&format!("dave{n}")).await;
        for i in 0..2 {
            let c = o.create_conversation(&u, Some(&format!("c{i}"))).await;
            conversations.push((u.bearer(), c));
        }
    }
    let mut tasks = Vec::new();
    for round in 0..6 {
        for (i, (bearer, c)) in conversations.iter().enumerate() {
            let (http, url, bearer) = (
                o.http.clone(),
                o.url(&format!("/api/v1/conversations/{c}/messages")),
                bearer.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(url)
                    .header("Authorization", bearer)
                    .json(&json!({"role": "user", "content": format!("m{round}-{i}")}))
                    .send()
                    .await
                    .expect("POST message");
                assert_eq!(r.status(), 201);
                invalidation_id(&r).expect("id")
            }));
        }
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.unwrap());
    }
    outbox_drained(&o.db, "every row is published").await;
    let published = published_ids(nats).await;
    assert_eq!(published.len(), 8 + written.len(), "{published:?}");
    assert!(
        published.windows(2).all(|w| w[0] < w[1]),
        "stream order is id order: {published:?}"
    );
}

/// A writer that is slow between taking its outbox id and committing (a trigger sleeps in its
/// insert) must not be overtaken: a later writer gets a larger id and commits after it, so the
/// relay never publishes a larger id before a smaller one becomes visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_commit_is_not_overtaken_by_a_later_id() {
    let s = on_bus(50).await;
    let (nats, o) = (s.bus(), s.origin());
    // Two users: the writes of one user also serialise on their `users` row (cache_version).
    let u = o.user("erin").await;
    let v = o.user("frank").await;
    let slow = o.create_conversation(&u, Some("slow")).await;
    let fast = o.create_conversation(&v, Some("fast")).await;
    outbox_drained(&o.db, "the creations are published").await;
    o.db.client()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION slow_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.paths[1] = '/api/v1/conversations/{slow}' THEN PERFORM pg_sleep(0.5); END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER slow_outbox BEFORE INSERT ON cache_invalidations
               FOR EACH ROW EXECUTE FUNCTION slow_outbox();"
        ))
        .await
        .expect("trigger");
    let (o_http, slow_url, bearer) = (
        o.http.clone(),
        o.url(&format!("/api/v1/conversations/{slow}")),
        u.bearer(),
    );
    let slow_write = tokio::spawn(async move {
        let r = o_http
            .patch(slow_url)
            .header("Authorization", bearer)
            .json(&json!({"title": "slowly"}))
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), 200);
        invalidation_id(&r).expect("id")
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let fast_id = invalidation_id(&rename(o, &v, &fast, "quickly").await).expect("id");
    let slow_id = slow_write.await.unwrap();
    assert!(slow_id < fast_id, "{slow_id} < {fast_id}");
    outbox_drained(&o.db, "both are published").await;
    let published = published_ids(nats).await;
    assert_eq!(published.len(), 4, "{published:?}");
    assert!(
        published.windows(2).all(|w| w[0] < w[1]),
        "stream order is id order: {published:?}"
    );
}

/// `/chat/stream` commits twice (the user message before the headers, the answer before `done`)
/// and `/compare/stream` once (before `done`): each commit carries its own outbox row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_publish_the_commit_before_their_last_event() {
    let s = Stack::builder()
        .bus()
        .fake_llm(FakeConfig::instant())
        .origin(|cfg| {
            relay(cfg, 60_000);
            cfg.providers.openai_api_key = Some("sys-test-key".into());
        })
        .user("grace")
        .start()
        .await;
    let (nats, o, u) = (s.bus(), s.origin(), s.user());
    let r = o
        .request_as(u, Method::POST, "/api/v1/chat/stream")
        .json(&json!({"provider": "openai", "model": "gpt-4o",
                      "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .expect("chat/stream");
    assert_eq!(r.status(), 200);
    let before = invalidation_id(&r).expect("the pre-stream commit's id");
    let groups = invalidated_groups(&r);
    let body = r.text().await.unwrap();
    assert!(body.contains("\"done\":true"), "{body}");
    let r = o
        .request_as(u, Method::POST, "/api/v1/compare/stream")
        .json(&json!({"prompt": "Hi", "providers": [{"provider": "openai", "model": "gpt-4o"}]}))
        .send()
        .await
        .expect("compare/stream");
    assert_eq!(
        invalidation_id(&r),
        None,
        "nothing is written before its headers"
    );
    let compare_groups = invalidated_groups(&r);
    let body = r.text().await.unwrap();
    assert!(body.contains("comparisonId"), "{body}");
    eventually("the three commits are published", || async {
        stream_messages(nats).await.len() == 3
    })
    .await;
    let messages = stream_messages(nats).await;
    assert_eq!(messages[0].msg_id, before);
    assert!(messages[0].msg_id < messages[1].msg_id && messages[1].msg_id < messages[2].msg_id);
    for m in &messages[..2] {
        assert_eq!(
            m.body,
            json!({"groups": groups, "paths": ["/api/v1/chat/stream"]})
        );
    }
    assert_eq!(
        messages[2].body,
        json!({"groups": compare_groups, "paths": ["/api/v1/compare/stream"]})
    );
}
