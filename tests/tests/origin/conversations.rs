//! Conversations: CRUD, list shape, search, pagination (page and cursor), isolation, ETag/304,
//! cache headers and groups, statement counts.

use std::collections::HashSet;

use llmselect_e2e::http::header;
use llmselect_e2e::origin::TestUser;
use llmselect_e2e::stack::Stack;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    get, get_counted, get_if_none_match, get_json, json, origin_with_user, send_as, send_json,
    statements, strings,
};

#[tokio::test]
async fn create_add_messages_get_list() {
    let s = origin_with_user("alice").await;
    let (o, u) = (s.origin(), s.user());
    let r = send_json(
        o,
        u,
        Method::POST,
        "/api/v1/conversations",
        &json!({"provider": "openai", "model": "gpt-4o"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let uid = o.user_id("alice").await;
    assert_eq!(
        header(&r, "cache-group-invalidation"),
        format!("\"user:{uid}:conversations\"")
    );
    assert_eq!(header(&r, "cache-control"), "no-store");
    let created = json(r).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["title"], "openai - gpt-4o");
    assert_eq!(created["messageCount"], 0);
    let created_at = created["lastMessageAt"].as_str().unwrap().to_string();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 27,
        "{created_at}"
    );

    for (role, content) in [
        ("user", "first question"),
        ("assistant", "an answer"),
        ("user", "second question"),
    ] {
        let r = send_json(
            o,
            u,
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
            &json!({"role": role, "content": content}),
        )
        .await;
        assert_eq!(r.status(), 201);
        assert_eq!(
            header(&r, "cache-group-invalidation"),
            format!("\"user:{uid}:conversations\", \"conversation:{id}\"")
        );
        let m = json(r).await;
        assert_eq!(
            (m["role"].as_str(), m["content"].as_str()),
            (Some(role), Some(content))
        );
        assert_eq!(m["conversationId"], id.as_str());
    }

    let r = get(o, u, &format!("/api/v1/conversations/{id}")).await;
    assert_eq!(r.status(), 200);
    let d = json(r).await;
    assert_eq!(d["messageCount"], 3);
    let msgs = d["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["content"], "first question");
    assert_eq!(msgs[2]["content"], "second question");
    assert_eq!(d["lastMessageAt"], msgs[2]["createdAt"]);
    assert!(d["lastMessageAt"].as_str().unwrap() > created_at.as_str());

    let r = get(o, u, "/api/v1/conversations").await;
    assert_eq!(r.status(), 200);
    let l = json(r).await;
    assert_eq!(l["total"], 1);
    assert_eq!(l["totalPages"], 1);
    assert_eq!(l["page"], 1);
    assert_eq!(l["limit"], 20);
    let item = &l["conversations"][0];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["messageCount"], 3);
    assert_eq!(item["preview"], "second question");
    assert_eq!(item["lastMessageAt"], d["lastMessageAt"]);
}

#[tokio::test]
async fn rename_changes_the_title_and_keeps_last_message_at() {
    let s = origin_with_user("bob").await;
    let (o, u) = (s.origin(), s.user());
    let id = o.create_conversation(u, None).await;
    o.add_message(u, &id, "user", "hello").await;
    let path = format!("/api/v1/conversations/{id}");
    let before = get_json(o, u, &path).await;
    let r = send_json(o, u, Method::PATCH, &path, &json!({"title": "Renamed"})).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["title"], "Renamed");
    assert_eq!(
        body["lastMessageAt"], before["lastMessageAt"],
        "rename keeps last_message_at"
    );
}

