//! Demo and bulk data (`llmselect-origin seed`).

use std::time::Instant;

use tokio_postgres::Client;

use crate::auth::password;

pub const DEMO_PASSWORD: &str = "demo-password-123";

/// Demo users `alice` (admin) and `bob` with a few conversations, messages and comparisons each.
/// Idempotent: users that already have data are left alone.
pub async fn demo(client: &mut Client, log_n: u8) -> anyhow::Result<()> {
    let hash = tokio::task::spawn_blocking(move || password::hash(DEMO_PASSWORD, log_n)).await?;
    let tx = client.transaction().await?;
    for (username, is_admin) in [("alice", true), ("bob", false)] {
        let id: i64 = tx
            .query_one(
                "INSERT INTO users (username, password_hash, is_admin) VALUES ($1, $2, $3)
                 ON CONFLICT (username) DO UPDATE SET is_admin = EXCLUDED.is_admin
                 RETURNING id",
                &[&username, &hash, &is_admin],
            )
            .await?
            .get(0);
        let has_data: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM conversations WHERE user_id = $1)",
                &[&id],
            )
            .await?
            .get(0);
        if has_data {
            continue;
        }
        let chats = [
            (
                "openai",
                "gpt-4o",
                Some("Trip to Lisbon"),
                "Plan three days in Lisbon",
                "Day 1: Alfama and the castle…",
            ),
            (
                "anthropic",
                "claude-haiku-4-5-20251001",
                None,
                "Explain keyset pagination",
                "Keyset pagination uses the last row's sort key…",
            ),
            (
                "mistral",
                "mistral-small-latest",
                Some("Haiku"),
                "Write a haiku about caches",
                "Stale bytes linger on…",
            ),
        ];
        for (i, (provider, model, title, question, answer)) in chats.iter().enumerate() {
            let cid: uuid::Uuid = tx
                .query_one(
                    "INSERT INTO conversations (user_id, provider, model, title, last_message_at)
                     VALUES ($1, $2, $3, $4, now() - make_interval(mins => $5)) RETURNING id",
                    &[&id, provider, model, title, &((3 - i as i32) * 10)],
                )
                .await?
                .get(0);
            tx.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, updated_at)
                 SELECT $1, r, c, t, t FROM (VALUES
                   ('user', $2::text, (SELECT last_message_at - interval '2 seconds' FROM conversations WHERE id = $1)),
                   ('assistant', $3::text, (SELECT last_message_at FROM conversations WHERE id = $1))) v(r, c, t)",
                &[&cid, question, answer],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO comparison_results (user_id, prompt, results, preferred_index) VALUES
             ($1, 'What is a CDN?', $2::jsonb, 0),
             ($1, 'Summarise RFC 9111 in one line', $3::jsonb, NULL)",
            &[
                &id,
                &serde_json::json!([
                    {"provider":"openai","model":"gpt-4o","response":"A network of caches close to users.","time":1.21,"tokens":9},
                    {"provider":"mistral","model":"mistral-small-latest","response":"Servers that cache content near users.","time":0.94,"tokens":9}
                ]),
                &serde_json::json!([
                    {"provider":"anthropic","model":"claude-haiku-4-5-20251001","response":"How HTTP caches store and reuse responses.","time":0.88,"tokens":10},
                    {"provider":"gemini","model":"gemini-2.5-flash","response":"Provider request failed. Please check your API key and try again.","time":0,"tokens":0,"error":true}
                ]),
            ],
        )
        .await?;
        tx.execute(
            "UPDATE users SET cache_version = cache_version + 1 WHERE id = $1",
            &[&id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Sizes of a bulk fill (totals).
#[derive(Debug, Clone)]
pub struct BulkSpec {
    pub users: i64,
    pub conversations: i64,
    pub messages: i64,
    pub comparisons: i64,
}

/// Bulk-fills with set-based SQL: users `bulk<n>` (password `demo-password-123`, one precomputed
/// hash), conversations spread round-robin over them, `messages / conversations` messages per
/// conversation, comparisons spread over the users. Returns a one-line summary.
pub async fn bulk(client: &mut Client, spec: &BulkSpec) -> anyhow::Result<String> {
    let start = Instant::now();
    let hash = tokio::task::spawn_blocking(|| password::hash(DEMO_PASSWORD, 10)).await?;
    let per_conv: i32 = if spec.conversations > 0 {
        (spec.messages / spec.conversations).clamp(0, i32::MAX as i64) as i32
    } else {
        0
    };
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO users (username, password_hash)
         SELECT 'bulk' || g, $1 FROM generate_series(1, $2::bigint) g
         ON CONFLICT (username) DO NOTHING",
        &[&hash, &spec.users],
    )
    .await?;
    tx.batch_execute(
        "CREATE TEMP TABLE seed_users ON COMMIT DROP AS
           SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM users WHERE username LIKE 'bulk%'",
    )
    .await?;
    tx.execute(
        "CREATE TEMP TABLE seed_conversations ON COMMIT DROP AS
         WITH ins AS (
           INSERT INTO conversations (user_id, provider, model, title, last_message_at, created_at, updated_at)
           SELECT u.id,
                  (ARRAY['openai','anthropic','gemini','mistral'])[1 + g % 4],
                  (ARRAY['gpt-4o','claude-haiku-4-5-20251001','gemini-2.5-flash','mistral-small-latest'])[1 + g % 4],
                  CASE WHEN g % 3 = 0 THEN NULL ELSE 'Bulk conversation ' || g END,
                  now() - make_interval(secs => g * 7), now() - make_interval(secs => g * 7),
                  now() - make_interval(secs => g * 7)
           FROM generate_series(1, $1::bigint) g
           JOIN seed_users u ON u.n = g % (SELECT count(*) FROM seed_users)
           RETURNING id, created_at)
         SELECT id, created_at FROM ins",
        &[&spec.conversations],
    )
    .await?;
    tx.execute(
        "INSERT INTO messages (conversation_id, role, content, created_at, updated_at)
         SELECT c.id,
                CASE WHEN k % 2 = 1 THEN 'user' ELSE 'assistant' END,
                CASE WHEN k % 2 = 1 THEN 'Question number ' || k || ' about caching and databases'
                     ELSE 'Answer number ' || k || ': it depends on the workload.' END,
                c.created_at + make_interval(secs => k), c.created_at + make_interval(secs => k)
         FROM seed_conversations c CROSS JOIN generate_series(1, $1::int) k",
        &[&per_conv],
    )
    .await?;
    tx.execute(
        "UPDATE conversations c SET last_message_at = s.created_at + make_interval(secs => $1::int)
         FROM seed_conversations s WHERE c.id = s.id AND $1::int > 0",
        &[&per_conv],
    )
    .await?;
    tx.execute(
        "INSERT INTO comparison_results (user_id, prompt, results, created_at, updated_at)
         SELECT u.id, 'Bulk prompt ' || g,
                '[{\"provider\":\"openai\",\"model\":\"gpt-4o\",\"response\":\"A\",\"time\":1.0,\"tokens\":1},
                  {\"provider\":\"mistral\",\"model\":\"mistral-small-latest\",\"response\":\"B\",\"time\":1.2,\"tokens\":1}]'::jsonb,
                now() - make_interval(secs => g * 5), now() - make_interval(secs => g * 5)
         FROM generate_series(1, $1::bigint) g
         JOIN seed_users u ON u.n = g % (SELECT count(*) FROM seed_users)",
        &[&spec.comparisons],
    )
    .await?;
    tx.execute(
        "UPDATE users SET cache_version = cache_version + 1 WHERE username LIKE 'bulk%'",
        &[],
    )
    .await?;
    tx.commit().await?;
    client
        .batch_execute(
            "ANALYZE users; ANALYZE conversations; ANALYZE messages; ANALYZE comparison_results;",
        )
        .await?;
    Ok(format!(
        "seeded {} users, {} conversations, {} messages, {} comparisons in {:.1}s",
        spec.users,
        spec.conversations,
        i64::from(per_conv) * spec.conversations,
        spec.comparisons,
        start.elapsed().as_secs_f64()
    ))
}
