//! What a client paging through the conversation list by cursor sees while conversations move:
//! a conversation bumped to the top mid-way (also by a transaction that commits after the client
//! read the page before), a sort key that only grows, and the list total kept by a per-user
//! counter.

use std::time::Duration;

use llmselect_e2e::db::connect;
use llmselect_e2e::origin::{TestOrigin, TestUser};
use serde_json::Value;

use crate::support::{get_counted, get_json, origin_with_user, send_as, strings};

/// `n` conversations `c0..c<n>` with one message each, created in order (`c<n-1>` is newest).
async fn conversations(o: &TestOrigin, u: &TestUser, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = o.create_conversation(u, Some(&format!("c{i}"))).await;
        o.add_message(u, &id, "user", &format!("m{i}")).await;
        ids.push(id);
    }
    ids
}

/// One list page by `path`: (titles, nextCursor), asserting the statement budget.
async fn page(o: &TestOrigin, u: &TestUser, path: &str) -> (Vec<String>, Option<String>, Value) {
    let (n, l) = get_counted(o, u, path).await;
    assert_eq!(n, 2, "auth + one list statement: {path}");
    (
        strings(&l, "conversations", "title"),
        l["nextCursor"].as_str().map(str::to_string),
        l,
    )
}

fn titles(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Page 1, then c4 (on page 2) gets a message, then page 2 by the cursor: c4 is not on page 2
/// (it moved above the cursor), nothing else is duplicated or skipped, and a fresh page 1 shows
/// c4 first.
#[tokio::test]
async fn a_conversation_bumped_mid_way_is_neither_repeated_nor_hiding_others() {
    let s = origin_with_user("paula").await;
    let (o, u) = (s.origin(), s.user());
    let ids = conversations(o, u, 12).await;

    let (p1, cursor, _) = page(o, u, "/api/v1/conversations?limit=5").await;
    assert_eq!(p1, titles(&["c11", "c10", "c9", "c8", "c7"]));
    o.add_message(u, &ids[4], "user", "bump").await;
    let (p2, cursor, _) = page(
        o,
        u,
        &format!("/api/v1/conversations?limit=5&cursor={}", cursor.unwrap()),
    )
    .await;
    assert_eq!(p2, titles(&["c6", "c5", "c3", "c2", "c1"]));
    let (p3, cursor, l) = page(
        o,
        u,
        &format!("/api/v1/conversations?limit=5&cursor={}", cursor.unwrap()),
    )
    .await;
    assert_eq!(p3, titles(&["c0"]));
    assert_eq!(cursor, None);
    assert_eq!(l["total"], 12);
    let (fresh, _, _) = page(o, u, "/api/v1/conversations?limit=5").await;
    assert_eq!(
        fresh[0], "c4",
        "the bumped conversation is on top of a fresh page 1"
    );
}

/// The same with a bump whose transaction took its sort key before the client read page 1 and
/// committed only after: the write waits on a row lock the test holds (it takes the user row
/// after updating the conversation), so its key is older than the page-1 read.
#[tokio::test]
async fn a_late_committing_bump_is_neither_repeated_nor_hiding_others() {
    let s = origin_with_user("lena").await;
    let (o, u) = (s.origin(), s.user());
    let ids = conversations(o, u, 12).await;
    let uid = o.user_id("lena").await;

    let blocker = connect(o.db.url()).await;
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM users WHERE id = {uid} FOR UPDATE"
        ))
        .await
        .unwrap();
    let append = o
        .request_as(
            u,
            reqwest::Method::POST,
            &format!("/api/v1/conversations/{}/messages", ids[4]),
        )
        .json(&serde_json::json!({"role": "user", "content": "late"}));
    let late = tokio::spawn(async move { append.send().await.unwrap().status() });
    // Wait until the append's statement waits for the lock (its key is taken by then).
    let watcher = connect(o.db.url()).await;
    let mut waited = false;
    for _ in 0..200 {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'
                    AND query LIKE '%INSERT INTO messages%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waited, "the append waits on the user row");

    let (p1, cursor, _) = page(o, u, "/api/v1/conversations?limit=5").await;
    assert_eq!(p1, titles(&["c11", "c10", "c9", "c8", "c7"]));
    blocker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(late.await.unwrap(), 201);

    let (p2, cursor, _) = page(
        o,
        u,
        &format!("/api/v1/conversations?limit=5&cursor={}", cursor.unwrap()),
    )
    .await;
    assert_eq!(p2, titles(&["c6", "c5", "c3", "c2", "c1"]));
    let (p3, _, _) = page(
        o,
        u,
        &format!("/api/v1/conversations?limit=5&cursor={}", cursor.unwrap()),
    )
    .await;
    assert_eq!(p3, titles(&["c0"]));
    let (fresh, _, _) = page(o, u, "/api/v1/conversations?limit=5").await;
    assert_eq!(fresh[0], "c4");
}

/// A new message always moves its conversation up, even when the stored sort key is ahead of
/// the database clock (a clock stepped back): a client that saw it never meets it again below.
#[tokio::test]
async fn the_sort_key_only_grows() {
    let s = origin_with_user("greta").await;
    let (o, u) = (s.origin(), s.user());
    let ids = conversations(o, u, 2).await;
    let client = connect(o.db.url()).await;
    client
        .execute(
            "UPDATE conversations SET last_message_at = now() + interval '1 hour' WHERE id = $1::text::uuid",
            &[&ids[0]],
        )
        .await
        .unwrap();
    let before = get_json(o, u, &format!("/api/v1/conversations/{}", ids[0])).await;
    o.add_message(u, &ids[0], "user", "again").await;
    let after = get_json(o, u, &format!("/api/v1/conversations/{}", ids[0])).await;
    let (b, a) = (
        before["lastMessageAt"].as_str().unwrap(),
        after["lastMessageAt"].as_str().unwrap(),
    );
    assert!(a > b, "{a} > {b}");
    assert_eq!(after["messages"][1]["createdAt"], after["lastMessageAt"]);
}

/// The unfiltered total comes from the user's counter: it follows creates and deletes (and a
/// delete of a missing or foreign conversation changes nothing), and agrees with the rows.
#[tokio::test]
async fn the_total_follows_creates_and_deletes() {
    let s = origin_with_user("tom").await;
    let (o, u) = (s.origin(), s.user());
    let other = o.user("jerry").await;
    let ids = conversations(o, u, 3).await;
    let theirs = o.create_conversation(&other, None).await;
    let total = |l: Value| l["total"].as_i64().unwrap();
    assert_eq!(total(get_json(o, u, "/api/v1/conversations").await), 3);
    let path = format!("/api/v1/conversations/{}", ids[1]);
    assert_eq!(
        send_as(o, u, reqwest::Method::DELETE, &path).await.status(),
        200
    );
    assert_eq!(
        send_as(o, u, reqwest::Method::DELETE, &path).await.status(),
        404
    );
    let foreign = format!("/api/v1/conversations/{theirs}");
    assert_eq!(
        send_as(o, u, reqwest::Method::DELETE, &foreign)
            .await
            .status(),
        404
    );
    let l = get_json(o, u, "/api/v1/conversations").await;
    assert_eq!((total(l.clone()), l["totalPages"].as_i64()), (2, Some(1)));
    assert_eq!(total(get_json(o, &other, "/api/v1/conversations").await), 1);
    let client = connect(o.db.url()).await;
    let drift: i64 = client
        .query_one(
            "SELECT count(*) FROM users u
              WHERE u.conversation_count <> (SELECT count(*) FROM conversations c WHERE c.user_id = u.id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(drift, 0);
}
