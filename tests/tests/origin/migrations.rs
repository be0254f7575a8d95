//! The migration runner: idempotence, checksums, stop at the first error, no-transaction
//! migrations with invalid-index cleanup, concurrent starts; and index use of the list query.

use llmselect_e2e::db::TestDb;
use llmselect_origin::db::migrate::{self, MigrateError, Migration};
use llmselect_origin::{App, Config};
use llmselect_origin::{CONVERSATIONS_LIST_KEYSET, CONVERSATIONS_LIST_OFFSET};

/// Every migration, in order: what a fresh database gets applied.
const ALL_MIGRATIONS: [&str; 9] = [
    "0001_init",
    "0002_performance_indexes",
    "0003_revoked_tokens",
    "0004_cache_invalidations",
    "0005_accounts",
    "0006_message_search_trgm",
    "0007_drop_idx_conversation_user_created",
    "0008_drop_idx_conversations_user_provider",
    "0009_users_conversation_count",
];

#[tokio::test]
async fn migrations_are_idempotent_and_recorded_with_checksums() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    let first = migrate::run(&mut c, &migrate::embedded()).await.unwrap();
    assert_eq!(first, ALL_MIGRATIONS);
    let again = migrate::run(&mut c, &migrate::embedded()).await.unwrap();
    assert!(again.is_empty());
    let rows = c
        .query(
            "SELECT version, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), migrate::embedded().len());
    for (row, m) in rows.iter().zip(migrate::embedded()) {
        assert_eq!(row.get::<_, String>(0), m.version);
        assert_eq!(row.get::<_, String>(1), m.checksum());
        assert_eq!(m.checksum().len(), 64);
    }
    // Building the app on a migrated database applies nothing and works.
    let app = App::build(Config::for_database(db.url())).await.unwrap();
    drop(app);
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    migrate::run(&mut c, &migrate::embedded()).await.unwrap();
    let mut changed = migrate::embedded();
    changed[0].sql.push_str("\n-- edited after release\n");
    changed.push(Migration::new(
        "0099_more",
        "CREATE TABLE should_not_exist (a int);",
    ));
    let err = migrate::run(&mut c, &changed).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::ChecksumMismatch { ref version, .. } if version == "0001_init"),
        "{err}"
    );
    let exists: bool = c
        .query_one("SELECT to_regclass('should_not_exist') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "nothing after a refused start");

    // The server refuses to start too.
    c.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = '0002_performance_indexes'", &[])
        .await
        .unwrap();
    let err = App::build(Config::for_database(db.url()))
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("changed after it was applied"),
        "{err:#}"
    );
}

#[tokio::test]
async fn the_runner_stops_at_the_first_error() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    let list = vec![
        Migration::new("0001_a", "CREATE TABLE a (x int);"),
        Migration::new("0002_b", "CREATE TABLE b (x int);\nSELEC broken;"),
        Migration::new("0003_c", "CREATE TABLE c (x int);"),
    ];
    let err = migrate::run(&mut c, &list).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::Failed { ref version, .. } if version == "0002_b"),
        "{err}"
    );
    let versions: Vec<String> = c
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec!["0001_a"]);
    let present: Vec<bool> = c
        .query_one(
            "SELECT to_regclass('a') IS NOT NULL, to_regclass('b') IS NOT NULL, to_regclass('c') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| vec![r.get(0), r.get(1), r.get(2)])
        .unwrap();
    assert_eq!(
        present,
        vec![true, false, false],
        "0002 rolled back as a whole, 0003 never ran"
    );
}

#[tokio::test]
async fn no_transaction_migrations_replace_an_invalid_index() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    let table = Migration::new(
        "0001_t",
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1);",
    );
    migrate::run(&mut c, std::slice::from_ref(&table))
        .await
        .unwrap();
    // A failed concurrent build leaves an invalid index behind.
    assert!(c
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY idx_t_a ON t (a)")
        .await
        .is_err());
    assert_eq!(index_valid(&c).await, Some(false));
    let index = Migration::new(
        "0002_idx",
        "-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_t_a ON t (a);\n",
    );
    migrate::run(&mut c, &[table, index]).await.unwrap();
    assert_eq!(
        index_valid(&c).await,
        Some(true),
        "the invalid index was dropped and rebuilt"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn concurrent_starts_are_serialised() {
    let db = TestDb::new().await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let url = db.url().to_string();
        handles.push(tokio::spawn(async move {
            let mut c = llmselect_e2e::db::connect(&url).await;
            migrate::run(&mut c, &migrate::embedded()).await
        }));
    }
    let mut applied = Vec::new();
    for h in handles {
        applied.extend(h.await.unwrap().expect("every runner succeeds"));
    }
    applied.sort();
    assert_eq!(applied, ALL_MIGRATIONS, "each applied exactly once");
}

