//! The whole fleet end to end: two origins on one database with their outbox relays, three proxy
//! nodes that balance over both origins, one private nats-server. A rename through one node is
//! read fresh through the others; a write that passes through no proxy purges every node; a
//! randomized checker finds no stale read under concurrent readers and writers; the bus going
//! away and an origin dying cost no stale read and no failed request.

use crate::{applied_seq, connected};
use llmselect_e2e::http::send;
use llmselect_e2e::origin::{TestOrigin, TestUser};
use llmselect_e2e::proxy::TestProxy;
use llmselect_e2e::rng::Rng;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::eventually_true as eventually;
use serde_json::{json, Value};
use std::time::Duration;

const LIST: &str = "/api/v1/conversations?page=1&limit=50";
const POSITION: &str = "llmselect-invalidation-id";

/// Two origins on one database (each with its outbox relay), one bus, `nodes` proxies that
/// balance over both origins.
struct Fleet {
    stack: Stack,
    second: TestOrigin,
    nodes: Vec<TestProxy>,
}

impl Fleet {
    fn origins(&self) -> [&TestOrigin; 2] {
        [self.stack.origin(), &self.second]
    }
}

async fn fleet(nodes: usize) -> Fleet {
    let fast_relay = |cfg: &mut llmselect_origin::Config| cfg.bus.relay_poll_ms = 200;
    let stack = Stack::builder().origin(fast_relay).bus().start().await;
    let second = stack.start_origin(fast_relay).await;
    let upstreams = vec![stack.origin().base_url.clone(), second.base_url.clone()];
    let mut proxies = Vec::new();
    for _ in 0..nodes {
        let ups = upstreams.clone();
        let p = stack.start_proxy(move |c| c.upstreams = ups).await;
        connected(&p).await;
        proxies.push(p);
    }
    Fleet {
        stack,
        second,
        nodes: proxies,
    }
}

/// Waits until every write so far reached every node: the outbox is empty (all published) and
/// each node applied the stream's last message. Setup writes (users, conversations) otherwise
/// purge what a test warms a moment later.
async fn settle(f: &Fleet) {
    eventually("the outbox is published", || async {
        f.stack.origin().row_count("cache_invalidations").await == 0
    })
    .await;
    let js = f.stack.bus().jetstream().await;
    let last = match js.get_stream(llmselect_e2e::nats::STREAM).await {
        Ok(stream) => stream.get_info().await.unwrap().state.last_sequence,
        Err(_) => 0,
    };
    for node in &f.nodes {
        eventually("the node applied every message", || async {
            applied_seq(node).await >= last
        })
        .await;
    }
}

/// A client of one user: its credential, and the position of its last write, echoed on reads
/// the way an API client does (`LLMSelect-Invalidation-Id`).
struct Client {
    user: TestUser,
    position: Option<u64>,
}

impl Client {
    fn get(&self, node: &TestProxy, path: &str) -> reqwest::RequestBuilder {
        let req = node.get(path).header("Authorization", self.user.bearer());
        match self.position {
            Some(n) => req.header(POSITION, n.to_string()),
            None => req,
        }
    }

