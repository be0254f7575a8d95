//! The issue that started the fail-closed work, against the real origin: a proxy started with no
//! configuration (or with `auth_cookies` that do not name the app's cookie) in front of the app,
//! two users logged in with browser cookies: each only ever sees their own conversation list.

use crate::{titles, LIST};
use llmselect_e2e::http::send;
use llmselect_e2e::stack::Stack;
use llmselect_proxy::config::CacheConfig;

async fn cookie_users_stay_apart(cache: CacheConfig) {
    let s = Stack::builder()
        .origin(|_| {})
        .proxy(|cfg| cfg.cache = cache)
        .start()
        .await;
    let (origin, proxy) = (s.origin(), s.proxy());
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
            let r = send(
                proxy
                    .get(LIST)
                    .header("cookie", format!("{extra}; {}", user.access_cookie())),
            )
            .await;
            assert_eq!(r.status, 200);
            hits += usize::from(r.x_cache() == "HIT");
            assert_eq!(
                titles(&r.json()),
                vec![title],
                "round {round}, {}",
                r.x_cache()
            );
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
