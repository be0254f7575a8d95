//! Conversations: CRUD, list shape, search, pagination (page and cursor), isolation, ETag/304,
//! cache headers and groups, statement counts.

use std::collections::HashSet;

use llmselect_e2e::origin::spawn_origin;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{header, json, statements};

#[tokio::test]
async fn create_add_messages_get_list() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("alice").await;
    let r = o
        .request_as(&u, Method::POST, "/api/v1/conversations")
        .json(&json!({"provider": "openai", "model": "gpt-4o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let uid: i64 =
        o.db.client()
            .await
            .query_one("SELECT id FROM users WHERE username = 'alice'", &[])
            .await
            .unwrap()
            .get(0);
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
        let r = o
            .request_as(
                &u,
                Method::POST,
                &format!("/api/v1/conversations/{id}/messages"),
            )
            .json(&json!({"role": role, "content": content}))
            .send()
            .await
            .unwrap();
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

    let r = o
        .get_as(&u, &format!("/api/v1/conversations/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = json(r).await;
    assert_eq!(d["messageCount"], 3);
    let msgs = d["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["content"], "first question");
    assert_eq!(msgs[2]["content"], "second question");
    assert_eq!(d["lastMessageAt"], msgs[2]["createdAt"]);
    assert!(d["lastMessageAt"].as_str().unwrap() > created_at.as_str());

    let r = o.get_as(&u, "/api/v1/conversations").send().await.unwrap();
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
async fn rename_delete_and_validation() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("bob").await;
    let id = o.create_conversation(&u, None).await;
    o.add_message(&u, &id, "user", "hello").await;
    let before = json(
        o.get_as(&u, &format!("/api/v1/conversations/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;

    let path = format!("/api/v1/conversations/{id}");
    let r = o
        .request_as(&u, Method::PATCH, &path)
        .json(&json!({"title": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["title"], "Renamed");
    assert_eq!(
        body["lastMessageAt"], before["lastMessageAt"],
        "rename keeps last_message_at"
    );

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
        let r = o
            .request_as(&u, Method::PATCH, &path)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        assert_eq!(json(r).await["details"], field_msg);
    }

    let r = o
        .request_as(&u, Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await,
        json!({"message": "Conversation deleted successfully"})
    );
    let n: i64 =
        o.db.client()
            .await
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 0, "messages go by cascade");
    let r = o.get_as(&u, &path).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        json(r).await,
        json!({"error": "not_found", "message": "Conversation not found"})
    );
    let r = o
        .request_as(&u, Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn bad_ids_and_bad_message_bodies() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("carol").await;
    for path in [
        "/api/v1/conversations/not-a-uuid",
        "/api/v1/conversations/00000000-0000-0000-0000-000000000000",
        "/api/v1/conversations/not-a-uuid/export",
    ] {
        let r = o.get_as(&u, path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-store");
    }
    let id = o.create_conversation(&u, None).await;
    let r = o
        .request_as(
            &u,
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
        )
        .json(&json!({"role": "robot", "content": ""}))
        .send()
        .await
        .unwrap();
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
    let r = o
        .request_as(&u, Method::POST, "/api/v1/conversations")
        .json(&json!({"provider": "bogus", "model": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = o
        .request_as(
            &u,
            Method::POST,
            &format!("/api/v1/conversations/{id}/messages"),
        )
        .header("Content-Type", "application/json")
        .body("{\"role\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let n: i64 =
        o.db.client()
            .await
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn users_are_isolated() {
    let o = spawn_origin(|_| {}).await;
    let a = o.user("alice").await;
    let b = o.user("bob").await;
    let id = o.create_conversation(&a, Some("secret plans")).await;
    o.add_message(&a, &id, "user", "top secret").await;

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
    let l = json(o.get_as(&b, "/api/v1/conversations").send().await.unwrap()).await;
    assert_eq!(l["total"], 0);
    assert_eq!(l["conversations"], json!([]));
    // A's data is untouched.
    let d = json(o.get_as(&a, &path).send().await.unwrap()).await;
    assert_eq!(d["title"], "secret plans");
    assert_eq!(d["messageCount"], 1);
}

#[tokio::test]
async fn search_escapes_wildcards() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("dan").await;
    o.create_conversation(&u, Some("100% done")).await;
    o.create_conversation(&u, Some("1000 things")).await;
    o.create_conversation(&u, Some("snake_case")).await;
    o.create_conversation(&u, Some("snakeXcase")).await;
    let titles = |v: Value| -> Vec<String> {
        v["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].as_str().unwrap().to_string())
            .collect()
    };
    let l = json(
        o.get_as(&u, "/api/v1/conversations?search=100%25")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(titles(l), vec!["100% done"]);
    let l = json(
        o.get_as(&u, "/api/v1/conversations?search=E_C")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(titles(l), vec!["snake_case"]);
    let l = json(
        o.get_as(&u, "/api/v1/conversations?search=OPENAI")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(l["total"], 4, "provider matches case-insensitively");
}

#[tokio::test]
async fn page_and_limit_rules() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("erin").await;
    for i in 0..5 {
        o.create_conversation(&u, Some(&format!("c{i}"))).await;
    }
    let l = json(
        o.get_as(&u, "/api/v1/conversations?page=2&limit=2")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            l["page"].as_i64(),
            l["limit"].as_i64(),
            l["total"].as_i64(),
            l["totalPages"].as_i64()
        ),
        (Some(2), Some(2), Some(5), Some(3))
    );
    let titles: Vec<&str> = l["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, vec!["c2", "c1"], "newest first");
    let l = json(
        o.get_as(&u, "/api/v1/conversations?page=0&limit=500")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (l["page"].as_i64(), l["limit"].as_i64()),
        (Some(1), Some(20))
    );
    let l = json(
        o.get_as(&u, "/api/v1/conversations?page=abc&limit=-1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (l["page"].as_i64(), l["limit"].as_i64()),
        (Some(1), Some(20))
    );
    let l = json(
        o.get_as(&u, "/api/v1/conversations?page=9")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(l["conversations"], json!([]));
    assert_eq!(l["total"], 5, "a page past the end still reports the total");
}

#[tokio::test]
async fn cursor_pagination_is_stable_under_concurrent_inserts() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("fay").await;
    let mut original = Vec::new();
    for i in 0..12 {
        original.push(o.create_conversation(&u, Some(&format!("old {i}"))).await);
    }
    let mut seen = Vec::new();
    let first = json(
        o.get_as(&u, "/api/v1/conversations?limit=5")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut cursor = first["nextCursor"]
        .as_str()
        .expect("next cursor")
        .to_string();
    seen.extend(
        first["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string()),
    );
    let mut round = 0;
    loop {
        // New conversations arrive between pages, concurrently with the page request.
        let (_, page) = tokio::join!(
            async {
                for j in 0..3 {
                    o.create_conversation(&u, Some(&format!("new {round}.{j}")))
                        .await;
                }
            },
            async {
                json(
                    o.get_as(
                        &u,
                        &format!("/api/v1/conversations?limit=5&cursor={cursor}"),
                    )
                    .send()
                    .await
                    .unwrap(),
                )
                .await
            }
        );
        round += 1;
        seen.extend(
            page["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string()),
        );
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
    let o = spawn_origin(|_| {}).await;
    let a = o.user("gus").await;
    let b = o.user("hal").await;
    for _ in 0..3 {
        o.create_conversation(&a, None).await;
    }
    let l = json(
        o.get_as(&a, "/api/v1/conversations?limit=2")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let cursor = l["nextCursor"].as_str().unwrap().to_string();
    let r = o
        .get_as(&b, &format!("/api/v1/conversations?cursor={cursor}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "another user's cursor");
    let r = o
        .get_as(&a, &format!("/api/v1/comparisons?cursor={cursor}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a conversation cursor on comparisons");
    for bad in ["%%%", "bm9wZQ", "Y29udnwxfHh8eQ"] {
        let r = o
            .get_as(&a, &format!("/api/v1/conversations?cursor={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(header(&r, "cache-control"), "no-store");
        assert_eq!(
            json(r).await,
            json!({"error": "bad_request", "message": "Invalid cursor"})
        );
    }
}

#[tokio::test]
async fn etags_304_and_invalidation() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("ivy").await;
    let other = o.user("jon").await;
    let id = o.create_conversation(&u, Some("first")).await;
    let uid: i64 =
        o.db.client()
            .await
            .query_one("SELECT id FROM users WHERE username = 'ivy'", &[])
            .await
            .unwrap()
            .get(0);

    let list = "/api/v1/conversations?page=1&limit=20";
    let r = o.get_as(&u, list).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "private, no-cache");
    let cdn = header(&r, "cdn-cache-control");
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
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");

    let r = o
        .get_as(&u, list)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
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
    let r = o
        .get_as(&other, list)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Detail.
    let path = format!("/api/v1/conversations/{id}");
    let r = o.get_as(&u, &path).send().await.unwrap();
    let detail_etag = header(&r, "etag");
    assert_eq!(
        header(&r, "cache-groups"),
        format!("\"all\", \"user:{uid}\", \"conversation:{id}\"")
    );
    let r = o
        .get_as(&u, &path)
        .header("If-None-Match", &detail_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(
        statements(&r),
        2,
        "auth + conversation row, no message query"
    );
    let r = o
        .get_as(&other, &path)
        .header("If-None-Match", &detail_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "ownership is checked before any 304");

    // Every mutation changes both ETags.
    let r = o
        .request_as(&u, Method::PATCH, &path)
        .json(&json!({"title": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "cache-group-invalidation"),
        format!("\"user:{uid}:conversations\", \"conversation:{id}\"")
    );
    let r = o
        .get_as(&u, list)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let new_etag = header(&r, "etag");
    assert_ne!(new_etag, etag);
    assert_eq!(json(r).await["conversations"][0]["title"], "second");
    let r = o
        .get_as(&u, &path)
        .header("If-None-Match", &detail_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let detail_etag2 = header(&r, "etag");

    o.add_message(&u, &id, "user", "more").await;
    let r = o
        .get_as(&u, list)
        .header("If-None-Match", &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = o
        .get_as(&u, &path)
        .header("If-None-Match", &detail_etag2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Another user's write does not change this user's list ETag.
    let r = o.get_as(&u, list).send().await.unwrap();
    let etag3 = header(&r, "etag");
    o.create_conversation(&other, None).await;
    let r = o
        .get_as(&u, list)
        .header("If-None-Match", &etag3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Delete invalidates.
    let r = o
        .request_as(&u, Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "cache-group-invalidation"),
        format!("\"user:{uid}:conversations\", \"conversation:{id}\"")
    );
    let r = o
        .get_as(&u, list)
        .header("If-None-Match", &etag3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn statement_counts_do_not_grow_with_page_size() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("kim").await;
    let mut last = String::new();
    for i in 0..30 {
        last = o.create_conversation(&u, Some(&format!("c{i}"))).await;
    }
    for _ in 0..10 {
        o.add_message(&u, &last, "user", "hi").await;
    }
    for limit in [1, 10, 30, 100] {
        let r = o
            .get_as(&u, &format!("/api/v1/conversations?limit={limit}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(statements(&r), 3, "auth + page + count for limit {limit}");
    }
    let l = json(
        o.get_as(&u, "/api/v1/conversations?limit=5")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let cursor = l["nextCursor"].as_str().unwrap().to_string();
    let r = o
        .get_as(
            &u,
            &format!("/api/v1/conversations?limit=50&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(statements(&r), 3);
    let r = o
        .get_as(&u, &format!("/api/v1/conversations/{last}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        statements(&r),
        3,
        "auth + conversation + messages for 10 messages"
    );

    // The same budget is visible in the metrics histogram by route.
    let text = o
        .http
        .get(o.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("origin_db_statements_per_request_bucket")
                && l.contains("route=\"GET /api/v1/conversations\"")
                && l.contains("le=\"3\"")
        })
        .expect("histogram bucket");
    let total = text
        .lines()
        .find(|l| {
            l.starts_with("origin_db_statements_per_request_count")
                && l.contains("route=\"GET /api/v1/conversations\"")
        })
        .expect("histogram count");
    let value = |l: &str| l.rsplit(' ').next().unwrap().to_string();
    assert_eq!(
        value(line),
        value(total),
        "every list request used at most 3 statements"
    );
}

#[tokio::test]
async fn export_markdown_and_json() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("lee").await;
    let id = o.create_conversation(&u, Some("Export me")).await;
    o.add_message(&u, &id, "user", "question").await;
    o.add_message(&u, &id, "assistant", "answer").await;
    let r = o
        .get_as(&u, &format!("/api/v1/conversations/{id}/export"))
        .send()
        .await
        .unwrap();
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

    let r = o
        .get_as(
            &u,
            &format!("/api/v1/conversations/{id}/export?format=JSON"),
        )
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    assert_eq!(v["title"], "Export me");
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    assert!(v.get("messageCount").is_none());

    let r = o
        .get_as(&u, &format!("/api/v1/conversations/{id}/export?format=pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        json(r).await,
        json!({"error": "Invalid format. Must be 'markdown' or 'json'"})
    );
}

#[tokio::test]
async fn head_is_answered_like_get_without_body() {
    let o = spawn_origin(|_| {}).await;
    let u = o.user("max").await;
    o.create_conversation(&u, None).await;
    let get = o.get_as(&u, "/api/v1/conversations").send().await.unwrap();
    let etag = header(&get, "etag");
    let len = get.bytes().await.unwrap().len();
    let r = o
        .request_as(&u, Method::HEAD, "/api/v1/conversations")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(header(&r, "content-length"), len.to_string());
    assert!(r.bytes().await.unwrap().is_empty());
}
