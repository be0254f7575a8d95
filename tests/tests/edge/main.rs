//! The whole edge: the caching proxy in front of the real origin on PostgreSQL.
//!
//! These tests check the origin→proxy caching contract from a user's point of view: hits are
//! hits (the origin's own request counter does not move), per-user entries never cross users,
//! and a mutation through the proxy is visible to the very next read.

mod compression;
mod fail_closed;
mod ops_kit;

use llmselect_e2e::http::{send, Resp};
use llmselect_e2e::origin::TestUser;
use llmselect_e2e::stack::Stack;
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) const LIST: &str = "/api/v1/conversations?page=1&limit=20";
const MODELS: &str = "GET /api/v1/models";

/// The real origin, user `alice`, and a proxy that knows the app's auth cookie.
async fn edge() -> Stack {
    Stack::builder()
        .origin(|_| {})
        .user("alice")
        .proxy(|cfg| cfg.cache.auth_cookies = vec!["access_token_cookie".into()])
        .start()
        .await
}

/// `method path` as `user` through the proxy.
async fn as_user(s: &Stack, user: &TestUser, method: Method, path: &str) -> Resp {
    send(s.proxy().request_as(user, method, path)).await
}

/// Creates a conversation titled `title` for `user` through the proxy and returns its id.
async fn create_conversation(s: &Stack, user: &TestUser, title: &str) -> String {
    let r = send(
        s.proxy()
            .request_as(user, Method::POST, "/api/v1/conversations")
            .json(&json!({"provider": "openai", "model": "gpt-4o", "title": title})),
    )
    .await;
    assert_eq!(r.status, 201);
    r.json()["id"].as_str().expect("id").to_string()
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
    let alice = e.user();
    let id = create_conversation(&e, alice, "first title").await;

    let r1 = as_user(&e, alice, Method::GET, LIST).await;
    assert_eq!(r1.status, 200);
    assert_eq!(r1.x_cache(), "MISS");
    assert_eq!(titles(&r1.json()), vec!["first title"]);
    let served = e
        .origin()
        .requests_served("GET /api/v1/conversations")
        .await;

    let r2 = as_user(&e, alice, Method::GET, LIST).await;
    assert_eq!(r2.x_cache(), "HIT");
    assert!(!r2.header("age").is_empty(), "a hit carries Age");
    assert_eq!(titles(&r2.json()), vec!["first title"]);
    assert_eq!(
        e.origin()
            .requests_served("GET /api/v1/conversations")
            .await,
        served,
        "the hit did not reach the origin"
    );

    let patch = send(
        e.proxy()
            .request_as(alice, Method::PATCH, &format!("/api/v1/conversations/{id}"))
            .json(&json!({"title": "renamed"})),
    )
    .await;
    assert_eq!(patch.status, 200);
    assert_eq!(patch.x_cache(), "PASS");

    let r3 = as_user(&e, alice, Method::GET, LIST).await;
    assert_eq!(r3.x_cache(), "MISS", "the rename invalidated the list");
    assert_eq!(titles(&r3.json()), vec!["renamed"]);
    assert_eq!(
        e.origin()
            .requests_served("GET /api/v1/conversations")
            .await,
        served + 1
    );
}

#[tokio::test]
async fn another_bearer_user_never_receives_a_cached_list_on_the_same_url() {
    let e = edge().await;
    let alice = e.user();
    let bob = e.origin().user("bob").await;
    create_conversation(&e, alice, "alice secret").await;

    // Warm the cache with alice's list, twice so it is surely stored.
    for _ in 0..2 {
        let r = as_user(&e, alice, Method::GET, LIST).await;
        assert_eq!(titles(&r.json()), vec!["alice secret"]);
    }
    let r = as_user(&e, &bob, Method::GET, LIST).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.x_cache(), "HIT", "bob's credential can only miss");
    assert!(titles(&r.json()).is_empty());
}

#[tokio::test]
async fn cookie_users_are_keyed_by_their_access_cookie_and_not_by_other_cookies() {
    let e = edge().await;
    let alice = e.user();
    let bob = e.origin().user("bob").await;
    create_conversation(&e, alice, "alice secret").await;
    // The SPA's cookie credential, with unrelated cookies around it.
    let by_cookie = |user: &TestUser, extra: &str| {
        send(
            e.proxy()
                .get(LIST)
                .header("Cookie", format!("{extra}; {}", user.access_cookie())),
        )
    };
    let r = by_cookie(alice, "theme=dark").await;
    assert_eq!(titles(&r.json()), vec!["alice secret"]);
    let r = by_cookie(&bob, "theme=dark").await;
    assert_ne!(r.x_cache(), "HIT", "bob's cookie can only miss");
    assert!(titles(&r.json()).is_empty());
    let r = by_cookie(&bob, "theme=light; _ga=1").await;
    assert_eq!(
        r.x_cache(),
        "HIT",
        "unrelated cookies do not split the variant"
    );
    assert!(titles(&r.json()).is_empty());
    let r = by_cookie(alice, "_ga=2").await;
    assert_eq!(r.x_cache(), "HIT");
    assert_eq!(titles(&r.json()), vec!["alice secret"]);
}

