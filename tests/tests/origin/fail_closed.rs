//! Issue 9, "fail closed", on the origin: per-user cache directives only for our proxy, ETags
//! that change with the representation version, dev secrets refused in production, logout
//! that revokes tokens and purges the user's cached responses, and bounded rate limits with a
//! per-username login limit.

use llmselect_e2e::db::TestDb;
use llmselect_e2e::http::header;
use llmselect_e2e::origin::{spawn_origin, TestOrigin, TestUser};
use llmselect_origin::{App, Config};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{get, get_anonymous, get_if_none_match, json, origin_with_user, statements};

#[tokio::test]
async fn per_user_responses_target_only_our_proxy() {
    let s = origin_with_user("amy").await;
    let (o, u) = (s.origin(), s.user());
    let id = o.create_conversation(u, Some("t")).await;
    for path in [
        "/api/v1/conversations".to_string(),
        format!("/api/v1/conversations/{id}"),
        format!("/api/v1/conversations/{id}/export"),
        "/api/v1/comparisons".to_string(),
    ] {
        let r = get(o, u, &path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "cache-control"), "private, no-cache", "{path}");
        assert_eq!(
            header(&r, "cdn-cache-control"),
            "",
            "{path}: no CDN may store it"
        );
        let targeted = header(&r, "llmselect-cache-control");
        assert!(
            targeted.starts_with("max-age=") && targeted.ends_with(", must-revalidate"),
            "{path}: {targeted:?}"
        );
        // The 304 carries the same fields.
        let r = get_if_none_match(o, u, &path, &header(&r, "etag")).await;
        assert_eq!(r.status(), 304, "{path}");
        assert_eq!(header(&r, "cdn-cache-control"), "", "{path}");
        assert_eq!(header(&r, "llmselect-cache-control"), targeted, "{path}");
    }
    // Public data keeps CDN-Cache-Control and has no proxy-only field.
    let r = get_anonymous(o, "/api/v1/models").await;
    assert!(header(&r, "cdn-cache-control").starts_with("public, max-age="));
    assert_eq!(header(&r, "llmselect-cache-control"), "");
}

/// The ETag the origin computed before representation versions (`"<32 hex of SHA-256>"`).
fn unversioned_etag(body: &[u8]) -> String {
    format!("\"{}\"", &hex_of(&Sha256::digest(body))[..32])
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn etags_carry_the_representation_version_and_old_ones_do_not_match() {
    let s = origin_with_user("bea").await;
    let (o, u) = (s.origin(), s.user());
    let r = get_anonymous(o, "/api/v1/models").await;
    let etag = header(&r, "etag");
    let body = r.bytes().await.unwrap();
    let old = unversioned_etag(&body);
    assert_eq!(
        etag,
        format!("\"v2-{}", &old[1..]),
        "same hash, now versioned"
    );

    // A client (or cache) holding the body of the previous deploy revalidates with its old ETag:
    // it gets the current body, not a 304.
    let r = o
        .http
        .get(o.url("/api/v1/models"))
        .header("If-None-Match", &old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), body);

    // Per-user ETags (derived from row versions, not the body) are versioned as well.
    let r = get(o, u, "/api/v1/conversations").await;
    let etag = header(&r, "etag");
    let hash = etag.strip_prefix("\"v2-").expect("versioned ETag");
    let r = get_if_none_match(o, u, "/api/v1/conversations", &format!("\"{hash}")).await;
    assert_eq!(r.status(), 200);
    let r = get_if_none_match(o, u, "/api/v1/conversations", &etag).await;
    assert_eq!(r.status(), 304);
}