#[tokio::test]
async fn the_list_query_uses_the_performance_index() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    migrate::run(&mut c, &migrate::embedded()).await.unwrap();
    let report = llmselect_origin::seed::bulk(
        &mut c,
        &llmselect_origin::seed::BulkSpec {
            users: 50,
            conversations: 10_000,
            messages: 40_000,
            comparisons: 2_000,
        },
    )
    .await
    .unwrap();
    assert!(report.contains("10000 conversations"), "{report}");
    let uid: i64 = c
        .query_one("SELECT id FROM users WHERE username = 'bulk7'", &[])
        .await
        .unwrap()
        .get(0);
    // The origin's own list statements, planned as the server runs them (prepared, with
    // parameters), for a first page and a keyset page.
    c.batch_execute(&format!(
        "PREPARE list_page(bigint, bigint, bigint) AS {};
         PREPARE list_keyset(bigint, bigint, timestamptz, uuid) AS {};",
        CONVERSATIONS_LIST_OFFSET.text, CONVERSATIONS_LIST_KEYSET.text
    ))
    .await
    .unwrap();
    for execute in [
        format!("EXECUTE list_page({uid}, 20, 0)"),
        format!("EXECUTE list_keyset({uid}, 5, now(), 'ffffffff-ffff-ffff-ffff-ffffffffffff')"),
    ] {
        let plan: Vec<String> = c
            .query(&format!("EXPLAIN {execute}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("idx_conversations_user_last_message"),
            "{execute}: {plan}"
        );
        assert!(
            plan.contains("idx_message_conversation_created"),
            "{execute}: {plan}"
        );
        // The total is the user's counter, read by primary key; with this test's 50 users a
        // sequential scan of `users` is the cheaper plan, so only the big tables are checked.
        for table in ["conversations", "messages"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{execute}: {plan}"
            );
        }
    }
    let plan: Vec<String> = c
        .query(
            &format!(
                "EXPLAIN SELECT id FROM comparison_results WHERE user_id = {uid}
                 ORDER BY created_at DESC, id DESC LIMIT 20"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.join("\n").contains("idx_comparison_user_created"),
        "{plan:?}"
    );
}

async fn index_valid(c: &tokio_postgres::Client) -> Option<bool> {
    c.query_opt(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE x.relname = 'idx_t_a'",
        &[],
    )
    .await
    .unwrap()
    .map(|r| r.get::<_, bool>(0))
}

/// 0007 and 0008 drop the two unused indexes of 0002 (concurrently, outside a transaction), and
/// 0009 backfills every user's conversation counter from existing rows.
#[tokio::test]
async fn later_migrations_drop_the_unused_indexes_and_backfill_the_counter() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    let all = migrate::embedded();
    let upto = all
        .iter()
        .position(|m| m.version == "0007_drop_idx_conversation_user_created")
        .unwrap();
    migrate::run(&mut c, &all[..upto]).await.unwrap();
    c.batch_execute(
        "INSERT INTO users (username, password_hash) VALUES ('a', 'x'), ('b', 'x'), ('c', 'x');
         INSERT INTO conversations (user_id, provider, model)
           SELECT u.id, 'openai', 'gpt-4o' FROM users u CROSS JOIN generate_series(1, 3) g
            WHERE u.username = 'a'
           UNION ALL SELECT id, 'openai', 'gpt-4o' FROM users WHERE username = 'b';",
    )
    .await
    .unwrap();
    let applied = migrate::run(&mut c, &all).await.unwrap();
    assert_eq!(applied.len(), all.len() - upto);
    let counts: Vec<(String, i64)> = c
        .query(
            "SELECT username, conversation_count FROM users ORDER BY username",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        counts,
        vec![("a".into(), 3), ("b".into(), 1), ("c".into(), 0)]
    );
    let left: Vec<String> = c
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'conversations' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        vec!["conversations_pkey", "idx_conversations_user_last_message"]
    );
}
