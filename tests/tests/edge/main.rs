//! The whole edge: the caching proxy in front of the real origin on PostgreSQL.
//!
//! These tests check the origin→proxy caching contract from a user's point of view: hits are
//! hits (the origin's own request counter does not move), per-user entries never cross users,
//! and a mutation through the proxy is visible to the very next read.

mod fail_closed;

use llmselect_e2e::origin::{spawn_origin, TestOrigin, TestUser};
use llmselect_e2e::proxy::{spawn_proxy, TestProxy};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub(crate) const LIST: &str = "/api/v1/conversations?page=1&limit=20";

struct Edge {
    origin: TestOrigin,
    proxy: TestProxy,
}

async fn edge() -> Edge {
    let origin = spawn_origin(|_| {}).await;
    let proxy = spawn_proxy(&origin.base_url, |cfg| {
        cfg.cache.auth_cookies = vec!["access_token_cookie".into()];
    })
    .await;
    Edge { origin, proxy }
}

impl Edge {
    /// Requests the origin has served for route template `route` (e.g. `GET /api/v1/models`),
    /// read from its own Prometheus counters.
    async fn origin_count(&self, route: &str) -> u64 {
        let text = self
            .origin
            .http
            .get(self.origin.ops_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        let needle = format!("route=\"{route}\"");
        text.lines()
            .filter(|l| l.starts_with("origin_http_requests_total{") && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn as_user(&self, user: &TestUser, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.proxy
            .client
            .request(method, self.proxy.url(path))
            .header("Authorization", user.bearer())
    }

    async fn create_conversation(&self, user: &TestUser, title: &str) -> String {
        let r = self
            .as_user(user, Method::POST, "/api/v1/conversations")
            .json(&json!({"provider": "openai", "model": "gpt-4o", "title": title}))
            .send()
            .await
            .expect("create conversation");
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.expect("json");
        body["id"].as_str().expect("id").to_string()
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn titles(list: &Value) -> Vec<String> {
    list["conversations"]
        .as_array()
        .expect("conversations array")
        .iter()
        .map(|c| c["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn conversation_list_goes_miss_hit_then_miss_with_new_data_after_rename() {
    let e = edge().await;
    let alice = e.origin.user("alice").await;
    let id = e.create_conversation(&alice, "first title").await;

    let r1 = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
    assert_eq!(r1.status(), 200);
    assert_eq!(header(&r1, "x-cache"), "MISS");
    assert_eq!(titles(&r1.json().await.unwrap()), vec!["first title"]);
    let served = e.origin_count("GET /api/v1/conversations").await;

    let r2 = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
    assert_eq!(header(&r2, "x-cache"), "HIT");
    assert!(!header(&r2, "age").is_empty(), "a hit carries Age");
    assert_eq!(titles(&r2.json().await.unwrap()), vec!["first title"]);
    assert_eq!(
        e.origin_count("GET /api/v1/conversations").await,
        served,
        "the hit did not reach the origin"
    );

    let patch = e
        .as_user(
            &alice,
            Method::PATCH,
            &format!("/api/v1/conversations/{id}"),
        )
        .json(&json!({"title": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    assert_eq!(header(&patch, "x-cache"), "PASS");

    let r3 = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
    assert_eq!(
        header(&r3, "x-cache"),
        "MISS",
        "the rename invalidated the list"
    );
    assert_eq!(titles(&r3.json().await.unwrap()), vec!["renamed"]);
    assert_eq!(
        e.origin_count("GET /api/v1/conversations").await,
        served + 1
    );
}

#[tokio::test]
async fn another_user_never_receives_a_cached_list_on_the_same_url() {
    let e = edge().await;
    let alice = e.origin.user("alice").await;
    let bob = e.origin.user("bob").await;
    e.create_conversation(&alice, "alice secret").await;

    // Warm the cache with alice's list, twice so it is surely stored.
    for _ in 0..2 {
        let r = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
        assert_eq!(titles(&r.json().await.unwrap()), vec!["alice secret"]);
    }
    let r = e.as_user(&bob, Method::GET, LIST).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(
        header(&r, "x-cache"),
        "HIT",
        "bob's credential can only miss"
    );
    assert!(titles(&r.json().await.unwrap()).is_empty());

    // The SPA's cookie credential, with unrelated cookies around it, is keyed the same way.
    let by_cookie = |user: &TestUser, extra: &str| {
        e.proxy
            .client
            .get(e.proxy.url(LIST))
            .header("Cookie", format!("{extra}; {}", user.access_cookie()))
    };
    let r = by_cookie(&bob, "theme=dark").send().await.unwrap();
    assert!(titles(&r.json().await.unwrap()).is_empty());
    let r = by_cookie(&bob, "theme=light; _ga=1").send().await.unwrap();
    assert_eq!(
        header(&r, "x-cache"),
        "HIT",
        "unrelated cookies do not split the variant"
    );
    assert!(titles(&r.json().await.unwrap()).is_empty());
    let r = by_cookie(&alice, "theme=dark").send().await.unwrap();
    assert_eq!(titles(&r.json().await.unwrap()), vec!["alice secret"]);

    // No credential at all: a 401, never somebody's cached list, and the 401 is not stored.
    for _ in 0..2 {
        let r = e.proxy.get(LIST).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_ne!(header(&r, "x-cache"), "HIT");
    }
}

#[tokio::test]
async fn appended_message_and_delete_are_visible_to_the_next_read_through_the_proxy() {
    let e = edge().await;
    let alice = e.origin.user("alice").await;
    let id = e.create_conversation(&alice, "chat").await;
    let detail = format!("/api/v1/conversations/{id}");

    for expected in ["MISS", "HIT"] {
        let r = e
            .as_user(&alice, Method::GET, &detail)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "x-cache"), expected);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["messageCount"], 0);
    }
    let r = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["conversations"][0]["messageCount"],
        0
    );

    let post = e
        .as_user(&alice, Method::POST, &format!("{detail}/messages"))
        .json(&json!({"role": "user", "content": "hello there"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 201);
    assert!(header(&post, "cache-group-invalidation").contains(&format!("conversation:{id}")));

    let r = e
        .as_user(&alice, Method::GET, &detail)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-cache"), "MISS");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["messageCount"], 1);
    assert_eq!(body["messages"][0]["content"], "hello there");
    let r = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["conversations"][0]["messageCount"], 1);
    assert_eq!(list["conversations"][0]["preview"], "hello there");

    let del = e
        .as_user(&alice, Method::DELETE, &detail)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let r = e
        .as_user(&alice, Method::GET, &detail)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the deleted conversation is not served from cache"
    );
    let r = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
    assert!(titles(&r.json().await.unwrap()).is_empty());
}

#[tokio::test]
async fn model_registry_is_served_from_the_proxy_and_admin_clear_empties_it() {
    let e = edge().await;
    let r = e.proxy.get("/api/v1/models").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-cache"), "MISS");
    let before = e.origin_count("GET /api/v1/models").await;
    for _ in 0..5 {
        let r = e.proxy.get("/api/v1/models").send().await.unwrap();
        assert_eq!(header(&r, "x-cache"), "HIT");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["models"].as_array().map(Vec::len), Some(35));
    }
    assert_eq!(e.origin_count("GET /api/v1/models").await, before);

    // Conditional request answered by the proxy itself.
    let etag = header(&e.proxy.get("/api/v1/models").send().await.unwrap(), "etag");
    assert!(etag.starts_with('"'), "strong ETag: {etag}");
    let r = e
        .proxy
        .get("/api/v1/models")
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(e.origin_count("GET /api/v1/models").await, before);

    // The first registered user is the admin; clearing the origin cache purges the proxy too.
    let admin = e.origin.user("root").await;
    let r = e
        .as_user(&admin, Method::POST, "/api/v1/admin/cache/clear")
        .json(&json!({"scope": "models"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = e.proxy.get("/api/v1/models").send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "MISS");
    assert_eq!(e.origin_count("GET /api/v1/models").await, before + 1);
}

#[tokio::test]
async fn admin_group_purge_of_a_user_forces_the_next_read_to_the_origin() {
    let e = edge().await;
    let alice = e.origin.user("alice").await;
    e.create_conversation(&alice, "kept").await;
    for expected in ["MISS", "HIT"] {
        let r = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
        assert_eq!(header(&r, "x-cache"), expected);
    }
    let me: Value = e
        .as_user(&alice, Method::GET, "/api/v1/auth/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["username"], "alice");
    // Groups are named by user id; alice is user 1 in her own fresh database.
    let (status, body) = e.proxy.purge(json!({"groups": ["user:1"]})).await;
    assert_eq!(status, 200, "{body}");
    let r = e.as_user(&alice, Method::GET, LIST).send().await.unwrap();
    assert_eq!(header(&r, "x-cache"), "MISS");
    assert_eq!(titles(&r.json().await.unwrap()), vec!["kept"]);
}