#[tokio::test]
async fn production_refuses_dev_and_short_secrets_at_start_up() {
    let db = TestDb::new().await;
    // The test configuration carries the dev secrets shipped in config/origin.toml.
    let mut config = Config::for_database(db.url());
    config.environment = "production".into();
    let err = App::build(config.clone())
        .await
        .err()
        .expect("start-up fails")
        .to_string();
    for env in ["(SECRET_KEY)", "(JWT_SECRET_KEY)", "(ENCRYPTION_KEY)"] {
        assert!(
            err.lines()
                .any(|l| l.contains(env) && l.contains("development value")),
            "{env} reported: {err}"
        );
    }

    // Short secrets are refused too, every one in the same report.
    config.auth.secret_key = "too-short".into();
    config.auth.jwt_secret_key = "also-too-short".into();
    let err = App::build(config.clone())
        .await
        .err()
        .expect("start-up fails")
        .to_string();
    assert!(err.contains("(SECRET_KEY) is 9 bytes"), "{err}");
    assert!(err.contains("(JWT_SECRET_KEY) is 14 bytes"), "{err}");
    assert!(
        err.contains("(ENCRYPTION_KEY) is a development value"),
        "{err}"
    );

    // Random secrets of 32 bytes and more start.
    config.auth.secret_key = "k".repeat(32);
    config.auth.jwt_secret_key = "a-random-jwt-secret-of-more-than-32-bytes".into();
    config.auth.encryption_key = "bGxtc2VsZWN0LXRlc3QtZmVybmV0LWtleS0zMmJ5dGU=".into();
    let app = App::build(config).await.expect("production start-up");
    drop(app);
    // Outside production the shipped dev values keep working (every other test relies on it).
    let _ = spawn_origin(|_| {}).await;
}

/// The claims of a JWT (payload only; the origin checks the signature).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("JSON claims")
}

/// `POST /api/v1/auth/logout` as the SPA sends it: all four auth cookies, no CSRF header.
async fn logout_with_cookies(o: &TestOrigin, u: &TestUser) -> reqwest::Response {
    o.http
        .post(o.url("/api/v1/auth/logout"))
        .header(
            "Cookie",
            format!(
                "access_token_cookie={}; csrf_access_token={}; refresh_token_cookie={}; csrf_refresh_token={}",
                u.token, u.csrf_access, u.refresh_token, u.csrf_refresh
            ),
        )
        .send()
        .await
        .expect("logout")
}

async fn assert_revoked(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 401, "{what}");
    assert_eq!(header(&r, "cache-control"), "no-store", "{what}");
    assert_eq!(
        json(r).await,
        json!({"error": "invalid_token", "message": "Token has been revoked"}),
        "{what}"
    );
}

#[tokio::test]
async fn logout_revokes_access_and_refresh_tokens_and_invalidates_the_users_cache_group() {
    let s = origin_with_user("cleo").await;
    let (o, u) = (s.origin(), s.user());
    let uid = o.user_id("cleo").await;
    let id = o.create_conversation(u, Some("before logout")).await;
    let list = "/api/v1/conversations?page=1&limit=20";
    let detail = format!("/api/v1/conversations/{id}");
    let user_group = format!("\"user:{uid}\"");

    // Every per-user cacheable response belongs to the user's group; the revocation check adds
    // no statement (list: auth + page, detail: one statement for user + conversation + one for
    // the messages).
    for (path, budget) in [
        (list.to_string(), 2),
        (detail.clone(), 2),
        (format!("{detail}/export"), 2),
        ("/api/v1/comparisons".to_string(), 2),
    ] {
        let r = get(o, u, &path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(statements(&r), budget, "{path}");
        assert!(header(&r, "cache-groups").contains(&user_group), "{path}");
    }
    let etag = header(&get(o, u, list).await, "etag");
    assert_eq!(
        statements(&get_if_none_match(o, u, list, &etag).await),
        1,
        "a 304 still costs only the auth load"
    );

    // A revocation that expired long ago is cleaned up by the next logout.
    let db = o.db.client().await;
    db.execute(
        "INSERT INTO revoked_tokens (jti, user_id, token_type, expires_at)
         VALUES ('expired-jti', $1, 'access', now() - interval '1 hour')",
        &[&uid],
    )
    .await
    .unwrap();

    let r = logout_with_cookies(o, u).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(header(&r, "cache-group-invalidation"), user_group);
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 4);
    assert_eq!(json(r).await, json!({"message": "Logged out"}));

    // Both tokens are in the deny-list until they expire; the expired row is gone.
    let access = jwt_claims(&u.token);
    let refresh = jwt_claims(&u.refresh_token);
    let rows = db
        .query(
            "SELECT jti, user_id, token_type, extract(epoch FROM expires_at)::bigint
             FROM revoked_tokens ORDER BY token_type",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, i64, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                access["jti"].as_str().unwrap().to_string(),
                uid,
                "access".to_string(),
                access["exp"].as_i64().unwrap()
            ),
            (
                refresh["jti"].as_str().unwrap().to_string(),
                uid,
                "refresh".to_string(),
                refresh["exp"].as_i64().unwrap()
            ),
        ]
    );

    // The logged-out access token is refused everywhere, by bearer and by cookie ...
    assert_revoked(get(o, u, list).await, "list").await;
    assert_revoked(get(o, u, &detail).await, "detail").await;
    assert_revoked(
        get_if_none_match(o, u, list, &etag).await,
        "a conditional list never answers 304",
    )
    .await;
    assert_revoked(
        o.http
            .get(o.url("/api/v1/auth/me"))
            .header("Cookie", u.access_cookie())
            .send()
            .await
            .unwrap(),
        "me by cookie",
    )
    .await;
    // ... and so is the refresh token.
    assert_revoked(
        o.http
            .post(o.url("/api/v1/auth/refresh"))
            .header(
                "Cookie",
                format!(
                    "refresh_token_cookie={}; csrf_refresh_token={}",
                    u.refresh_token, u.csrf_refresh
                ),
            )
            .header("X-CSRF-Token", &u.csrf_refresh)
            .send()
            .await
            .unwrap(),
        "refresh",
    )
    .await;

    // Logging in again gives working tokens, at the same statement cost.
    let again = o.login("cleo", &u.password).await;
    let token = llmselect_e2e::origin::set_cookie_value(again.headers(), "access_token_cookie")
        .expect("new access token");
    let r = o
        .http
        .get(o.url(list))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(statements(&r), 2);
}

