//! Configuration reload on a running proxy (`ProxyHandle::reload`, what SIGHUP calls): the cache
//! survives, the new policy and origin apply to the next request, an invalid configuration
//! changes nothing.

use crate::{env, get};
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::{Route, ScriptedOrigin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_cache_and_applies_the_new_policy() {
    let e = env().await;
    let p = e.proxy();
    e.scripted().route(
        "GET",
        "/shared",
        Route::ok("s {n}").cache("public, max-age=600"),
    );
    e.scripted()
        .route("GET", "/mine", Route::ok("m {n}").cache("max-age=600"));
    let with_cookie = |c: &'static str| send(p.get("/mine").header("cookie", c));
    assert_eq!(get(p, "/shared").await.x_cache(), "MISS");
    // default auth cookies (access_token_cookie): the whole Cookie header keys the variant
    assert_eq!(with_cookie("sid=a; theme=1").await.x_cache(), "MISS");
    assert_eq!(with_cookie("sid=a; theme=2").await.x_cache(), "MISS");

    let handle = p.handle.as_ref().unwrap();
    let mut cfg = llmselect_proxy::Config::for_upstream(&e.scripted().url());
    cfg.listen = p.base.trim_start_matches("http://").to_string();
    cfg.admin_listen = p.admin.trim_start_matches("http://").to_string();
    cfg.cache.auth_cookies = vec!["sid".into()];
    cfg.admin_token = Some("rotated".into());
    let report = handle.reload(cfg.clone()).unwrap();
    assert_eq!(report.applied, vec!["admin_token", "cache.auth_cookies"]);
    assert!(report.needs_restart.is_empty(), "{report:?}");

    // the cache is still there
    assert_eq!(get(p, "/shared").await.x_cache(), "HIT");
    assert_eq!(e.scripted().count("/shared"), 1);
    // `sid` alone keys the variant now: other cookies no longer split it
    assert_eq!(with_cookie("sid=a; theme=3").await.x_cache(), "MISS");
    let hit = with_cookie("theme=4; sid=a").await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(with_cookie("sid=b").await.x_cache(), "MISS");
    // the admin token rotated
    let stats = |token: &'static str| {
        p.client
            .get(format!("{}/stats", p.admin))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(stats("rotated").await.unwrap().status(), 200);
    assert_eq!(stats("test-admin-token").await.unwrap().status(), 401);

    // an invalid configuration is refused whole
    let mut bad = cfg.clone();
    bad.admin_token = Some("third".into());
    bad.cache.auth_cookies = vec!["bad cookie".into()];
    let errors = handle.reload(bad).unwrap_err();
    assert!(errors.to_string().contains("auth_cookies"), "{errors}");
    assert_eq!(stats("rotated").await.unwrap().status(), 200);
    assert_eq!(stats("third").await.unwrap().status(), 401);
    // another origin: the next fetch goes there, the cache stays; a change that needs a restart
    // is reported, not applied
    let second = ScriptedOrigin::start().await;
    second.route("GET", "/where", Route::ok("second").cache("no-store"));
    e.scripted()
        .route("GET", "/where", Route::ok("first").cache("no-store"));
    assert_eq!(get(p, "/where").await.body, "first");
    let mut moved = cfg;
    moved.upstream = second.url();
    moved.server.threads = 4;
    let report = handle.reload(moved).unwrap();
    assert_eq!(report.applied, vec!["upstream"]);
    assert_eq!(report.needs_restart, vec!["server.threads".to_string()]);
    assert_eq!(get(p, "/where").await.body, "second");
    assert_eq!(get(p, "/shared").await.x_cache(), "HIT");
    assert_eq!(second.count("/shared"), 0);
}
