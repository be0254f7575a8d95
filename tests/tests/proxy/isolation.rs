//! Randomized isolation check: many requests from random users with random credentials (bearer,
//! cookie, both, none), extra cookies, cookie order and duplicate cookie names, through the fast
//! hit path and pingora's path, under several `auth_cookies` configurations.
//!
//! Invariant: a per-user response body is only ever served to a request that the origin would
//! identify as the user it was generated for; a public body may go to anyone. The origin writes
//! the identity it derived into the body (`{user}`), the test derives the identity of every
//! request the same way (`scripted_origin::identity`) and compares.

use crate::env_with;
use llmselect_e2e::http::send;
use llmselect_e2e::rng::Rng;
use llmselect_e2e::scripted_origin::{identity, Route};
use llmselect_proxy::config::CacheConfig;

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const EXTRA_COOKIES: [&str; 4] = ["theme=dark", "theme=light", "lang=fr", "sessionid=x1"];

/// Routes: per-user with `Vary` (as the LLMSelect origin sends them), per-user whose origin forgot
/// `Vary` (keyed by credential anyway, since it is not explicitly shared), and public.
fn program(origin: &llmselect_e2e::scripted_origin::ScriptedOrigin) {
    for k in 0..3 {
        origin.route(
            "GET",
            &format!("/u/{k}"),
            Route::ok("{user} #{n}")
                .cache("private")
                .header("llmselect-cache-control", "max-age=600, must-revalidate")
                .header("vary", "Authorization, Cookie"),
        );
        origin.route(
            "GET",
            &format!("/nv/{k}"),
            Route::ok("{user} #{n}").cache("max-age=600, must-revalidate"),
        );
        origin.route(
            "GET",
            &format!("/pub/{k}"),
            Route::ok("public #{n}").cache("public, max-age=600"),
        );
    }
}

/// The request headers of one random request.
fn random_headers(rng: &mut Rng) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    let mode = rng.below(4); // 0 none, 1 bearer, 2 cookie, 3 both
    if mode == 1 || mode == 3 {
        headers.push(("authorization", format!("Bearer {}", rng.pick(&USERS))));
    }
    let mut cookies: Vec<String> = Vec::new();
    if mode >= 2 {
        cookies.push(format!("access_token_cookie={}", rng.pick(&USERS)));
        if rng.chance(20) {
            // a duplicate name: the origin reads the first one
            cookies.push(format!("access_token_cookie={}", rng.pick(&USERS)));
        }
    }
    for _ in 0..rng.below(3) {
        cookies.push(rng.pick(&EXTRA_COOKIES).to_string());
    }
    // shuffle (Fisher-Yates)
    for i in (1..cookies.len()).rev() {
        let j = rng.below(i + 1);
        cookies.swap(i, j);
    }
    if !cookies.is_empty() {
        if rng.chance(20) && cookies.len() > 1 {
            // split over two Cookie fields
            let tail = cookies.split_off(1);
            headers.push(("cookie", cookies.join("; ")));
            headers.push(("cookie", tail.join("; ")));
        } else {
            let sep = if rng.chance(50) { "; " } else { ";" };
            headers.push(("cookie", cookies.join(sep)));
        }
    }
    if rng.chance(30) {
        // not eligible for the fast path: pingora's own hit path answers
        headers.push(("if-none-match", "\"no-such-tag\"".to_string()));
    }
    headers
}

async fn check_isolation(variant: &str, cache: CacheConfig, seed: u64, requests: usize) {
    let e = env_with(|c| c.cache = cache).await;
    program(e.scripted());
    let mut rng = Rng(seed);
    let mut hits = 0;
    for i in 0..requests {
        let prefix = rng.pick(&["/u", "/nv", "/pub"]);
        let path = format!("{prefix}/{}", rng.below(3));
        let headers = random_headers(&mut rng);
        let mut req = e.proxy().get(&path);
        let mut map = http::HeaderMap::new();
        for (name, value) in &headers {
            req = req.header(*name, value.as_str());
            map.append(*name, value.parse().unwrap());
        }
        let r = send(req).await;
        assert_eq!(r.status, 200, "{variant} seed {seed} request {i}");
        if r.x_cache() == "HIT" {
            hits += 1;
        }
        let served_to = r.body.rsplit_once(" #").map(|(who, _)| who).unwrap_or("");
        if prefix == "/pub" {
            assert_eq!(served_to, "public", "{variant} seed {seed} request {i}");
        } else {
            assert_eq!(
                served_to,
                identity(&map),
                "{variant} seed {seed} request {i}: {path} with {headers:?} got {:?} ({})",
                r.body,
                r.x_cache()
            );
        }
    }
    // the check only means something if the cache was really used
    assert!(
        hits > requests / 4,
        "{variant}: only {hits} hits in {requests} requests"
    );
    e.shutdown().await;
}

fn shipped_cache_config() -> CacheConfig {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/proxy.toml"),
    )
    .expect("config/proxy.toml");
    llmselect_proxy::Config::from_toml(&text)
        .expect("shipped config parses")
        .cache
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_config_keeps_every_user_apart() {
    for seed in [1, 2] {
        check_isolation("no config", CacheConfig::default(), seed, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_config_keeps_every_user_apart() {
    for seed in [3, 4] {
        check_isolation("config/proxy.toml", shipped_cache_config(), seed, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_cookies_naming_another_cookie_still_keep_users_apart() {
    let cache = CacheConfig {
        auth_cookies: vec!["session".into()],
        ..CacheConfig::default()
    };
    for seed in [5, 6] {
        check_isolation("auth_cookies = [\"session\"]", cache.clone(), seed, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_auth_cookies_key_on_the_whole_cookie_header() {
    let cache = CacheConfig {
        auth_cookies: Vec::new(),
        ..CacheConfig::default()
    };
    for seed in [7, 8] {
        check_isolation("auth_cookies = []", cache.clone(), seed, 400).await;
    }
}