#[tokio::test]
async fn logout_with_a_bearer_token_revokes_it_and_logout_without_tokens_still_answers() {
    let s = origin_with_user("dora").await;
    let (o, u) = (s.origin(), s.user());
    let uid = o.user_id("dora").await;
    let r = o
        .request_as(u, Method::POST, "/api/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "cache-group-invalidation"),
        format!("\"user:{uid}\"")
    );
    assert_revoked(get(o, u, "/api/v1/conversations").await, "bearer").await;
    let n: i64 =
        o.db.client()
            .await
            .query_one("SELECT count(*) FROM revoked_tokens", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 1, "only the access token was presented");

    // No (valid) token: the old stateless answer, nothing to invalidate.
    for r in [
        o.http
            .post(o.url("/api/v1/auth/logout"))
            .send()
            .await
            .unwrap(),
        o.http
            .post(o.url("/api/v1/auth/logout"))
            .header("Authorization", "Bearer not-a-jwt")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "cache-group-invalidation"), "");
        assert_eq!(json(r).await, json!({"message": "Logged out"}));
    }
}

/// `POST /api/v1/auth/login` as if from `client` (the origin trusts `X-Forwarded-For` from the
/// test's loopback address).
async fn login_from(o: &TestOrigin, client: &str, username: &str, password: &str) -> u16 {
    o.http
        .post(o.url("/api/v1/auth/login"))
        .header("X-Forwarded-For", client)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

#[tokio::test]
async fn login_is_limited_per_username_across_addresses() {
    let o = spawn_origin(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.login = "100 per minute".into();
        c.rate_limit.login_per_username = "3 per minute".into();
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let u = o.user("gwen").await; // its login is attempt 1 on "gwen"
    assert_eq!(login_from(&o, "198.51.100.1", "gwen", "guess-1").await, 401);
    assert_eq!(login_from(&o, "198.51.100.2", "GWEN", "guess-2").await, 401);
    // Every further attempt on the name is refused, from any address, even with the password.
    let r = o
        .http
        .post(o.url("/api/v1/auth/login"))
        .header("X-Forwarded-For", "203.0.113.9")
        .json(&json!({"username": "gwen", "password": "guess-3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(
        json(r).await,
        json!({"error": "too_many_requests", "message": "3 per 1 minute"})
    );
    assert_eq!(
        login_from(&o, "203.0.113.10", "gwen", &u.password).await,
        429
    );
    // Other usernames, from the same addresses, are not affected.
    o.register("hugo", "password-hugo").await;
    assert_eq!(
        login_from(&o, "198.51.100.1", "hugo", "password-hugo").await,
        200
    );
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_64() {
    let o = spawn_origin(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.login = "2 per minute".into();
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    // Two addresses of one /64 share a budget (distinct usernames: only the address limit counts).
    assert_eq!(login_from(&o, "2001:db8:7:1::1", "u1", "p").await, 401);
    assert_eq!(login_from(&o, "2001:db8:7:1:ffff::2", "u2", "p").await, 401);
    assert_eq!(
        login_from(&o, "2001:db8:7:1:1234:5678:9abc:def0", "u3", "p").await,
        429
    );
    // The next /64 has its own.
    assert_eq!(login_from(&o, "2001:db8:7:2::1", "u4", "p").await, 401);
}
