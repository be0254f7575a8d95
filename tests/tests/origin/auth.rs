//! Registration, login, logout, refresh, me; bearer and cookie+CSRF authentication; bad input.

use llmselect_e2e::http::header;
use llmselect_e2e::origin::{set_cookie_value, spawn_origin};
use reqwest::Method;
use serde_json::json;

use crate::support::{get_anonymous, json, me_with_bearer, origin_with_user, send_as, send_json};

#[tokio::test]
async fn registration_answers_201_and_is_not_cached() {
    let o = spawn_origin(|_| {}).await;
    let r = o.register("Alice", "password-123").await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(json(r).await, json!({"message": "Registration successful"}));
}

/// The `Set-Cookie` values of a response.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn login_is_case_insensitive_and_sets_the_four_auth_cookies() {
    let o = spawn_origin(|_| {}).await;
    o.register("Alice", "password-123").await;
    let r = o.login("ALICE", "password-123").await;
    assert_eq!(r.status(), 200);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 4);
    let access = cookies
        .iter()
        .find(|c| c.starts_with("access_token_cookie="))
        .unwrap();
    assert!(
        access.contains("HttpOnly") && access.contains("Path=/") && access.contains("SameSite=Lax")
    );
    assert!(!access.contains("Max-Age") && !access.contains("Expires"));
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("csrf_access_token="))
        .unwrap();
    assert!(!csrf.contains("HttpOnly"));
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(
        json(r).await,
        json!({"message": "Login successful", "user": {"username": "alice"}})
    );
}

#[tokio::test]
async fn the_access_token_carries_flask_jwt_extended_claims() {
    let s = origin_with_user("alice").await;
    let payload = s.user().token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["type"], "access");
    assert_eq!(claims["fresh"], false);
    assert!(claims["sub"].is_string());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        15 * 60
    );
}

#[tokio::test]
async fn me_answers_the_user_of_a_bearer_token_privately() {
    let s = origin_with_user("alice").await;
    let r = me_with_bearer(s.origin(), &s.user().token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "private, no-store");
    assert_eq!(json(r).await, json!({"user": {"username": "alice"}}));
}