#[tokio::test]
async fn rename_validation_errors_name_the_field() {
    let s = origin_with_user("bob").await;
    let (o, u) = (s.origin(), s.user());
    let id = o.create_conversation(u, None).await;
    let path = format!("/api/v1/conversations/{id}");
    for (bad, field_msg) in [
        (
            json!({"title": ""}),
            json!({"title": ["Length must be between 1 and 255."]}),
        ),
        (
            json!({"title": 3}),
            json!({"title": ["Not a valid string."]}),
        ),
        (
            json!({}),
            json!({"title": ["Missing data for required field."]}),
        ),
        (
            json!({"title": "x", "color": "red"}),
            json!({"color": ["Unknown field."]}),
        ),
    ] {
        let r = send_json(o, u, Method::PATCH, &path, &bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        assert_eq!(json(r).await["details"], field_msg);
    }
}

#[tokio::test]
async fn delete_removes_the_messages_too_and_then_answers_404() {
    let s = origin_with_user("bob").await;
    let (o, u) = (s.origin(), s.user());
    let id = o.create_conversation(u, None).await;
    o.add_message(u, &id, "user", "hello").await;
    let path = format!("/api/v1/conversations/{id}");
    let r = send_as(o, u, Method::DELETE, &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await,
        json!({"message": "Conversation deleted successfully"})
    );
    let n = o.row_count("messages").await;
    assert_eq!(n, 0, "messages go by cascade");
    let r = get(o, u, &path).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        json(r).await,
        json!({"error": "not_found", "message": "Conversation not found"})
    );
    let r = send_as(o, u, Method::DELETE, &path).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn bad_ids_and_bad_message_bodies() {
    let s = origin_with_user("carol").await;
    let (o, u) = (s.origin(), s.user());
    for path in [
        "/api/v1/conversations/not-a-uuid",
        "/api/v1/conversations/00000000-0000-0000-0000-000000000000",
        "/api/v1/conversations/not-a-uuid/export",
    ] {
        let r = get(o, u, path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-store");
    }
    let id = o.create_conversation(u, None).await;
    let r = send_json(
        o,
        u,
        Method::POST,
        &format!("/api/v1/conversations/{id}/messages"),
        &json!({"role": "robot", "content": ""}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let d = json(r).await["details"].clone();
    assert_eq!(
        d["role"],
        json!(["Must be one of: system, user, assistant."])
    );
    assert_eq!(
        d["content"],
        json!(["Length must be between 1 and 100000."])
    );
    let r = send_json(
        o,
        u,
        Method::POST,
        "/api/v1/conversations",
        &json!({"provider": "bogus", "model": 7}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = o
        .request_as(
            u,
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
        )
        .header("Content-Type", "application/json")
        .body("{\"role\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let n = o.row_count("messages").await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn users_are_isolated() {
    let s = origin_with_user("alice").await;
    let (o, a) = (s.origin(), s.user());
    let b = o.user("bob").await;
    let id = o.create_conversation(a, Some("secret plans")).await;
    o.add_message(a, &id, "user", "top secret").await;

    let path = format!("/api/v1/conversations/{id}");
    for (method, p, body) in [
        (Method::GET, path.clone(), None),
        (Method::GET, format!("{path}/export"), None),
        (
            Method::PATCH,
            path.clone(),
            Some(json!({"title": "mine now"})),
        ),
        (Method::DELETE, path.clone(), None),
        (
            Method::POST,
            format!("{path}/messages"),
            Some(json!({"role": "user", "content": "hi"})),
        ),
    ] {
        let mut req = o.request_as(&b, method.clone(), &p);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 404, "{method} {p}");
    }
    let l = get_json(o, &b, "/api/v1/conversations").await;
    assert_eq!(l["total"], 0);
    assert_eq!(l["conversations"], json!([]));
    // A's data is untouched.
    let d = get_json(o, a, &path).await;
    assert_eq!(d["title"], "secret plans");
    assert_eq!(d["messageCount"], 1);
}

#[tokio::test]
async fn search_escapes_wildcards() {
    let s = origin_with_user("dan").await;
    let (o, u) = (s.origin(), s.user());
    o.create_conversation(u, Some("100% done")).await;
    o.create_conversation(u, Some("1000 things")).await;
    o.create_conversation(u, Some("snake_case")).await;
    o.create_conversation(u, Some("snakeXcase")).await;
    let titles = |v: Value| strings(&v, "conversations", "title");
    let l = get_json(o, u, "/api/v1/conversations?search=100%25").await;
    assert_eq!(titles(l), vec!["100% done"]);
    let l = get_json(o, u, "/api/v1/conversations?search=E_C").await;
    assert_eq!(titles(l), vec!["snake_case"]);
    let l = get_json(o, u, "/api/v1/conversations?search=OPENAI").await;
    assert_eq!(l["total"], 4, "provider matches case-insensitively");
}

#[tokio::test]
async fn page_and_limit_rules() {
    let s = origin_with_user("erin").await;
    let (o, u) = (s.origin(), s.user());
    for i in 0..5 {
        o.create_conversation(u, Some(&format!("c{i}"))).await;
    }
    let l = get_json(o, u, "/api/v1/conversations?page=2&limit=2").await;
    assert_eq!(
        (
            l["page"].as_i64(),
            l["limit"].as_i64(),
            l["total"].as_i64(),
            l["totalPages"].as_i64()
        ),
        (Some(2), Some(2), Some(5), Some(3))
    );
    assert_eq!(
        strings(&l, "conversations", "title"),
        vec!["c2", "c1"],
        "newest first"
    );
    let l = get_json(o, u, "/api/v1/conversations?page=0&limit=500").await;
    assert_eq!(
        (l["page"].as_i64(), l["limit"].as_i64()),
        (Some(1), Some(20))
    );
    let l = get_json(o, u, "/api/v1/conversations?page=abc&limit=-1").await;
    assert_eq!(
        (l["page"].as_i64(), l["limit"].as_i64()),
        (Some(1), Some(20))
    );
    let l = get_json(o, u, "/api/v1/conversations?page=9").await;
    assert_eq!(l["conversations"], json!([]));
    assert_eq!(l["total"], 5, "a page past the end still reports the total");
}

#[tokio::test]
async fn cursor_pagination_is_stable_under_concurrent_inserts() {
    let s = origin_with_user("fay").await;
    let (o, u) = (s.origin(), s.user());
    let mut original = Vec::new();
    for i in 0..12 {
        original.push(o.create_conversation(u, Some(&format!("old {i}"))).await);
    }
    let mut seen = Vec::new();
    let first = get_json(o, u, "/api/v1/conversations?limit=5").await;
    let mut cursor = first["nextCursor"]
        .as_str()
        .expect("next cursor")
        .to_string();
    seen.extend(strings(&first, "conversations", "id"));
    let mut round = 0;
    loop {
        // New conversations arrive between pages, concurrently with the page request.
        let (_, page) = tokio::join!(
            async {
                for j in 0..3 {
                    o.create_conversation(u, Some(&format!("new {round}.{j}")))
                        .await;
                }
            },
            async {
                get_json(
                    o,
                    u,
                    &format!("/api/v1/conversations?limit=5&cursor={cursor}"),
                )
                .await
            }
        );
        round += 1;
        seen.extend(strings(&page, "conversations", "id"));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut expected = original.clone();
    expected.reverse();
    let old_seen: Vec<String> = seen
        .iter()
        .filter(|id| original.contains(id))
        .cloned()
        .collect();
    assert_eq!(
        old_seen, expected,
        "every original row exactly once, in order"
    );
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        seen.len(),
        "no duplicates"
    );
}

#[tokio::test]
async fn bad_and_foreign_cursors_are_400() {
    let s = origin_with_user("gus").await;
    let (o, a) = (s.origin(), s.user());
    let b = o.user("hal").await;
    for _ in 0..3 {
        o.create_conversation(a, None).await;
    }
    let l = get_json(o, a, "/api/v1/conversations?limit=2").await;
    let cursor = l["nextCursor"].as_str().unwrap().to_string();
    let r = get(o, &b, &format!("/api/v1/conversations?cursor={cursor}")).await;
    assert_eq!(r.status(), 400, "another user's cursor");
    let r = get(o, a, &format!("/api/v1/comparisons?cursor={cursor}")).await;
    assert_eq!(r.status(), 400, "a conversation cursor on comparisons");
    for bad in ["%%%", "bm9wZQ", "Y29udnwxfHh8eQ"] {
        let r = get(o, a, &format!("/api/v1/conversations?cursor={bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(header(&r, "cache-control"), "no-store");
        assert_eq!(
            json(r).await,
            json!({"error": "bad_request", "message": "Invalid cursor"})
        );
    }
}

const LIST: &str = "/api/v1/conversations?page=1&limit=20";

/// The ETag tests' data: user `ivy` (the stack's) with conversation "first", and user `jon`.
struct EtagFixture {
    s: Stack,
    other: TestUser,
    id: String,
    uid: i64,
}

async fn etag_fixture() -> EtagFixture {
    let s = origin_with_user("ivy").await;
    let other = s.origin().user("jon").await;
    let id = s
        .origin()
        .create_conversation(s.user(), Some("first"))
        .await;
    let uid = s.origin().user_id("ivy").await;
    EtagFixture { s, other, id, uid }
}

#[tokio::test]
async fn the_list_is_private_targeted_at_our_proxy_grouped_and_versioned() {
    let f = etag_fixture().await;
    let (o, u, uid) = (f.s.origin(), f.s.user(), f.uid);
    let r = get(o, u, LIST).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "private, no-cache");
    assert_eq!(
        header(&r, "cdn-cache-control"),
        "",
        "per-user data is never for CDNs"
    );
    let cdn = header(&r, "llmselect-cache-control");
    assert!(
        cdn.starts_with("max-age=") && cdn.ends_with(", must-revalidate"),
        "{cdn}"
    );
    let max_age: u64 = cdn["max-age=".len()..cdn.find(',').unwrap()]
        .parse()
        .unwrap();
    assert!(max_age <= 300 && max_age > 250, "{max_age}");
    assert_eq!(header(&r, "vary"), "Authorization, Cookie, Origin");
    assert_eq!(
        header(&r, "cache-groups"),
        format!("\"all\", \"user:{uid}\", \"user:{uid}:conversations\"")
    );
    let etag = header(&r, "etag");
    assert!(etag.starts_with("\"v2-") && etag.len() == 37, "{etag}");
}

#[tokio::test]
async fn a_list_304_costs_one_statement_and_only_matches_its_own_user() {
    let f = etag_fixture().await;
    let (o, u, other, uid) = (f.s.origin(), f.s.user(), &f.other, f.uid);
    let etag = header(&get(o, u, LIST).await, "etag");

    let r = get_if_none_match(o, u, LIST, &etag).await;
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(
        header(&r, "cache-groups"),
        format!("\"all\", \"user:{uid}\", \"user:{uid}:conversations\"")
    );
    assert!(!header(&r, "x-response-time").is_empty());
    assert_eq!(statements(&r), 1, "a list 304 costs only the auth load");
    assert!(r.bytes().await.unwrap().is_empty());

    // Another user presenting the same ETag gets their own (different) list, never a 304.
    let r = get_if_none_match(o, other, LIST, &etag).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_detail_304_costs_one_statement_after_the_ownership_check() {
    let f = etag_fixture().await;
    let (o, u, other, id, uid) = (f.s.origin(), f.s.user(), &f.other, &f.id, f.uid);
    let path = format!("/api/v1/conversations/{id}");
    let r = get(o, u, &path).await;
    let detail_etag = header(&r, "etag");
    assert_eq!(
        header(&r, "cache-groups"),
        format!("\"all\", \"user:{uid}\", \"conversation:{id}\"")
    );
    let r = get_if_none_match(o, u, &path, &detail_etag).await;
    assert_eq!(r.status(), 304);
    assert_eq!(
        statements(&r),
        1,
        "user and conversation row in one statement, no message query"
    );
    let r = get_if_none_match(o, other, &path, &detail_etag).await;
    assert_eq!(r.status(), 404, "ownership is checked before any 304");
}

#[tokio::test]
async fn every_own_mutation_changes_the_etags_and_names_the_groups_to_invalidate() {
    let f = etag_fixture().await;
    let (o, u, other, id, uid) = (f.s.origin(), f.s.user(), &f.other, &f.id, f.uid);
    let path = format!("/api/v1/conversations/{id}");
    let groups = format!("\"user:{uid}:conversations\", \"conversation:{id}\"");
    let etag = header(&get(o, u, LIST).await, "etag");
    let detail_etag = header(&get(o, u, &path).await, "etag");

    let r = send_json(o, u, Method::PATCH, &path, &json!({"title": "second"})).await;
    assert_eq!(header(&r, "cache-group-invalidation"), groups);
    let r = get_if_none_match(o, u, LIST, &etag).await;
    assert_eq!(r.status(), 200);
    let new_etag = header(&r, "etag");
    assert_ne!(new_etag, etag);
    assert_eq!(json(r).await["conversations"][0]["title"], "second");
    let r = get_if_none_match(o, u, &path, &detail_etag).await;
    assert_eq!(r.status(), 200);
    let detail_etag2 = header(&r, "etag");

    o.add_message(u, id, "user", "more").await;
    let r = get_if_none_match(o, u, LIST, &new_etag).await;
    assert_eq!(r.status(), 200);
    let r = get_if_none_match(o, u, &path, &detail_etag2).await;
    assert_eq!(r.status(), 200);

    // Another user's write does not change this user's list ETag.
    let etag3 = header(&get(o, u, LIST).await, "etag");
    o.create_conversation(other, None).await;
    let r = get_if_none_match(o, u, LIST, &etag3).await;
    assert_eq!(r.status(), 304);

    let r = send_as(o, u, Method::DELETE, &path).await;
    assert_eq!(header(&r, "cache-group-invalidation"), groups);
    let r = get_if_none_match(o, u, LIST, &etag3).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn list_and_detail_take_at_most_two_statements() {
    let s = origin_with_user("kim").await;
    let (o, u) = (s.origin(), s.user());
    let other = o.user("lou").await;
    let foreign = o.create_conversation(&other, Some("c1 of lou")).await;
    o.add_message(&other, &foreign, "user", "not kim's").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(o.create_conversation(u, Some(&format!("c{i}"))).await);
    }
    // Messages move a conversation to the top: the oldest one first, then the newest.
    let (oldest, newest) = (ids[0].clone(), ids[29].clone());
    for i in 0..3 {
        o.add_message(u, &oldest, "user", &format!("old {i}")).await;
    }
    for i in 0..10 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        o.add_message(u, &newest, role, &format!("m{i}")).await;
    }
    let mut expected = vec![newest.clone(), oldest.clone()];
    expected.extend(ids[1..29].iter().rev().cloned());
    let check_item = |c: &Value| {
        let id = c["id"].as_str().unwrap();
        let (count, preview) = if id == newest {
            (10, "m8")
        } else if id == oldest {
            (3, "old 2")
        } else {
            (0, "")
        };
        assert_eq!(c["messageCount"], count, "{c}");
        assert_eq!(c["preview"], preview, "{c}");
    };

    // First pages: auth + one statement carrying page and total, whatever the page size.
    for limit in [1usize, 10, 30, 100] {
        let r = get(o, u, &format!("/api/v1/conversations?limit={limit}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            statements(&r),
            2,
            "auth + page with total for limit {limit}"
        );
        let l = json(r).await;
        let n = limit.min(30);
        assert_eq!(
            strings(&l, "conversations", "id"),
            expected[..n],
            "limit {limit}"
        );
        assert_eq!(l["total"], 30);
        assert_eq!(l["totalPages"], 30usize.div_ceil(limit));
        assert_eq!(l["page"], 1);
        assert_eq!(l["limit"], limit);
        assert_eq!(l["nextCursor"].is_string(), n == limit, "limit {limit}");
        l["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(check_item);
    }

    // Cursor pages: the total still counts every conversation, not only those after the cursor.
    let first = get_json(o, u, "/api/v1/conversations?limit=5").await;
    let cursor = first["nextCursor"].as_str().unwrap().to_string();
    let (n, l) = get_counted(
        o,
        u,
        &format!("/api/v1/conversations?limit=25&cursor={cursor}"),
    )
    .await;
    assert_eq!(n, 2, "auth + keyset page with total");
    assert_eq!(strings(&l, "conversations", "id"), expected[5..30]);
    assert_eq!(l["total"], 30);
    assert_eq!(l["totalPages"], 2);
    assert_eq!(l["page"], Value::Null);
    assert_eq!(l["limit"], 25);
    l["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(check_item);
    // A full page has a next cursor even at the end; the page after it is empty but still has
    // the total.
    let cursor = l["nextCursor"].as_str().expect("full page").to_string();
    let (n, l) = get_counted(
        o,
        u,
        &format!("/api/v1/conversations?limit=25&cursor={cursor}"),
    )
    .await;
    assert_eq!(n, 2);
    assert_eq!(l["conversations"], json!([]));
    assert_eq!(l["total"], 30);
    assert_eq!(l["nextCursor"], Value::Null);

    // Offset pages past the end and searches keep the budget and the total.
    let (n, l) = get_counted(o, u, "/api/v1/conversations?page=9&limit=10").await;
    assert_eq!(n, 2);
    assert_eq!(
        (
            l["conversations"].clone(),
            l["total"].clone(),
            l["totalPages"].clone()
        ),
        (json!([]), json!(30), json!(3))
    );
    let (n, l) = get_counted(o, u, "/api/v1/conversations?search=c1&limit=4").await;
    assert_eq!(n, 2);
    assert_eq!(l["total"], 11, "c1 and c10..c19, not lou's conversation");
    assert_eq!(l["totalPages"], 3);
    assert_eq!(
        strings(&l, "conversations", "title"),
        vec!["c19", "c18", "c17", "c16"]
    );

    // Detail: one statement for the user and the conversation, one for the messages.
    let path = format!("/api/v1/conversations/{newest}");
    let r = get(o, u, &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        statements(&r),
        2,
        "user and conversation + messages for 10 messages"
    );
    let etag = header(&r, "etag");
    let d = json(r).await;
    assert_eq!(d["id"], newest.as_str());
    assert_eq!(d["title"], "c29");
    assert_eq!(d["messageCount"], 10);
    let contents: Vec<&str> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(contents, want);
    assert_eq!(d["lastMessageAt"], d["messages"][9]["createdAt"]);
    let r = get_if_none_match(o, u, &path, &etag).await;
    assert_eq!(r.status(), 304);
    assert_eq!(statements(&r), 1);
    let r = get(o, u, &format!("/api/v1/conversations/{newest}/export")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(statements(&r), 2, "export: the same two statements");
    let r = get(o, u, &format!("/api/v1/conversations/{foreign}")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(statements(&r), 1, "someone else's conversation");

    // The same budget is visible in the metrics histogram by route.
    let text = o.metrics_text().await;
    let value = |prefix: &str, route: &str, le: Option<&str>| -> String {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(prefix)
                    && l.contains(&format!("route=\"{route}\""))
                    && le.is_none_or(|le| l.contains(&format!("le=\"{le}\"")))
            })
            .unwrap_or_else(|| panic!("{prefix} for {route}"));
        line.rsplit(' ').next().unwrap().to_string()
    };
    for route in [
        "GET /api/v1/conversations",
        "GET /api/v1/conversations/{id}",
    ] {
        assert_eq!(
            value("origin_db_statements_per_request_bucket", route, Some("2")),
            value("origin_db_statements_per_request_count", route, None),
            "every {route} request used at most 2 statements"
        );
    }
}

#[tokio::test]
async fn export_markdown_and_json() {
    let s = origin_with_user("lee").await;
    let (o, u) = (s.origin(), s.user());
    let id = o.create_conversation(u, Some("Export me")).await;
    o.add_message(u, &id, "user", "question").await;
    o.add_message(u, &id, "assistant", "answer").await;
    let r = get(o, u, &format!("/api/v1/conversations/{id}/export")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/markdown; charset=utf-8");
    assert_eq!(
        header(&r, "content-disposition"),
        format!("attachment; filename=\"{id}.md\"")
    );
    assert!(!header(&r, "etag").is_empty());
    let text = r.text().await.unwrap();
    assert!(text
        .starts_with("# Export me\n\n**Provider:** openai\n**Model:** gpt-4o\n**Last Updated:** "));
    assert!(text.contains("\n---\n\n## User\n\nquestion\n\n---\n\n## Assistant\n\nanswer\n\n---\n"));
    assert!(text.ends_with("---\n"));
    let updated = text.lines().nth(4).unwrap();
    assert!(!updated.ends_with('Z'), "{updated}");

    let r = get(
        o,
        u,
        &format!("/api/v1/conversations/{id}/export?format=JSON"),
    )
    .await;
    let v = json(r).await;
    assert_eq!(v["title"], "Export me");
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    assert!(v.get("messageCount").is_none());

    let r = get(
        o,
        u,
        &format!("/api/v1/conversations/{id}/export?format=pdf"),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        json(r).await,
        json!({"error": "Invalid format. Must be 'markdown' or 'json'"})
    );
}

#[tokio::test]
async fn head_is_answered_like_get_without_body() {
    let s = origin_with_user("max").await;
    let (o, u) = (s.origin(), s.user());
    o.create_conversation(u, None).await;
    let get = get(o, u, "/api/v1/conversations").await;
    let etag = header(&get, "etag");
    let len = get.bytes().await.unwrap().len();
    let r = send_as(o, u, Method::HEAD, "/api/v1/conversations").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(header(&r, "content-length"), len.to_string());
    assert!(r.bytes().await.unwrap().is_empty());
}
