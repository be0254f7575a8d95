//! Account administration (issue 15): the admin API (`/api/v1/admin/users…`) and the command line
//! (`llmselect-origin user …`, through `llmselect_origin::cli::run_args`) create, disable, enable,
//! delete users and reset passwords; a disabled user can neither log in nor use a token; a user
//! changes their own password (`POST /api/v1/auth/password`), which revokes every older token.
//! The checks add no statement to requests, and every write that changes cached data names
//! `user:<id>` in `Cache-Group-Invalidation` and in its outbox row.

use llmselect_e2e::http::header;
use llmselect_e2e::origin::{set_cookie_value, TestOrigin, TestUser};
use llmselect_e2e::stack::Stack;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{get, json, me_with_bearer, send_as, send_json, statements};

/// A NATS address nobody listens on: the origin writes outbox rows that stay in the table.
const UNREACHABLE_BUS: &str = "nats://127.0.0.1:1";

/// An origin with closed registration, an outbox that keeps its rows, and its first user `root`
/// (an administrator).
async fn admin_stack() -> Stack {
    Stack::builder()
        .origin(|cfg| {
            cfg.auth.allow_open_registration = false;
            cfg.auth.registration_token = None;
            cfg.bus.url = Some(UNREACHABLE_BUS.into());
        })
        .user("root")
        .start()
        .await
}

/// `(groups, paths)` of the outbox row `id`.
async fn outbox_row(o: &TestOrigin, id: i64) -> (Vec<String>, Vec<String>) {
    let r =
        o.db.client()
            .await
            .query_one(
                "SELECT groups, paths FROM cache_invalidations WHERE id = $1",
                &[&id],
            )
            .await
            .expect("the outbox row");
    (r.get(0), r.get(1))
}

async fn outbox_len(o: &TestOrigin) -> i64 {
    o.row_count("cache_invalidations").await
}

/// Asserts that `r` invalidates `user:<uid>` (header and outbox row, with `path` when given).
async fn assert_invalidates_user(o: &TestOrigin, r: &reqwest::Response, uid: i64, path: &str) {
    assert_eq!(
        header(r, "cache-group-invalidation"),
        format!("\"user:{uid}\"")
    );
    let id: i64 = header(r, "llmselect-invalidation-id")
        .parse()
        .expect("LLMSelect-Invalidation-Id");
    let (groups, paths) = outbox_row(o, id).await;
    assert_eq!(groups, vec![format!("user:{uid}")]);
    assert_eq!(paths, vec![path.to_string()]);
}

/// Logs in; the session on a 200, else the status and body.
async fn login(o: &TestOrigin, username: &str, password: &str) -> Result<TestUser, (u16, Value)> {
    let r = o.login(username, password).await;
    if r.status() != 200 {
        return Err((r.status().as_u16(), json(r).await));
    }
    Ok(session(&r, username, password))
}

/// The session of a response that set the four auth cookies.
fn session(r: &reqwest::Response, username: &str, password: &str) -> TestUser {
    let get = |n| set_cookie_value(r.headers(), n).unwrap_or_else(|| panic!("cookie {n}"));
    TestUser {
        username: username.to_string(),
        password: password.to_string(),
        token: get("access_token_cookie"),
        csrf_access: get("csrf_access_token"),
        refresh_token: get("refresh_token_cookie"),
        csrf_refresh: get("csrf_refresh_token"),
    }
}

/// `POST /api/v1/auth/refresh` with `u`'s refresh cookie and CSRF value.
async fn refresh(o: &TestOrigin, u: &TestUser) -> reqwest::Response {
    o.http
        .post(o.url("/api/v1/auth/refresh"))
        .header(
            "Cookie",
            format!("refresh_token_cookie={}", u.refresh_token),
        )
        .header("X-CSRF-Token", &u.csrf_refresh)
        .send()
        .await
        .expect("refresh")
}

async fn assert_401(r: reqwest::Response, error: &str, what: &str) {
    assert_eq!(r.status(), 401, "{what}");
    assert_eq!(json(r).await["error"], error, "{what}");
}

const LIST: &str = "/api/v1/conversations";