#[tokio::test]
async fn logout_expires_the_four_auth_cookies() {
    let o = spawn_origin(|_| {}).await;
    let r = o
        .http
        .post(o.url("/api/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cleared = set_cookies(&r);
    assert_eq!(cleared.len(), 4);
    assert!(cleared
        .iter()
        .all(|c| c.contains("=;") && c.contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT")));
    assert_eq!(json(r).await, json!({"message": "Logged out"}));
}

#[tokio::test]
async fn first_user_is_admin_and_duplicates_are_rejected() {
    let o = spawn_origin(|_| {}).await;
    o.user("first").await;
    o.user("second").await;
    let db = o.db.client().await;
    let rows = db
        .query(
            "SELECT username, is_admin, password_hash FROM users ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert!(rows[0].get::<_, bool>(1));
    assert!(!rows[1].get::<_, bool>(1));
    let hash: String = rows[0].get(2);
    assert!(hash.starts_with("scrypt:16:8:1$"), "{hash}");

    let r = o.register("FIRST", "password-xyz").await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        json(r).await,
        json!({"error": "bad_request", "message": "Username already exists", "details": {"field": "username"}})
    );
}

#[tokio::test]
async fn closed_registration_admits_only_the_first_user() {
    let o = spawn_origin(|c| c.auth.allow_open_registration = false).await;
    assert_eq!(o.register("owner", "password-123").await.status(), 201);
    let r = o.register("intruder", "password-123").await;
    assert_eq!(r.status(), 400);
    let body = json(r).await;
    assert_eq!(body["details"]["code"], "registration_closed");
}

#[tokio::test]
async fn closed_registration_with_a_token_needs_that_token() {
    let o = spawn_origin(|c| {
        c.auth.allow_open_registration = false;
        c.auth.registration_token = Some("letmein".into());
    })
    .await;
    let r = o.register("someone", "password-123").await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        json(r).await,
        json!({"error": "authorization_error", "message": "Invalid registration token supplied"})
    );
    let r = o
        .http
        .post(o.url("/api/v1/auth/register"))
        .json(&json!({"username": "someone", "password": "password-123", "registration_token": "letmein"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn login_failures_are_generic() {
    let s = origin_with_user("carol").await;
    let (o, _carol) = (s.origin(), s.user());
    // A wrong password for an existing user and any password for an unknown one (even carol's)
    // must be indistinguishable: same status, headers and body, and the same database work.
    let mut answers = Vec::new();
    for (u, p) in [
        ("carol", "wrong-password"),
        ("nobody", "password-carol"),
        ("nobody", "wrong-password"),
    ] {
        let r = o.login(u, p).await;
        assert_eq!(r.status(), 401, "{u}");
        assert_eq!(header(&r, "cache-control"), "no-store");
        assert!(header(&r, "set-cookie").is_empty(), "{u}");
        let mut headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-response-time"))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect();
        headers.sort();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            json!({"error": "authentication_error", "message": "Invalid username or password"})
        );
        answers.push((status, headers, body));
    }
    assert_eq!(answers[0], answers[1], "wrong password vs unknown user");
    assert_eq!(answers[1], answers[2]);
}

#[tokio::test]
async fn werkzeug_pbkdf2_hashes_still_log_in() {
    let o = spawn_origin(|_| {}).await;
    // pbkdf2:sha256:1000 of "legacy-password" with salt "saltsalt", computed by Werkzeug's algorithm.
    let mut out = [0u8; 32];
    pbkdf2_sha256(b"legacy-password", b"saltsalt", 1000, &mut out);
    let hash = format!("pbkdf2:sha256:1000$saltsalt${}", hex_encode(&out));
    let db = o.db.client().await;
    db.execute(
        "INSERT INTO users (username, password_hash) VALUES ('legacy', $1)",
        &[&hash],
    )
    .await
    .unwrap();
    assert_eq!(o.login("legacy", "legacy-password").await.status(), 200);
    assert_eq!(o.login("legacy", "other-password").await.status(), 401);
}

/// PBKDF2-HMAC-SHA256 written out for the test, independent of the origin's implementation.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8; 32]) {
    fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(k.map(|b| b ^ 0x36));
        inner.update(data);
        let mut outer = Sha256::new();
        outer.update(k.map(|b| b ^ 0x5c));
        outer.update(inner.finalize());
        outer.finalize().into()
    }
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut t = u;
    for _ in 1..rounds {
        u = hmac(password, &u);
        for (a, b) in t.iter_mut().zip(u.iter()) {
            *a ^= b;
        }
    }
    *out = t;
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn cookie_auth_needs_csrf_on_mutations_and_bearer_does_not() {
    let s = origin_with_user("dave").await;
    let (o, u) = (s.origin(), s.user());
    let cid = o.create_conversation(u, Some("t")).await;
    let path = o.url(&format!("/api/v1/conversations/{cid}"));

    // GET with the cookie needs no CSRF.
    let r = o
        .http
        .get(&path)
        .header("Cookie", u.access_cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let patch = |csrf: Option<&str>| {
        let mut b = o
            .http
            .patch(&path)
            .header("Cookie", u.access_cookie())
            .json(&json!({"title": "renamed"}));
        if let Some(c) = csrf {
            b = b.header("X-CSRF-Token", c);
        }
        b
    };
    let r = patch(None).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        json(r).await,
        json!({"error": "authentication_error", "message": "Missing CSRF token"})
    );
    let r = patch(Some("nope")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        json(r).await["message"],
        "CSRF double submit tokens do not match"
    );
    let r = patch(Some(&u.csrf_access)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Bearer: no CSRF needed.
    let r = send_json(
        o,
        u,
        Method::PATCH,
        &format!("/api/v1/conversations/{cid}"),
        &json!({"title": "again"}),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_request_without_credentials_is_401_missing_cookie() {
    let o = spawn_origin(|_| {}).await;
    let r = get_anonymous(&o, "/api/v1/conversations").await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(
        json(r).await,
        json!({"error": "authentication_error", "message": "Missing cookie \"access_token_cookie\""})
    );
}

#[tokio::test]
async fn forged_tokens_and_refresh_tokens_are_not_access_tokens() {
    let s = origin_with_user("erin").await;
    let (o, u) = (s.origin(), s.user());
    let mut forged = u.token.clone();
    forged.push('x');
    for (token, what) in [(&forged, "forged"), (&u.refresh_token, "refresh token")] {
        let r = me_with_bearer(o, token).await;
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(json(r).await["error"], "invalid_token", "{what}");
    }
}

#[tokio::test]
async fn an_expired_access_token_is_401_token_expired() {
    let s = origin_with_user("erin").await;
    let o = s.origin();
    let keys = llmselect_origin::JwtKeys::new(&o.config.auth.jwt_secret_key);
    let expired = keys.issue(1, "access", -5).unwrap();
    let r = me_with_bearer(o, &expired.token).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        json(r).await,
        json!({"error": "token_expired", "message": "Authentication token has expired"})
    );
}

#[tokio::test]
async fn a_valid_token_of_an_unknown_user_is_401() {
    let o = spawn_origin(|_| {}).await;
    let keys = llmselect_origin::JwtKeys::new(&o.config.auth.jwt_secret_key);
    let ghost = keys.issue(999_999, "access", 60).unwrap();
    let r = me_with_bearer(&o, &ghost.token).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        json(r).await,
        json!({"msg": "Error loading the user 999999"})
    );
}

#[tokio::test]
async fn refresh_uses_the_refresh_cookie_and_its_csrf() {
    let s = origin_with_user("frank").await;
    let (o, u) = (s.origin(), s.user());
    let cookie = format!("refresh_token_cookie={}", u.refresh_token);
    let r = o
        .http
        .post(o.url("/api/v1/auth/refresh"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["message"], "Missing CSRF token");
    let r = o
        .http
        .post(o.url("/api/v1/auth/refresh"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &u.csrf_refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = set_cookie_value(r.headers(), "access_token_cookie").expect("new access cookie");
    assert!(set_cookie_value(r.headers(), "csrf_access_token").is_some());
    assert_eq!(json(r).await, json!({"message": "Token refreshed"}));
    let r = me_with_bearer(o, &token).await;
    assert_eq!(r.status(), 200);
}

/// `POST /api/v1/auth/register` with a raw `body` and `content_type`, on an origin whose body
/// limit is 1 KiB; asserts that no user was written.
async fn register_raw(body: String, content_type: &str) -> (u16, String, serde_json::Value) {
    let o = spawn_origin(|c| c.http.max_body_bytes = 1024).await;
    let r = o
        .http
        .post(o.url("/api/v1/auth/register"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, cache_control) = (r.status().as_u16(), header(&r, "cache-control"));
    let v = json(r).await;
    assert_eq!(o.row_count("users").await, 0, "nothing was written");
    (status, cache_control, v)
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let (status, _, body) = register_raw("{not json".into(), "application/json").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("Failed to decode JSON object"));
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415() {
    let (status, _, body) = register_raw("{}".into(), "text/plain").await;
    assert_eq!(status, 415);
    assert_eq!(body["error"], "unsupported_media_type");
}

#[tokio::test]
async fn an_invalid_body_is_422_naming_every_field() {
    let (status, _, body) = register_raw(
        r#"{"username": 5, "extra": true}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"error": "validation_error", "message": "Invalid request payload", "details": {
            "username": ["Not a valid string."],
            "password": ["Missing data for required field."],
            "extra": ["Unknown field."]
        }})
    );
    let (status, _, _) = register_raw(r#"["a"]"#.into(), "application/json").await;
    assert_eq!(status, 422, "a JSON array is not an object");
    let (status, _, d) = register_raw(
        r#"{"username": "ab", "password": "short"}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        d["details"]["username"],
        json!(["Length must be between 3 and 50."])
    );
    assert_eq!(
        d["details"]["password"],
        json!(["Length must be between 8 and 128."])
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let big = format!(r#"{{"username": "{}"}}"#, "x".repeat(2000));
    let (status, cache_control, body) = register_raw(big, "application/json").await;
    assert_eq!(status, 413);
    assert_eq!(cache_control, "no-store");
    assert_eq!(body["error"], "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let o = spawn_origin(|_| {}).await;
    let r = get_anonymous(&o, "/api/v1/nope").await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"], "not_found");
    let r = o.http.put(o.url("/api/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(json(r).await["error"], "method_not_allowed");
    // Comparison ids are integers: anything else is a route 404.
    let u = o.user("gina").await;
    let r = send_as(&o, &u, Method::DELETE, "/api/v1/comparisons/abc").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn rate_limits_answer_429_per_client() {
    let o = spawn_origin(|c| {
        c.rate_limit.enabled = true;
        c.rate_limit.login = "2 per minute".into();
    })
    .await;
    for _ in 0..2 {
        assert_eq!(o.login("x", "y").await.status(), 401);
    }
    let r = o.login("x", "y").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(
        json(r).await,
        json!({"error": "too_many_requests", "message": "2 per 1 minute"})
    );
    // /auth/me has no limit.
    for _ in 0..5 {
        assert_eq!(get_anonymous(&o, "/api/v1/auth/me").await.status(), 401);
    }
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let o = spawn_origin(|_| {}).await;
    let r = o
        .http
        .request(Method::OPTIONS, o.url("/api/v1/conversations"))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "PATCH")
        .header(
            "Access-Control-Request-Headers",
            "x-csrf-token, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        "http://localhost:3000"
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), "true");
    assert_eq!(
        header(&r, "access-control-allow-methods"),
        "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
    );
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        "x-csrf-token, content-type"
    );

    let r = o
        .http
        .get(o.url("/api/v1/models"))
        .header("Origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert!(header(&r, "vary").contains("Origin"));
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "x-frame-options"), "DENY");
}
