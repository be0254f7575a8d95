//! The admin console in a real headless Chromium, `/explain`, and the browser protections of the
//! admin listener (token only in the `Authorization` header, cross-site requests refused, CSP and
//! framing headers).

use crate::{env, get};
use llmselect_e2e::browser::Browser;
use llmselect_e2e::proxy::TestProxy;
use llmselect_e2e::scripted_origin::Route;
use serde_json::{json, Value};

/// `GET /explain?…` with the admin token.
async fn explain_get(p: &TestProxy, query: &[(&str, &str)]) -> (u16, Value) {
    let resp = p
        .client
        .get(format!("{}/explain", p.admin))
        .query(query)
        .bearer_auth(&p.token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST /explain` with the admin token.
async fn explain(p: &TestProxy, url: &str, headers: &[(&str, &str)]) -> Value {
    let resp = p
        .client
        .post(format!("{}/explain", p.admin))
        .bearer_auth(&p.token)
        .json(&json!({"url": url, "headers": headers}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_traffic_purges_a_group_and_explains_in_a_browser() {
    let e = env().await;
    let p = e.proxy();
    e.scripted().route(
        "GET",
        "/api/items",
        Route::ok("items {n}")
            .cache("max-age=600")
            .header("cache-groups", "\"catalog\""),
    );
    let browser = Browser::start().await;
    let b = &browser;
    b.client.goto(&format!("{}/", p.admin)).await.unwrap();
    // no token yet: the login form, and nothing else
    assert!(b.find("#login").await.is_displayed().await.unwrap());
    assert!(!b.find("#app").await.is_displayed().await.unwrap());
    b.fill("#token-input", "wrong-token").await;
    b.click("#token-submit").await;
    b.text_until("#login-error", |t| t.contains("refused"))
        .await;
    b.fill("#token-input", &p.token).await;
    b.click("#token-submit").await;
    b.text_until("#stat-hits", |t| t == "0").await;
    assert!(b.find("#app").await.is_displayed().await.unwrap());
    // the token is in this tab's sessionStorage: not in the URL, not in a cookie
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(&p.token), "{url}");
    let stored = b
        .client
        .execute(
            "return [sessionStorage.getItem('llmselect-admin-token'), document.cookie]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(stored, json!([p.token, ""]));

    // traffic: one miss, four hits; the figures follow
    assert_eq!(get(p, "/api/items").await.x_cache(), "MISS");
    for _ in 0..4 {
        assert_eq!(get(p, "/api/items").await.x_cache(), "HIT");
    }
    b.text_until("#stat-hits", |t| t == "4").await;
    b.text_until("#stat-misses", |t| t == "1").await;
    b.text_until("#stat-hit-ratio", |t| t == "80.0 %").await;
    b.text_until("#stat-entries", |t| t == "1").await;
    b.text_until("#health", |t| {
        t.contains("not health-checked") && t.contains("single node")
    })
    .await;
    b.screenshot("console-after-traffic").await;

    // purge the group from the form: the next request misses
    b.find("#purge-kind")
        .await
        .select_by_value("groups")
        .await
        .unwrap();
    b.fill("#purge-value", "catalog").await;
    b.click("#purge-submit").await;
    b.text_until("#purge-result", |t| t.contains("Purged 1 entry"))
        .await;
    let after = get(p, "/api/items").await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(after.body, "items 2");
    assert_eq!(e.scripted().count("/api/items"), 2);
    b.text_until("#purges", |t| {
        t.contains("group catalog") && t.contains("admin")
    })
    .await;

    // explain the URL: stored again by the miss above, fresh, with its freshness source
    b.fill("#explain-url", "/api/items").await;
    b.click("#explain-submit").await;
    b.text_until("#explain-verdict", |t| t == "HIT").await;
    let out = b.text("#explain-output").await;
    assert!(out.contains("cache-control: max-age"), "{out}");
    assert!(out.contains("\"catalog\""), "{out}");
    b.screenshot("console-after-purge-and-explain").await;

    // forgetting the token returns to the login form and clears the storage
    b.click("#token-forget").await;
    assert!(b.find("#login").await.is_displayed().await.unwrap());
    let left = b
        .client
        .execute("return sessionStorage.length", vec![])
        .await
        .unwrap();
    assert_eq!(left, json!(0));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reports_variants_freshness_source_and_refusals() {
    let e = env().await;
    let p = e.proxy();
    let s = e.scripted();
    s.route(
        "GET",
        "/e/shared",
        Route::ok("s")
            .cache("public, max-age=600, stale-while-revalidate=30")
            .header("cache-groups", "\"g\""),
    );
    s.route("GET", "/e/nostore", Route::ok("n").cache("no-store"));
    s.route("GET", "/e/user", Route::ok("u {user}").cache("max-age=600"));
    s.route(
        "GET",
        "/e/cdn",
        Route::ok("c")
            .cache("no-store")
            .header("cdn-cache-control", "max-age=60"),
    );

    // nothing stored yet
    let v = explain(p, "/e/shared", &[]).await;
    assert_eq!(v["verdict"], "miss");
    assert!(v["why"].as_str().unwrap().contains("nothing is stored"));
    assert_eq!(v["url"], format!("{}/e/shared", p.base));

    get(p, "/e/shared").await;
    let v = explain(p, "/e/shared", &[]).await;
    assert_eq!(v["verdict"], "hit", "{v}");
    let variant = &v["variants"][0];
    assert_eq!(variant["freshness_source"], "cache-control: max-age");
    assert_eq!(variant["groups"], json!(["g"]));
    assert_eq!(variant["stale_while_revalidate_secs"], 30);
    assert_eq!(variant["selected"], true);
    assert_eq!(variant["vary"], json!([]));
    let ttl = variant["ttl_left_secs"].as_i64().unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");
    // the request's own directives
    let v = explain(p, "/e/shared", &[("Cache-Control", "no-cache")]).await;
    assert_eq!(v["verdict"], "revalidate");
    // the same question as a GET, with an absolute URL
    let (status, v) = explain_get(p, &[("url", &format!("{}/e/shared", p.base))]).await;
    assert_eq!((status, v["verdict"].as_str()), (200, Some("hit")));

    // refused: the exact rule, and the predictor now bypasses the URL
    get(p, "/e/nostore").await;
    let v = explain(p, "/e/nostore", &[]).await;
    assert_eq!(v["verdict"], "pass", "{v}");
    assert!(v["why"].as_str().unwrap().contains("says no-store"), "{v}");
    assert!(v["last_refusal"]["rule"]
        .as_str()
        .unwrap()
        .contains("no-store"));

    // a per-user response: one variant keyed by the credential
    let alice = [("Cookie", "access_token_cookie=alice")];
    send_with(p, "/e/user", &alice).await;
    let v = explain(p, "/e/user", &alice).await;
    assert_eq!(v["verdict"], "hit", "{v}");
    assert_eq!(v["variants"][0]["vary"], json!(["authorization", "cookie"]));
    let v = explain(p, "/e/user", &[("Cookie", "access_token_cookie=bob")]).await;
    assert_eq!(v["verdict"], "miss");
    assert!(v["why"].as_str().unwrap().contains("no stored variant"));
    assert_eq!(v["variants"].as_array().unwrap().len(), 1);
    assert_eq!(v["variants"][0]["selected"], false);

    // a targeted field governs
    get(p, "/e/cdn").await;
    let v = explain(p, "/e/cdn", &[]).await;
    assert_eq!(
        v["variants"][0]["freshness_source"],
        "cdn-cache-control: max-age"
    );

    // bad questions are 400s
    for query in [
        vec![],
        vec![("url", "ftp://x/y")],
        vec![("url", "/x"), ("header", "no colon")],
        vec![("url", "/x"), ("bogus", "1")],
    ] {
        let (status, body) = explain_get(p, &query).await;
        assert_eq!(status, 400, "{query:?}");
        assert!(body["error"]["message"].is_string());
    }
}

async fn send_with(p: &TestProxy, path: &str, headers: &[(&str, &str)]) {
    let mut req = p.get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_resists_cross_site_use() {
    let e = env().await;
    let p = e.proxy();
    // the console loads without the token, with a strict policy; it holds no data
    let page = p.client.get(format!("{}/", p.admin)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    // its script and style come from the binary, never from another host
    assert!(html.contains("src=\"/console.js\"") && html.contains("href=\"/console.css\""));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    for asset in ["/console.js", "/console.css"] {
        let r = p
            .client
            .get(format!("{}{asset}", p.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
    // the JSON endpoints carry the same headers
    let stats = p
        .client
        .get(format!("{}/stats", p.admin))
        .bearer_auth(&p.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stats.headers()["x-frame-options"], "DENY");

    let purge = |extra: Vec<(&'static str, String)>| {
        let mut req = p
            .client
            .post(format!("{}/purge", p.admin))
            .bearer_auth(&p.token)
            .json(&json!({"all": true}));
        for (k, v) in extra {
            req = req.header(k, v);
        }
        req.send()
    };
    // another site's page cannot make a browser purge, even with the token
    for extra in [
        vec![("origin", "http://evil.example".to_string())],
        vec![("sec-fetch-site", "cross-site".to_string())],
        vec![("sec-fetch-site", "same-site".to_string())],
    ] {
        let r = purge(extra.clone()).await.unwrap();
        assert_eq!(r.status(), 403, "{extra:?}");
    }
    // the console's own requests, and scripts without those fields, pass
    let own = p.admin.clone();
    let r = purge(vec![
        ("origin", own),
        ("sec-fetch-site", "same-origin".to_string()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(purge(vec![]).await.unwrap().status(), 200);

    // the token is accepted only as a bearer header: never from a cookie or the URL
    let cookie = p
        .client
        .get(format!("{}/stats", p.admin))
        .header("cookie", format!("token={}", p.token))
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), 401);
    let query = p
        .client
        .get(format!("{}/stats?token={}", p.admin, p.token))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 401);
    // no CORS: a preflight gets no allowance
    let preflight = p
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/purge", p.admin))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success());
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