#[tokio::test]
async fn admin_api_creates_disables_enables_resets_and_deletes_users() {
    let s = admin_stack().await;
    let (o, root) = (s.origin(), s.user());

    // Registration stays closed; an administrator creates the account anyway.
    let r = o.register("bob", "bob-password-1").await;
    assert_eq!(r.status(), 400);
    let r = send_json(
        o,
        root,
        Method::POST,
        "/api/v1/admin/users",
        &json!({"username": "Bob", "password": "bob-password-1"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert!(r.headers().get("cache-group-invalidation").is_none());
    let created = json(r).await["user"].clone();
    assert_eq!(created["username"], "bob");
    assert_eq!(created["is_admin"], false);
    assert_eq!(created["disabled"], false);
    let bob_id = created["id"].as_i64().unwrap();
    let r = send_json(
        o,
        root,
        Method::POST,
        "/api/v1/admin/users",
        &json!({"username": "bob", "password": "another-password"}),
    )
    .await;
    assert_eq!(r.status(), 400, "duplicate username");
    let r = send_json(
        o,
        root,
        Method::POST,
        "/api/v1/admin/users",
        &json!({"username": "x", "password": "short"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let details = json(r).await["details"].clone();
    assert!(details["username"].is_array() && details["password"].is_array());

    let bob = login(o, "bob", "bob-password-1")
        .await
        .expect("bob logs in");
    let cid = o.create_conversation(&bob, Some("bob's")).await;
    let detail = format!("/api/v1/conversations/{cid}");
    assert_eq!(
        send_as(o, &bob, Method::GET, "/api/v1/admin/users")
            .await
            .status(),
        403
    );
    let users = json(get(o, root, "/api/v1/admin/users").await).await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "bob"]);

    // Disable: the header and the outbox row name the user's group; every token is refused
    // (bearer, the detail path that loads user and conversation in one statement, refresh), and
    // logging in too, but only after the right password.
    let user_path = format!("/api/v1/admin/users/{bob_id}");
    let before = outbox_len(o).await;
    let r = send_json(
        o,
        root,
        Method::PATCH,
        &user_path,
        &json!({"disabled": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_invalidates_user(o, &r, bob_id, &user_path).await;
    assert_eq!(json(r).await["user"]["disabled"], true);
    assert_eq!(outbox_len(o).await, before + 1);
    assert_401(
        me_with_bearer(o, &bob.token).await,
        "account_disabled",
        "me",
    )
    .await;
    assert_401(get(o, &bob, LIST).await, "account_disabled", "list").await;
    assert_401(get(o, &bob, &detail).await, "account_disabled", "detail").await;
    assert_401(refresh(o, &bob).await, "account_disabled", "refresh").await;
    let (status, body) = login(o, "bob", "bob-password-1").await.unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("account_disabled"))
    );
    let (status, body) = login(o, "bob", "wrong-password").await.unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Invalid username or password");

    // Enable: the same tokens work again, and the checks cost no statement.
    let r = send_json(
        o,
        root,
        Method::PATCH,
        &user_path,
        &json!({"disabled": false}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_invalidates_user(o, &r, bob_id, &user_path).await;
    let r = get(o, &bob, LIST).await;
    assert_eq!(r.status(), 200);
    assert_eq!(statements(&r), 2, "auth + list");
    let r = get(o, &bob, &detail).await;
    assert_eq!(r.status(), 200);
    assert_eq!(statements(&r), 2, "user with conversation + messages");

    // An administrator cannot lock themselves out.
    let root_path = format!("/api/v1/admin/users/{}", o.user_id("root").await);
    let r = send_json(
        o,
        root,
        Method::PATCH,
        &root_path,
        &json!({"disabled": true}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        send_as(o, root, Method::DELETE, &root_path).await.status(),
        400
    );

    // Reset: every token of bob is revoked, the old password no longer works.
    let password_path = format!("{user_path}/password");
    let r = send_json(
        o,
        root,
        Method::POST,
        &password_path,
        &json!({"password": "bob-new-password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_invalidates_user(o, &r, bob_id, &password_path).await;
    assert_401(get(o, &bob, LIST).await, "invalid_token", "old token").await;
    assert_401(refresh(o, &bob).await, "invalid_token", "old refresh").await;
    assert!(login(o, "bob", "bob-password-1").await.is_err());
    let bob = login(o, "bob", "bob-new-password")
        .await
        .expect("new password");
    assert_eq!(get(o, &bob, LIST).await.status(), 200);

    // Delete: the user and everything they own.
    let r = send_as(o, root, Method::DELETE, &user_path).await;
    assert_eq!(r.status(), 200);
    assert_invalidates_user(o, &r, bob_id, &user_path).await;
    assert_eq!(o.row_count("users").await, 1);
    assert_eq!(o.row_count("conversations").await, 0);
    assert_eq!(get(o, &bob, LIST).await.status(), 401);

    // Unknown users are 404.
    for (method, path, body) in [
        (Method::PATCH, user_path.clone(), json!({"disabled": true})),
        (
            Method::POST,
            password_path.clone(),
            json!({"password": "whatever-123"}),
        ),
    ] {
        let r = send_json(o, root, method, &path, &body).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(
        send_as(o, root, Method::DELETE, &user_path).await.status(),
        404
    );
}

#[tokio::test]
async fn changing_ones_own_password_revokes_every_older_token() {
    let s = Stack::builder()
        .origin(|cfg| cfg.bus.url = Some(UNREACHABLE_BUS.into()))
        .user("alice")
        .start()
        .await;
    let (o, alice) = (s.origin(), s.user());
    let uid = o.user_id("alice").await;
    let other_session = login(o, "alice", &alice.password).await.unwrap();
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});
    let path = "/api/v1/auth/password";

    let r = send_json(
        o,
        alice,
        Method::POST,
        path,
        &change("wrong-password", "new-password-1"),
    )
    .await;
    assert_401(r, "authentication_error", "wrong old password").await;
    let r = send_json(
        o,
        alice,
        Method::POST,
        path,
        &change(&alice.password, "short"),
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        get(o, alice, LIST).await.status(),
        200,
        "nothing changed yet"
    );

    let r = send_json(
        o,
        alice,
        Method::POST,
        path,
        &change(&alice.password, "new-password-1"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_invalidates_user(o, &r, uid, path).await;
    let fresh = session(&r, "alice", "new-password-1");
    assert_eq!(json(r).await, json!({"message": "Password changed"}));

    // Every token issued before is refused, this session's and the other one's ...
    for (u, what) in [(alice, "this session"), (&other_session, "another session")] {
        assert_401(get(o, u, LIST).await, "invalid_token", what).await;
        assert_401(refresh(o, u).await, "invalid_token", what).await;
    }
    // ... the fresh cookies of the answer work, at the usual statement count, and refresh.
    let r = get(o, &fresh, LIST).await;
    assert_eq!(r.status(), 200);
    assert_eq!(statements(&r), 2);
    let r = refresh(o, &fresh).await;
    assert_eq!(r.status(), 200);
    let access = set_cookie_value(r.headers(), "access_token_cookie").unwrap();
    assert_eq!(me_with_bearer(o, &access).await.status(), 200);
    // The passwords.
    assert!(login(o, "alice", &alice.password).await.is_err());
    assert!(login(o, "alice", "new-password-1").await.is_ok());
}

/// Runs `llmselect-origin <args>` against the origin's configuration with `stdin`; its stdout.
async fn cli(o: &TestOrigin, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    let mut input = std::io::Cursor::new(stdin.as_bytes().to_vec());
    let mut output = Vec::new();
    llmselect_origin::cli::run_args(args, o.config.clone(), &mut input, &mut output).await?;
    Ok(String::from_utf8(output).expect("UTF-8 output"))
}

#[tokio::test]
async fn cli_user_commands_administer_accounts() {
    let s = admin_stack().await;
    let o = s.origin();

    let out = cli(
        o,
        &["user", "create", "Dora", "--password-stdin"],
        "dora-password-1\n",
    )
    .await
    .unwrap();
    assert!(out.starts_with("created user dora (id "), "{out}");
    let dora = login(o, "dora", "dora-password-1")
        .await
        .expect("dora logs in");
    let dora_id = o.user_id("dora").await;

    // Without --password-stdin a password is generated and printed once.
    let out = cli(o, &["user", "create", "eve", "--admin"], "")
        .await
        .unwrap();
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("generated password: "))
        .expect("the generated password")
        .to_string();
    assert!(out.contains("created administrator eve"), "{out}");
    login(o, "eve", &generated).await.expect("eve logs in");
    let err = cli(
        o,
        &["user", "create", "eve", "--password-stdin"],
        "whatever-123\n",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Username already exists"), "{err}");
    let err = cli(o, &["user", "create", "fay", "--password-stdin"], "short\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");

    let out = cli(o, &["user", "list"], "").await.unwrap();
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[1].ends_with("dora\tuser\tenabled"), "{out}");
    assert!(rows[2].ends_with("eve\tadmin\tenabled"), "{out}");

    // Disable: with a bus the invalidation goes to the outbox (no request target to purge).
    let before = outbox_len(o).await;
    cli(o, &["user", "disable", "DORA"], "").await.unwrap();
    assert_eq!(outbox_len(o).await, before + 1);
    let last: i64 =
        o.db.client()
            .await
            .query_one("SELECT max(id) FROM cache_invalidations", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(
        outbox_row(o, last).await,
        (vec![format!("user:{dora_id}")], vec![])
    );
    assert_401(get(o, &dora, LIST).await, "account_disabled", "disabled").await;
    assert_eq!(
        login(o, "dora", "dora-password-1").await.unwrap_err().0,
        401
    );
    assert!(cli(o, &["user", "list"], "")
        .await
        .unwrap()
        .contains("dora\tuser\tdisabled"));
    cli(o, &["user", "enable", "dora"], "").await.unwrap();
    assert_eq!(get(o, &dora, LIST).await.status(), 200);

    // Reset: the old token is revoked; `token` issues one of the new generation.
    cli(
        o,
        &["user", "reset-password", "dora", "--password-stdin"],
        "dora-password-2\n",
    )
    .await
    .unwrap();
    assert_401(get(o, &dora, LIST).await, "invalid_token", "after reset").await;
    assert!(login(o, "dora", "dora-password-1").await.is_err());
    login(o, "dora", "dora-password-2")
        .await
        .expect("new password");
    let token = cli(o, &["token", "--username", "dora"], "").await.unwrap();
    assert_eq!(me_with_bearer(o, token.trim()).await.status(), 200);

    // Delete needs --yes.
    let err = cli(o, &["user", "delete", "dora"], "").await.unwrap_err();
    assert!(err.to_string().contains("--yes"), "{err}");
    cli(o, &["user", "delete", "dora", "--yes"], "")
        .await
        .unwrap();
    assert!(login(o, "dora", "dora-password-2").await.is_err());
    assert_eq!(get(o, &dora, LIST).await.status(), 401);
    let err = cli(o, &["user", "disable", "nobody"], "")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no user named"), "{err}");
}
