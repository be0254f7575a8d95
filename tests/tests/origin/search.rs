//! Conversation search (`?search=`) over titles, providers, models and message content: matches,
//! case, isolation between users, literal wildcards, cursor pages, statement counts, and search
//! on a database where the pg_trgm index could not be created.

use llmselect_e2e::db::{connect, TestDb};
use llmselect_e2e::origin::{TestOrigin, TestUser};
use llmselect_e2e::stack::Stack;
use llmselect_origin::db::migrate;

use crate::support::{get_counted, get_json, origin_with_user, strings};

/// `?search=<term>` (percent-encoded) at `limit`: asserts the statement budget and returns the
/// titles in list order and the total.
async fn search(o: &TestOrigin, u: &TestUser, term: &str, limit: usize) -> (Vec<String>, i64) {
    let encoded: String = url::form_urlencoded::byte_serialize(term.as_bytes()).collect();
    let (n, l) = get_counted(
        o,
        u,
        &format!("/api/v1/conversations?limit={limit}&search={encoded}"),
    )
    .await;
    assert_eq!(n, 2, "auth + one search statement for {term:?}");
    (
        strings(&l, "conversations", "title"),
        l["total"].as_i64().unwrap(),
    )
}

/// A conversation titled `title` with the messages `(role, content)`.
async fn conversation(o: &TestOrigin, u: &TestUser, title: &str, messages: &[(&str, &str)]) {
    let id = o.create_conversation(u, Some(title)).await;
    for (role, content) in messages {
        o.add_message(u, &id, role, content).await;
    }
}

#[tokio::test]
async fn search_matches_message_content_and_titles_case_insensitively() {
    let s = origin_with_user("sam").await;
    let (o, u) = (s.origin(), s.user());
    conversation(
        o,
        u,
        "Trip planning",
        &[("user", "three days somewhere warm")],
    )
    .await;
    conversation(
        o,
        u,
        "untitled chat",
        &[
            ("user", "What should I see?"),
            ("assistant", "The Alfama district of Lisbon, then Belém."),
        ],
    )
    .await;
    conversation(o, u, "Rust question", &[("user", "borrow checker")]).await;

    // By an assistant message's content, in any case.
    for term in ["lisbon", "LISBON", "alfama DISTRICT", "belém"] {
        assert_eq!(
            search(o, u, term, 20).await,
            (vec!["untitled chat".to_string()], 1),
            "{term}"
        );
    }
    // By a user message's content.
    assert_eq!(
        search(o, u, "Borrow", 20).await,
        (vec!["Rust question".to_string()], 1)
    );
    // By title, as before.
    assert_eq!(
        search(o, u, "TRIP", 20).await,
        (vec!["Trip planning".to_string()], 1)
    );
    assert_eq!(
        search(o, u, "warm", 20).await,
        (vec!["Trip planning".to_string()], 1)
    );
    assert_eq!(
        search(o, u, "t", 20).await.1,
        3,
        "a one-character term matches too"
    );
    // No match: an empty page with its total.
    assert_eq!(search(o, u, "kubernetes", 20).await, (vec![], 0));
    // A conversation matching by several messages is listed once.
    assert_eq!(search(o, u, "e", 20).await.1, 3);
}

#[tokio::test]
async fn search_never_matches_other_users_messages() {
    let s = Stack::builder().origin(|_| {}).user("owner").start().await;
    let (o, owner) = (s.origin(), s.user());
    let other = o.user("other").await;
    conversation(o, owner, "mine", &[("user", "the secret needle is here")]).await;
    conversation(o, &other, "theirs", &[("user", "nothing to see")]).await;

    assert_eq!(
        search(o, &other, "needle", 20).await,
        (vec![], 0),
        "another user's message never matches"
    );
    assert_eq!(
        search(o, owner, "needle", 20).await,
        (vec!["mine".to_string()], 1)
    );
    assert_eq!(search(o, owner, "nothing to see", 20).await, (vec![], 0));
}

