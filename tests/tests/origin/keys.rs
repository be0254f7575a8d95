//! Provider keys: save, list, override flags, encryption at rest, system keys, isolation.

use llmselect_e2e::http::header;
use llmselect_e2e::origin::spawn_origin;
use reqwest::Method;
use serde_json::json;

use crate::support::{get, get_anonymous, json, origin_with_user, send_as, send_json};

#[tokio::test]
async fn save_list_and_encrypt_at_rest() {
    let s = origin_with_user("alice").await;
    let (o, u) = (s.origin(), s.user());
    let r = send_json(
        o,
        u,
        Method::POST,
        "/api/v1/keys",
        &json!({"openai": "  sk-test-openai  ", "anthropic": "", "mistral_override": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("cache-group-invalidation").is_none(),
        "nothing cached depends on keys"
    );
    assert_eq!(
        json(r).await,
        json!({"message": "API keys updated successfully"})
    );

    let r = get(o, u, "/api/v1/keys").await;
    assert_eq!(header(&r, "cache-control"), "private, no-store");
    assert_eq!(
        json(r).await,
        json!({"keys": [{"provider": "openai", "override_system_key": false}]})
    );

    // Re-saving with the override flag only updates the flag (F7).
    let r = send_json(
        o,
        u,
        Method::POST,
        "/api/v1/keys",
        &json!({"openai_override": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let keys = json(get(o, u, "/api/v1/keys").await).await;
    assert_eq!(keys["keys"][0]["override_system_key"], true);

    let db = o.db.client().await;
    let row = db
        .query_one(
            "SELECT key_encrypted FROM api_keys WHERE provider = 'openai'",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<u8> = row.get(0);
    assert!(stored.starts_with(b"gAAAA"), "a Fernet token");
    assert!(!String::from_utf8_lossy(&stored).contains("sk-test"));
    let cipher = llmselect_origin::KeyCipher::new(&o.config.auth.encryption_key).unwrap();
    assert_eq!(
        cipher.decrypt(&stored).unwrap(),
        "sk-test-openai",
        "trimmed, then encrypted"
    );
}

#[tokio::test]
async fn key_resolution_prefers_override_then_system_then_user() {
    let o = spawn_origin(|c| {
        c.providers.openai_api_key = Some("system-openai".into());
        c.providers.mistral_api_key = Some("system-mistral".into());
    })
    .await;
    let u = o.user("bob").await;
    let user_keys = json!({"openai": "user-openai", "openai_override": true, "mistral": "user-mistral", "gemini": "user-gemini"});
    send_json(&o, &u, Method::POST, "/api/v1/keys", &user_keys).await;
    let state_config = o.config.clone();
    let metrics = std::sync::Arc::new(llmselect_origin::Metrics::new());
    let pool = llmselect_origin::db::build_pool(&state_config).unwrap();
    let state =
        llmselect_origin::AppState::new(state_config, pool.clone(), metrics.clone()).unwrap();
    let conn = pool.get().await.unwrap();
    let obs = llmselect_origin::db::QueryObserver::new(metrics, std::time::Duration::from_secs(1));
    let uid: i64 = conn
        .client
        .query_one("SELECT id FROM users WHERE username = 'bob'", &[])
        .await
        .unwrap()
        .get(0);
    let keys = llmselect_origin::resolve_provider_keys(
        &state,
        &conn.db(&obs),
        uid,
        &["openai", "mistral", "gemini", "anthropic"],
    )
    .await
    .unwrap();
    assert_eq!(obs.statements(), 1, "one statement for all providers");
    assert_eq!(keys["openai"], "user-openai");
    assert_eq!(keys["mistral"], "system-mistral");
    assert_eq!(keys["gemini"], "user-gemini");
    assert!(!keys.contains_key("anthropic"));
}

#[tokio::test]
async fn bad_key_bodies_and_isolation() {
    let o = spawn_origin(|_| {}).await;
    let a = o.user("carol").await;
    let b = o.user("dave").await;
    let r = send_json(
        &o,
        &a,
        Method::POST,
        "/api/v1/keys",
        &json!({"openai": 5, "cohere": "x", "gemini_override": "yes"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        json(r).await["details"],
        json!({"openai": ["Not a valid string."], "cohere": ["Unknown field."], "gemini_override": ["Not a valid boolean."]})
    );
    send_json(
        &o,
        &a,
        Method::POST,
        "/api/v1/keys",
        &json!({"gemini": "g"}),
    )
    .await;
    let keys = json(get(&o, &b, "/api/v1/keys").await).await;
    assert_eq!(keys, json!({"keys": []}));
    let r = get_anonymous(&o, "/api/v1/keys").await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn system_keys_are_public_booleans() {
    let o = spawn_origin(|c| c.providers.gemini_api_key = Some("g-key".into())).await;
    let r = get_anonymous(&o, "/api/v1/keys/system-keys").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "public, max-age=300");
    assert_eq!(header(&r, "cdn-cache-control"), "public, max-age=3600");
    assert_eq!(header(&r, "cache-groups"), "\"all\", \"system-keys\"");
    let etag = header(&r, "etag");
    assert_eq!(
        json(r).await,
        json!({"system_keys": {"openai": false, "anthropic": false, "gemini": true, "mistral": false}})
    );
    let r = o
        .http
        .get(o.url("/api/v1/keys/system-keys"))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

#[tokio::test]
async fn a_stored_key_can_be_deleted() {
    let s = origin_with_user("kim").await;
    let (o, u) = (s.origin(), s.user());
    let other = o.user("lee").await;
    for user in [u, &other] {
        let r = send_json(
            o,
            user,
            Method::POST,
            "/api/v1/keys",
            &json!({"openai": "sk-1", "mistral": "m-1"}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let r = send_as(o, u, Method::DELETE, "/api/v1/keys/openai").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert!(
        r.headers().get("cache-group-invalidation").is_none(),
        "nothing cached depends on keys"
    );
    assert_eq!(
        json(r).await,
        json!({"message": "API key deleted", "provider": "openai"})
    );
    let keys = json(get(o, u, "/api/v1/keys").await).await;
    assert_eq!(
        keys,
        json!({"keys": [{"provider": "mistral", "override_system_key": false}]})
    );
    // The other user's keys are untouched.
    let keys = json(get(o, &other, "/api/v1/keys").await).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    // Deleting again, or an unknown provider, is a 404.
    for path in ["/api/v1/keys/openai", "/api/v1/keys/cohere"] {
        let r = send_as(o, u, Method::DELETE, path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(json(r).await["error"], "not_found");
    }
    assert_eq!(o.row_count("api_keys").await, 3);
}
