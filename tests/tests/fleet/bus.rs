//! Proxy nodes on one invalidation stream, in front of the scripted origin: admin
//! purges reach every node, origin messages apply in order, duplicates and garbage are harmless,
//! a partitioned node revalidates what it cannot vouch for and catches up, a node that missed
//! dropped messages purges everything softly, and a client's writes are read back on any node.

use crate::{applied_seq, connected};
use llmselect_e2e::http::send;
use llmselect_e2e::nats::{Partition, TestNats, STREAM};
use llmselect_e2e::proxy::spawn_proxy;
use llmselect_e2e::scripted_origin::{Route, ScriptedOrigin};
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually_true;
use serde_json::json;

/// The scripted origin and a private nats-server; the tests start their nodes.
async fn fleet() -> Stack {
    Stack::builder().scripted_origin().bus().start().await
}

fn grouped(group: &str) -> Route {
    Route::ok("{n}")
        .cache("max-age=600")
        .etag("\"e\"")
        .header("cache-groups", &format!("\"{group}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_purge_on_one_node_reaches_every_node() {
    let s = fleet().await;
    let origin = s.scripted();
    origin.route("GET", "/g", grouped("g"));
    let (a, b) = (s.start_proxy(|_| {}).await, s.start_proxy(|_| {}).await);
    connected(&a).await;
    connected(&b).await;
    for p in [&a, &b] {
        send(p.get("/g")).await;
        assert_eq!(send(p.get("/g")).await.x_cache(), "HIT");
    }
    let (status, body) = a.purge(json!({"groups": ["g"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fleet"], true);
    let seq = body["seq"]
        .as_u64()
        .expect("the purge names its stream sequence");
    eventually_true("B applied the purge", || async {
        applied_seq(&b).await >= seq
    })
    .await;
    assert_eq!(send(b.get("/g")).await.x_cache(), "MISS");
    assert_eq!(send(a.get("/g")).await.x_cache(), "MISS");
    // a local purge stays on its node
    let (status, body) = a.purge(json!({"groups": ["g"], "local": true})).await;
    assert_eq!((status, body["fleet"].as_bool()), (200, Some(false)));
    assert_eq!(send(a.get("/g")).await.x_cache(), "MISS");
    assert_eq!(send(b.get("/g")).await.x_cache(), "HIT");
    assert_eq!(applied_seq(&b).await, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_messages_apply_in_order_and_duplicates_or_garbage_are_harmless() {
    let s = fleet().await;
    let (nats, origin) = (s.bus(), s.scripted());
    origin.route("GET", "/u/1", grouped("user:1"));
    origin.route("GET", "/u/2", grouped("user:2"));
    let a = s.start_proxy(|_| {}).await;
    connected(&a).await;
    for path in ["/u/1", "/u/2"] {
        send(a.get(path)).await;
        assert_eq!(send(a.get(path)).await.x_cache(), "HIT", "{path}");
    }
    let s1 = nats.publish("1", json!({"groups": ["user:1"]})).await;
    eventually_true("applied", || async { applied_seq(&a).await == s1 }).await;
    assert_eq!(send(a.get("/u/1")).await.x_cache(), "MISS");
    assert_eq!(send(a.get("/u/2")).await.x_cache(), "HIT");
    // the relay publishing row 1 again (a crash before it deleted the row): dropped by the server
    let again = nats.publish("1", json!({"groups": ["user:1"]})).await;
    assert_eq!(again, s1, "JetStream deduplicated the message");
    assert_eq!(send(a.get("/u/1")).await.x_cache(), "HIT");
    // a message that does not parse is counted and skipped
    let js = nats.jetstream().await;
    let garbage = js
        .publish(llmselect_e2e::nats::SUBJECT, "not an invalidation".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let by_path = nats.publish("2", json!({"paths": ["/u/2"]})).await;
    assert!(by_path > garbage);
    eventually_true("applied past the garbage", || async {
        applied_seq(&a).await == by_path
    })
    .await;
    let stats = a.stats().await;
    assert_eq!(stats["bus"]["unparsable"], 1);
    assert_eq!(stats["bus"]["applied_outbox_id"], 2);
    assert_eq!(send(a.get("/u/1")).await.x_cache(), "HIT");
    assert_eq!(send(a.get("/u/2")).await.x_cache(), "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_revalidates_grouped_entries_and_catches_up() {
    let s = fleet().await;
    let (nats, origin) = (s.bus(), s.scripted());
    let partition = Partition::start(nats.port).await;
    origin.route("GET", "/grp", grouped("g"));
    origin.route("GET", "/pub", Route::ok("{n}").cache("public, max-age=600"));
    let a = s.start_proxy(|_| {}).await;
    let b = s.start_proxy(|c| c.bus.url = Some(partition.url())).await;
    connected(&a).await;
    connected(&b).await;
    for path in ["/grp", "/pub"] {
        send(b.get(path)).await;
        assert_eq!(send(b.get(path)).await.x_cache(), "HIT");
    }
    partition.cut();
    eventually_true("B knows it cannot vouch for grouped entries", || async {
        b.stats().await["bus"]["state"] != "connected"
    })
    .await;
    let before = origin.count("/grp");
    let r = send(b.get("/grp")).await;
    assert_eq!(r.x_cache(), "REVALIDATED", "asked the origin first");
    assert_eq!(origin.count("/grp"), before + 1);
    assert_eq!(
        send(b.get("/pub")).await.x_cache(),
        "HIT",
        "public entries keep their TTL"
    );
    // meanwhile the group is purged through A
    let (status, body) = a.purge(json!({"groups": ["g"]})).await;
    assert_eq!(status, 200);
    let seq = body["seq"].as_u64().unwrap();
    partition.heal();
    eventually_true("B caught up", || async { applied_seq(&b).await >= seq }).await;
    connected(&b).await;
    assert_eq!(
        send(b.get("/grp")).await.x_cache(),
        "MISS",
        "the purge reached B"
    );
    assert_eq!(
        send(b.get("/grp")).await.x_cache(),
        "HIT",
        "caught up: hits again"
    );
    assert!(b.stats().await["bus"]["reconnects"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_dropped_messages_purges_everything_softly() {
    let s = fleet().await;
    let (nats, origin) = (s.bus(), s.scripted());
    let partition = Partition::start(nats.port).await;
    origin.route(
        "GET",
        "/a",
        Route::ok("{n}").cache("max-age=600").etag("\"a\""),
    );
    let b = s.start_proxy(|c| c.bus.url = Some(partition.url())).await;
    connected(&b).await;
    send(b.get("/a")).await;
    assert_eq!(send(b.get("/a")).await.x_cache(), "HIT");
    partition.cut();
    eventually_true("B lost the bus", || async {
        b.stats().await["bus"]["state"] != "connected"
    })
    .await;
    for id in ["10", "11", "12"] {
        nats.publish(id, json!({"groups": ["unrelated"]})).await;
    }
    // the stream drops them before B is back (as max_age would during a long partition)
    let mut stream = nats.jetstream().await.get_stream(STREAM).await.unwrap();
    stream.purge().await.unwrap();
    assert!(stream.info().await.unwrap().state.messages == 0);
    partition.heal();
    eventually_true("B noticed the gap", || async {
        b.stats().await["bus"]["gaps"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    connected(&b).await;
    let before = origin.count("/a");
    let r = send(b.get("/a")).await;
    assert_eq!(r.x_cache(), "REVALIDATED", "everything was marked stale");
    assert_eq!(origin.count("/a"), before + 1);
    assert_eq!(send(b.get("/a")).await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_write_on_another_node() {
    let s = fleet().await;
    let (nats, origin) = (s.bus(), s.scripted());
    origin.route("GET", "/items", grouped("items"));
    origin.route(
        "POST",
        "/items",
        Route::status(201, "created")
            .header("cache-group-invalidation", "\"items\"")
            .header("llmselect-invalidation-id", "5"),
    );
    let (a, b) = (s.start_proxy(|_| {}).await, s.start_proxy(|_| {}).await);
    connected(&a).await;
    connected(&b).await;
    send(b.get("/items")).await;
    assert_eq!(send(b.get("/items")).await.x_cache(), "HIT");
    let write = send(a.client.post(a.url("/items"))).await;
    assert_eq!(write.status, 201);
    let cookie = write.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("llmselect_edge_pos=5;"), "{cookie}");
    assert_eq!(write.headers["llmselect-invalidation-id"], "5");
    // B has not applied outbox id 5 yet: this client's reads go to the origin...
    let pos = cookie.split(';').next().unwrap().to_string();
    let before = origin.count("/items");
    let mine = send(b.get("/items").header("cookie", pos.clone())).await;
    assert_ne!(mine.x_cache(), "HIT");
    assert_eq!(origin.count("/items"), before + 1);
    // ...an API client echoing the header likewise; other clients still hit
    let api = send(b.get("/items").header("llmselect-invalidation-id", "5")).await;
    assert_ne!(api.x_cache(), "HIT");
    assert_eq!(send(b.get("/items")).await.x_cache(), "HIT");
    // once the relay's message is applied, the client hits again
    let seq = nats.publish("5", json!({"groups": ["items"]})).await;
    eventually_true("B applied id 5", || async { applied_seq(&b).await >= seq }).await;
    assert_eq!(
        send(b.get("/items").header("cookie", pos.clone()))
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        send(b.get("/items").header("cookie", pos)).await.x_cache(),
        "HIT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_credentials_are_used_and_a_wrong_one_is_reported() {
    let nats = TestNats::start_with(&["--auth", "fleet-secret"]).await;
    let origin = ScriptedOrigin::start().await;
    let url = nats.url();
    let good = spawn_proxy(&origin.url(), {
        let url = url.clone();
        move |c| {
            c.bus.url = Some(url);
            c.bus.token = Some("fleet-secret".into());
        }
    })
    .await;
    let bad = spawn_proxy(&origin.url(), move |c| {
        c.bus.url = Some(url);
        c.bus.token = Some("wrong".into());
    })
    .await;
    connected(&good).await;
    let health = |p: &llmselect_e2e::proxy::TestProxy| {
        p.client
            .get(format!("{}/health", p.admin))
            .bearer_auth(&p.token)
            .send()
    };
    let h: serde_json::Value = health(&good).await.unwrap().json().await.unwrap();
    assert_eq!(
        (h["status"].as_str(), h["bus"].as_str()),
        (Some("ok"), Some("connected"))
    );
    let h: serde_json::Value = health(&bad).await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["bus"], "disconnected");
    let (status, body) = bad.purge(json!({"all": true})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not on the fleet"));
}