    async fn rename(&mut self, node: &TestProxy, id: &str, title: &str) {
        let r = send(
            node.client
                .patch(node.url(&format!("/api/v1/conversations/{id}")))
                .header("Authorization", self.user.bearer())
                .json(&json!({ "title": title })),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let n: u64 = r.headers[POSITION].to_str().unwrap().parse().unwrap();
        self.position = Some(n);
    }

    async fn titles(&self, node: &TestProxy) -> (String, Vec<String>) {
        let r = send(self.get(node, LIST)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let list: Value = serde_json::from_str(&r.body).unwrap();
        let titles = list["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].as_str().unwrap_or_default().to_string())
            .collect();
        (r.x_cache().to_string(), titles)
    }
}

async fn client(origin: &TestOrigin, name: &str, conversations: usize) -> (Client, Vec<String>) {
    let user = origin.user(name).await;
    let mut ids = Vec::new();
    for i in 0..conversations {
        ids.push(
            origin
                .create_conversation(&user, Some(&format!("{name}-{i}-v0")))
                .await,
        );
    }
    (
        Client {
            user,
            position: None,
        },
        ids,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rename_through_one_node_is_read_fresh_through_every_other_node() {
    let f = fleet(3).await;
    let (mut alice, ids) = client(f.origins()[0], "alice", 1).await;
    settle(&f).await;
    for node in &f.nodes {
        alice.titles(node).await;
        assert_eq!(alice.titles(node).await.0, "HIT", "warm on every node");
    }
    for round in 0..12 {
        let (writer, reader) = (round % 3, (round + 1) % 3);
        let title = format!("round {round}");
        alice.rename(&f.nodes[writer], &ids[0], &title).await;
        // right after the write's response, on another node
        let (_, titles) = alice.titles(&f.nodes[reader]).await;
        assert_eq!(titles, vec![title.clone()], "round {round}");
        // and on the third node
        let third = &f.nodes[(round + 2) % 3];
        let (_, titles) = alice.titles(third).await;
        assert_eq!(titles, vec![title], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_made_directly_at_an_origin_reaches_every_node() {
    let f = fleet(2).await;
    let (bob, ids) = client(f.origins()[0], "bob", 1).await;
    settle(&f).await;
    for node in &f.nodes {
        bob.titles(node).await;
        assert_eq!(bob.titles(node).await.0, "HIT");
    }
    // a script talking to the origin, no proxy on the way
    let r = f.origins()[1]
        .request_as(
            &bob.user,
            reqwest::Method::PATCH,
            &format!("/api/v1/conversations/{}", ids[0]),
        )
        .json(&json!({"title": "changed behind the edge"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for node in &f.nodes {
        eventually(
            "the node dropped the old list and caches the new one",
            || async {
                let (x_cache, titles) = bob.titles(node).await;
                assert!(
                    titles == ["changed behind the edge"] || x_cache == "HIT",
                    "an old list that did not come from the cache: {titles:?} ({x_cache})"
                );
                x_cache == "HIT" && titles == ["changed behind the edge"]
            },
        )
        .await;
    }
}

/// One user's client: reads its list on random nodes, renames a conversation now and then on a
/// random node, and checks that every read shows every title at least as new as its own last
/// write of it (the title carries a version).
async fn checker_client(
    nodes: std::sync::Arc<Vec<TestProxy>>,
    mut me: Client,
    ids: Vec<String>,
    name: String,
    seed: u64,
    steps: usize,
) -> (usize, usize) {
    let mut rng = Rng(seed);
    let mut written = vec![0u32; ids.len()];
    let (mut reads, mut hits) = (0, 0);
    for step in 0..steps {
        let node = &nodes[rng.below(nodes.len())];
        if rng.below(100) < 10 {
            let c = rng.zipf(ids.len());
            written[c] += 1;
            me.rename(node, &ids[c], &format!("{name}-{c}-v{}", written[c]))
                .await;
        } else {
            let (x_cache, titles) = me.titles(node).await;
            reads += 1;
            hits += usize::from(x_cache == "HIT");
            for title in titles {
                let mut parts = title.rsplitn(2, "-v");
                let version: u32 = parts.next().unwrap().parse().unwrap();
                let c: usize = parts
                    .next()
                    .unwrap()
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    version >= written[c],
                    "stale read: {name} step {step} (seed {seed}) saw {title}, wrote v{} ({x_cache})",
                    written[c]
                );
            }
        }
    }
    (reads, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_readers_and_writers_on_three_nodes_never_read_stale_data() {
    let f = fleet(3).await;
    let mut tasks = Vec::new();
    let origins = f.origins();
    let mut clients = Vec::new();
    for (i, name) in ["ann", "ben", "cat", "dan"].iter().enumerate() {
        clients.push((name, client(origins[i % 2], name, 4).await));
    }
    settle(&f).await;
    let nodes = std::sync::Arc::new(f.nodes);
    for (i, (name, (me, ids))) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(checker_client(
            nodes.clone(),
            me,
            ids,
            name.to_string(),
            1000 + i as u64,
            250,
        )));
    }
    let (mut reads, mut hits) = (0, 0);
    for t in tasks {
        let (r, h) = t.await.expect("a checker client found no stale read");
        reads += r;
        hits += h;
    }
    let ratio = hits as f64 / reads as f64;
    assert!(
        ratio > 0.5,
        "hit ratio {ratio:.2} ({hits} of {reads} reads)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_while_the_bus_is_down_are_never_read_stale_and_nodes_catch_up() {
    let f = fleet(2).await;
    let (mut eve, ids) = client(f.origins()[0], "eve", 1).await;
    settle(&f).await;
    for node in &f.nodes {
        eve.titles(node).await;
    }
    f.stack.bus().stop();
    let outage = std::time::Instant::now();
    let mut round = 0;
    while outage.elapsed() < Duration::from_secs(5) {
        let title = format!("outage {round}");
        eve.rename(&f.nodes[round % 2], &ids[0], &title).await;
        // the other node cannot have heard of it: it asks the origin
        let (_, titles) = eve.titles(&f.nodes[(round + 1) % 2]).await;
        assert_eq!(titles, vec![title], "round {round}");
        round += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.stack.bus().restart().await;
    let last = format!("outage {}", round - 1);
    for node in f.nodes.iter() {
        connected(node).await;
        eventually("the node replayed the backlog", || async {
            node.stats().await["bus"]["applied_outbox_id"].as_u64() >= eve.position
        })
        .await;
        // caught up: another client of eve without the position reads the latest title
        let fresh = Client {
            user: eve.user.clone(),
            position: None,
        };
        assert_eq!(fresh.titles(node).await.1, vec![last.clone()]);
        assert!(applied_seq(node).await > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_dying_moves_traffic_without_a_failed_read() {
    let f = fleet(1).await;
    let (fay, _) = client(f.origins()[0], "fay", 2).await;
    let node = &f.nodes[0];
    let addr = f.second.addr.to_string();
    f.second.stop().await;
    for i in 0..30 {
        // list reads that miss (new cursor each time) go to an origin
        let path = format!("/api/v1/conversations?page=1&limit={}", 20 + i);
        let r = send(fay.get(node, &path)).await;
        assert_eq!(r.status, 200, "read {i}: {}", r.body);
    }
    eventually("the dead origin is reported down", || async {
        let s = node.stats().await;
        s["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["address"] == addr.as_str() && u["healthy"] == false)
    })
    .await;
}
