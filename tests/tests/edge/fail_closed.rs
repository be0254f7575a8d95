//! The issue that started the fail-closed work, against the real origin: a proxy started with no
//! configuration (or with `auth_cookies` that do not name the app's cookie) in front of the app,
//! two users logged in with browser cookies: each only ever sees their own conversation list.

use crate::{titles, LIST};
use llmselect_e2e::origin::spawn_origin;
use llmselect_e2e::proxy::spawn_proxy;
use llmselect_proxy::config::CacheConfig;

async fn cookie_users_stay_apart(cache: CacheConfig) {
    let origin = spawn_origin(|_| {}).await;
    let proxy = spawn_proxy(&origin.base_url, |cfg| cfg.cache = cache).await;
    let alice = origin.user("alice").await;
    let bob = origin.user("bob").await;
    origin.create_conversation(&alice, Some("alice only")).await;
    origin.create_conversation(&bob, Some("bob only")).await;
    let mut hits = 0;
    for round in 0..3 {
        for (user, title, extra) in [
            (&alice, "alice only", "theme=dark"),
            (&bob, "bob only", "theme=dark"),
        ] {
            let r = proxy
                .get(LIST)
                .header("cookie", format!("{extra}; {}", user.access_cookie()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let x_cache = r.headers()["x-cache"].to_str().unwrap().to_string();
            hits += usize::from(x_cache == "HIT");
            let list = r.json().await.unwrap();
            assert_eq!(titles(&list), vec![title], "round {round}, {x_cache}");
        }
    }
    assert_eq!(hits, 4, "each user's list is cached for that user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_configuration_keeps_cookie_users_apart() {
    cookie_users_stay_apart(CacheConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_cookies_that_miss_the_app_cookie_still_keep_users_apart() {
    cookie_users_stay_apart(CacheConfig {
        auth_cookies: vec!["session".into()],
        ..CacheConfig::default()
    })
    .await;
}