#[tokio::test]
async fn a_request_without_credentials_gets_an_uncached_401_not_somebodys_list() {
    let e = edge().await;
    create_conversation(&e, e.user(), "alice secret").await;
    for _ in 0..2 {
        as_user(&e, e.user(), Method::GET, LIST).await;
    }
    for _ in 0..2 {
        let r = send(e.proxy().get(LIST)).await;
        assert_eq!(r.status, 401);
        assert_ne!(r.x_cache(), "HIT");
    }
}

#[tokio::test]
async fn an_appended_message_is_visible_to_the_next_read_through_the_proxy() {
    let e = edge().await;
    let alice = e.user();
    let id = create_conversation(&e, alice, "chat").await;
    let detail = format!("/api/v1/conversations/{id}");

    for expected in ["MISS", "HIT"] {
        let r = as_user(&e, alice, Method::GET, &detail).await;
        assert_eq!(r.x_cache(), expected);
        assert_eq!(r.json()["messageCount"], 0);
    }
    let r = as_user(&e, alice, Method::GET, LIST).await;
    assert_eq!(r.json()["conversations"][0]["messageCount"], 0);

    let post = send(
        e.proxy()
            .request_as(alice, Method::POST, &format!("{detail}/messages"))
            .json(&json!({"role": "user", "content": "hello there"})),
    )
    .await;
    assert_eq!(post.status, 201);
    assert!(post
        .header("cache-group-invalidation")
        .contains(&format!("conversation:{id}")));

    let r = as_user(&e, alice, Method::GET, &detail).await;
    assert_eq!(r.x_cache(), "MISS");
    let body = r.json();
    assert_eq!(body["messageCount"], 1);
    assert_eq!(body["messages"][0]["content"], "hello there");
    let list = as_user(&e, alice, Method::GET, LIST).await.json();
    assert_eq!(list["conversations"][0]["messageCount"], 1);
    assert_eq!(list["conversations"][0]["preview"], "hello there");
}

#[tokio::test]
async fn a_deleted_conversation_is_not_served_from_cache() {
    let e = edge().await;
    let alice = e.user();
    let id = create_conversation(&e, alice, "chat").await;
    let detail = format!("/api/v1/conversations/{id}");
    for expected in ["MISS", "HIT"] {
        assert_eq!(
            as_user(&e, alice, Method::GET, &detail).await.x_cache(),
            expected
        );
        assert_eq!(
            as_user(&e, alice, Method::GET, LIST).await.x_cache(),
            expected
        );
    }

    let del = as_user(&e, alice, Method::DELETE, &detail).await;
    assert_eq!(del.status, 200);
    let r = as_user(&e, alice, Method::GET, &detail).await;
    assert_eq!(r.status, 404, "the deleted conversation is not served");
    let r = as_user(&e, alice, Method::GET, LIST).await;
    assert!(titles(&r.json()).is_empty());
}

#[tokio::test]
async fn the_model_registry_is_served_from_the_proxy_after_the_first_miss() {
    let e = edge().await;
    let r = send(e.proxy().get("/api/v1/models")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.x_cache(), "MISS");
    let before = e.origin().requests_served(MODELS).await;
    for _ in 0..5 {
        let r = send(e.proxy().get("/api/v1/models")).await;
        assert_eq!(r.x_cache(), "HIT");
        assert_eq!(r.json()["models"].as_array().map(Vec::len), Some(35));
    }
    assert_eq!(e.origin().requests_served(MODELS).await, before);
}

#[tokio::test]
async fn a_conditional_models_request_is_answered_by_the_proxy() {
    let e = edge().await;
    let etag = send(e.proxy().get("/api/v1/models"))
        .await
        .header("etag")
        .to_string();
    assert!(etag.starts_with('"'), "strong ETag: {etag}");
    let before = e.origin().requests_served(MODELS).await;
    let r = send(
        e.proxy()
            .get("/api/v1/models")
            .header("If-None-Match", &etag),
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(e.origin().requests_served(MODELS).await, before);
}

#[tokio::test]
async fn clearing_the_origins_model_cache_purges_the_proxy_too() {
    let e = edge().await;
    for expected in ["MISS", "HIT"] {
        assert_eq!(
            send(e.proxy().get("/api/v1/models")).await.x_cache(),
            expected
        );
    }
    let before = e.origin().requests_served(MODELS).await;
    // The first registered user is the admin.
    let r = send(
        e.proxy()
            .request_as(e.user(), Method::POST, "/api/v1/admin/cache/clear")
            .json(&json!({"scope": "models"})),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(e.proxy().get("/api/v1/models")).await;
    assert_eq!(r.x_cache(), "MISS");
    assert_eq!(e.origin().requests_served(MODELS).await, before + 1);
}

#[tokio::test]
async fn admin_group_purge_of_a_user_forces_the_next_read_to_the_origin() {
    let e = edge().await;
    let alice = e.user();
    create_conversation(&e, alice, "kept").await;
    for expected in ["MISS", "HIT"] {
        let r = as_user(&e, alice, Method::GET, LIST).await;
        assert_eq!(r.x_cache(), expected);
    }
    let uid = e.origin().user_id("alice").await;
    let (status, body) = e
        .proxy()
        .purge(json!({"groups": [format!("user:{uid}")]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let r = as_user(&e, alice, Method::GET, LIST).await;
    assert_eq!(r.x_cache(), "MISS");
    assert_eq!(titles(&r.json()), vec!["kept"]);
}
