//! Issue 9, "fail closed", on the origin: per-user cache directives only for our proxy, ETags
//! that change with the representation version, dev secrets refused in production, logout
//! that revokes tokens and purges the user's cached responses, and bounded rate limits with a
//! per-username login limit.

use llmselect_e2e::db::TestDb;
use llmselect_e2e::origin::spawn_origin;
use llmselect_origin::{App, Config};
use sha2::{Digest, Sha256};

use crate::support::{get, get_anonymous, get_if_none_match, header, origin_with_user};

#[tokio::test]
async fn per_user_responses_target_only_our_proxy() {
    let (o, u) = origin_with_user("amy").await;
    let id = o.create_conversation(&u, Some("t")).await;
    for path in [
        "/api/v1/conversations".to_string(),
        format!("/api/v1/conversations/{id}"),
        format!("/api/v1/conversations/{id}/export"),
        "/api/v1/comparisons".to_string(),
    ] {
        let r = get(&o, &u, &path).await;
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
        let r = get_if_none_match(&o, &u, &path, &header(&r, "etag")).await;
        assert_eq!(r.status(), 304, "{path}");
        assert_eq!(header(&r, "cdn-cache-control"), "", "{path}");
        assert_eq!(header(&r, "llmselect-cache-control"), targeted, "{path}");
    }
    // Public data keeps CDN-Cache-Control and has no proxy-only field.
    let r = get_anonymous(&o, "/api/v1/models").await;
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
    let (o, u) = origin_with_user("bea").await;
    let r = get_anonymous(&o, "/api/v1/models").await;
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
    let r = get(&o, &u, "/api/v1/conversations").await;
    let etag = header(&r, "etag");
    let hash = etag.strip_prefix("\"v2-").expect("versioned ETag");
    let r = get_if_none_match(&o, &u, "/api/v1/conversations", &format!("\"{hash}")).await;
    assert_eq!(r.status(), 200);
    let r = get_if_none_match(&o, &u, "/api/v1/conversations", &etag).await;
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
