//! Per-user isolation under `Vary: Authorization, Cookie`.

use crate::env;
use llmselect_e2e::http::send;
use llmselect_e2e::scripted_origin::Route;

fn per_user() -> Route {
    Route::ok("private data #{n}")
        .cache("private, no-cache")
        .header("cdn-cache-control", "max-age=60, must-revalidate")
        .header("vary", "Authorization, Cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_credential_never_gets_a_cached_response() {
    let e = env().await;
    e.scripted().route("GET", "/me", per_user());
    let a1 = send(e.proxy().get("/me").bearer_auth("token-a")).await;
    assert_eq!(a1.body, "private data #1");
    let a2 = send(e.proxy().get("/me").bearer_auth("token-a")).await;
    assert_eq!(a2.x_cache(), "HIT");
    assert_eq!(a2.body, "private data #1");

    let b = send(e.proxy().get("/me").bearer_auth("token-b")).await;
    assert_ne!(b.x_cache(), "HIT");
    assert_eq!(
        b.body, "private data #2",
        "user B got its own response from the origin"
    );
    let anon = send(e.proxy().get("/me")).await;
    assert_eq!(anon.body, "private data #3");
    assert_eq!(
        send(e.proxy().get("/me").bearer_auth("token-b")).await.body,
        "private data #2"
    );
    assert_eq!(
        send(e.proxy().get("/me").bearer_auth("token-a")).await.body,
        "private data #1"
    );
    assert_eq!(e.scripted().count("/me"), 3);
    let seen = e.scripted().seen();
    assert_eq!(seen[1].headers["authorization"], "Bearer token-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_reduced_to_the_auth_cookie_when_present() {
    let e = env().await;
    e.scripted().route("GET", "/mine", per_user());
    let cookie = |c: &'static str| e.proxy().get("/mine").header("cookie", c);
    let a = send(cookie("theme=dark; access_token_cookie=alice")).await;
    assert_eq!(a.body, "private data #1");
    // unrelated cookies change nothing: same user, hit
    let a2 = send(cookie("access_token_cookie=alice; lang=fr; theme=light")).await;
    assert_eq!(a2.x_cache(), "HIT");
    assert_eq!(a2.body, "private data #1");
    // another session: miss
    let b = send(cookie("theme=dark; access_token_cookie=bob")).await;
    assert_eq!(b.body, "private data #2");
    assert_ne!(b.x_cache(), "HIT");
    assert_eq!(e.scripted().count("/mine"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_auth_cookie_the_whole_cookie_header_keys_the_variant() {
    let e = env().await;
    e.scripted().route("GET", "/mine", per_user());
    let cookie = |c: &'static str| e.proxy().get("/mine").header("cookie", c);
    send(cookie("access_token_cookie=alice")).await;
    // cookies the proxy was not told about may be somebody's session: never alice's entry,
    // and never each other's
    let s1 = send(cookie("sessionid=one; theme=dark")).await;
    assert_eq!(s1.body, "private data #2");
    let s2 = send(cookie("sessionid=two; theme=dark")).await;
    assert_eq!(s2.body, "private data #3");
    // the same cookies, in another order and spacing: the same variant
    let s1_again = send(cookie("theme=dark;sessionid=one")).await;
    assert_eq!(
        (s1_again.x_cache(), s1_again.body.as_str()),
        ("HIT", "private data #2")
    );
    // no cookie at all is a variant of its own
    let anon = send(e.proxy().get("/mine")).await;
    assert_eq!(anon.body, "private data #4");
    assert_eq!(e.scripted().count("/mine"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_answer_does_not_disable_caching_for_others() {
    let e = env().await;
    e.scripted().route("GET", "/u", per_user());
    send(e.proxy().get("/u").bearer_auth("a")).await;
    // a 401 (no-store) for a bad credential
    e.scripted().route(
        "GET",
        "/u",
        Route::status(401, "no")
            .cache("no-store")
            .header("vary", "Authorization, Cookie"),
    );
    let bad = send(e.proxy().get("/u").bearer_auth("bad")).await;
    assert_eq!(bad.status, 401);
    e.scripted().route("GET", "/u", per_user());
    let a = send(e.proxy().get("/u").bearer_auth("a")).await;
    assert_eq!(a.x_cache(), "HIT");
    assert_eq!(a.body, "private data #1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_vary_fields_select_variants() {
    let e = env().await;
    e.scripted().route(
        "GET",
        "/lang",
        Route::ok("lang #{n}")
            .cache("max-age=60")
            .header("vary", "Accept-Language"),
    );
    let en = || e.proxy().get("/lang").header("accept-language", "en");
    let fr = || e.proxy().get("/lang").header("accept-language", "fr");
    assert_eq!(send(en()).await.body, "lang #1");
    assert_eq!(send(fr()).await.body, "lang #2");
    let en2 = send(en()).await;
    assert_eq!((en2.x_cache(), en2.body.as_str()), ("HIT", "lang #1"));
    let fr2 = send(fr()).await;
    assert_eq!((fr2.x_cache(), fr2.body.as_str()), ("HIT", "lang #2"));
    assert_eq!(e.scripted().count("/lang"), 2);
    // a URL purge removes every variant
    let (_, body) = e
        .proxy()
        .purge(serde_json::json!({"urls": ["/lang"]}))
        .await;
    assert_eq!(body["purged"], 2);
}