#[tokio::test]
async fn search_treats_percent_underscore_and_backslash_literally() {
    let s = origin_with_user("lit").await;
    let (o, u) = (s.origin(), s.user());
    for (title, content) in [
        ("percent", "we are 100% sure"),
        ("digits", "1000 items"),
        ("underscore", "call snake_case here"),
        ("no underscore", "call snakeXcase here"),
        ("backslash", r"a path like C:\temp"),
        ("no backslash", "a path like C:/temp"),
    ] {
        conversation(o, u, title, &[("user", content)]).await;
    }
    assert_eq!(search(o, u, "100%", 20).await.0, vec!["percent"]);
    assert_eq!(search(o, u, "%", 20).await.0, vec!["percent"]);
    assert_eq!(search(o, u, "e_c", 20).await.0, vec!["underscore"]);
    assert_eq!(search(o, u, "_", 20).await.0, vec!["underscore"]);
    assert_eq!(search(o, u, r"C:\t", 20).await.0, vec!["backslash"]);
    assert_eq!(search(o, u, r"\", 20).await.0, vec!["backslash"]);
    assert_eq!(search(o, u, r"%\_", 20).await, (vec![], 0));
}

#[tokio::test]
async fn search_pages_by_cursor_with_the_total_of_all_matches() {
    let s = origin_with_user("pager").await;
    let (o, u) = (s.origin(), s.user());
    for i in 0..5 {
        conversation(o, u, &format!("c{i}"), &[("user", "needle in the content")]).await;
        conversation(o, u, &format!("other{i}"), &[("user", "hay")]).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/conversations?limit=2&search=NEEDLE".to_string();
    loop {
        let (n, l) = get_counted(o, u, &path).await;
        assert_eq!(n, 2, "auth + one keyset search statement");
        assert_eq!(
            l["total"], 5,
            "every match, not only those after the cursor"
        );
        seen.extend(strings(&l, "conversations", "title"));
        match l["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/conversations?limit=2&search=NEEDLE&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["c4", "c3", "c2", "c1", "c0"]);
    // Offset pages of a search.
    let l = get_json(o, u, "/api/v1/conversations?limit=2&page=3&search=needle").await;
    assert_eq!(strings(&l, "conversations", "title"), vec!["c0"]);
    assert_eq!(
        (l["total"].as_i64(), l["totalPages"].as_i64()),
        (Some(5), Some(3))
    );
}

/// A database whose migrating role may not create extensions: 0006 still succeeds, without the
/// trigram index, and search works (by scanning the user's messages).
#[tokio::test]
async fn search_works_where_pg_trgm_cannot_be_created() {
    let db = TestDb::new().await;
    let role = format!("r_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(db.admin_url()).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             ALTER DATABASE \"{name}\" OWNER TO {role};
             REVOKE CREATE ON DATABASE \"{name}\" FROM {role};",
            name = db.name()
        ))
        .await
        .unwrap();
    let role_url = {
        let mut url = url::Url::parse(db.url()).unwrap();
        url.set_username(&role).unwrap();
        url.set_password(None).unwrap();
        url.to_string()
    };
    let mut c = connect(&role_url).await;
    let applied = migrate::run(&mut c, &migrate::embedded()).await;
    drop(c);
    // Hand everything back before asserting, so that the role can always be dropped.
    let in_db = connect(db.url()).await;
    in_db
        .batch_execute(&format!(
            "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role};"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    let applied = applied.expect("every migration applies without pg_trgm");
    assert!(applied.contains(&"0006_message_search_trgm".to_string()));
    let (ext, index): (bool, bool) = in_db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'),
                    to_regclass('idx_messages_content_trgm') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((ext, index), (false, false));

    let s = Stack::builder()
        .database(db)
        .origin(|_| {})
        .user("plain")
        .start()
        .await;
    let (o, u) = (s.origin(), s.user());
    conversation(o, u, "one", &[("assistant", "the Lisbon answer")]).await;
    conversation(o, u, "two", &[("user", "other text")]).await;
    assert_eq!(
        search(o, u, "LISBON", 20).await,
        (vec!["one".to_string()], 1)
    );
    assert_eq!(search(o, u, "zzz", 20).await, (vec![], 0));
}
