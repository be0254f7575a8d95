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
            "UPDATE users SET cache_version = cache_version + 1,
               conversation_count = (SELECT count(*) FROM conversations WHERE user_id = $1)
             WHERE id = $1",
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

/// Bytes of the filler text that bulk rows take their text from.
const FILLER_BYTES: usize = 64 * 1024;
/// The longest slice a bulk row takes (an assistant message); every sentence start handed to SQL
/// leaves at least this much text after it.
const MAX_SLICE: usize = 3000;

/// English-like filler for the bulk seed, built once: sentences of 6–20 words from a fixed
/// vocabulary in paragraphs of 2–5 sentences, ASCII only, the same on every run (a fixed-seed
/// xorshift). Rows take `substring` slices of it that start at a sentence, so texts have realistic
/// lengths (and compress in TOAST like prose) without generating text per row.
#[derive(Debug)]
struct Filler {
    text: String,
    /// Byte offsets of sentence starts with at least [`MAX_SLICE`] bytes after them.
    starts: Vec<i32>,
}

impl Filler {
    fn new() -> Filler {
        const VOCABULARY: &str = "\
            the a model cache request response token tokens latency database index query server \
            client function value result example approach step first then because however which \
            should can will might usually often each every when if and or but with without for \
            from into over after before between this that these your their its our data user \
            users page pages key keys row rows table column time cost memory disk network error \
            errors retry timeout stream streaming prompt answer question context window summary \
            provider compare consider use keep avoid measure check return store read write \
            update delete insert select plan scan sort join filter limit offset cursor order \
            version header body status code test tests build deploy config option default simple \
            small large fast slow stale fresh valid invalid safe correct better worse same \
            different important common typical practical several most many few is are was be has \
            have does do makes gives takes needs means depends on in at to of by as it you we \
            they not only also still just more less here";
        let words: Vec<&str> = VOCABULARY.split_whitespace().collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut text = String::with_capacity(FILLER_BYTES + 512);
        let mut starts = Vec::new();
        while text.len() < FILLER_BYTES {
            for sentence in 0..2 + next(4) {
                if sentence > 0 {
                    text.push(' ');
                }
                if text.len() + MAX_SLICE <= FILLER_BYTES {
                    starts.push(text.len() as i32);
                }
                for w in 0..6 + next(15) {
                    let word = words[next(words.len())];
                    if w == 0 {
                        let mut chars = word.chars();
                        text.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                        text.push_str(chars.as_str());
                    } else {
                        if w > 3 && next(8) == 0 {
                            text.push(',');
                        }
                        text.push(' ');
                        text.push_str(word);
                    }
                }
                text.push('.');
            }
            text.push_str("\n\n");
        }
        Filler { text, starts }
    }
}

/// SQL for a slice of the filler: `len` bytes (an SQL expression, at most [`MAX_SLICE`]) from the
/// sentence start chosen by `pick` (a non-negative SQL expression, reduced modulo the number of
/// starts). Expects the filler as `$1` (bytea) and the starts as `$2` (int[]): `substring` on
/// bytea copies just the slice, whereas `substr` on text in a multi-byte encoding such as UTF-8
/// counts characters through the string on every row; `convert_from` turns the (ASCII) bytes back
/// into text.
fn filler_slice(pick: &str, len: &str) -> String {
    format!(
        "convert_from(substring($1::bytea FROM 1 + ($2::int[])[1 + (({pick}) % cardinality($2::int[]))::int] \
         FOR ({len})::int), 'UTF8')"
    )
}

/// Bulk-fills with set-based SQL: users `bulk<n>` (password `demo-password-123`, one precomputed
/// hash), conversations spread round-robin over them, `messages / conversations` messages per
/// conversation alternating user/assistant, comparisons spread over the users. Texts are slices of
/// one filler text with lengths varying by row number: user messages and prompts 50–400 bytes,
/// assistant messages and comparison responses 300–3000 bytes, titles 10–80 characters (a third
/// of conversations untitled). Returns a one-line summary.
pub async fn bulk(client: &mut Client, spec: &BulkSpec) -> anyhow::Result<String> {
    let start = Instant::now();
    let hash = tokio::task::spawn_blocking(|| password::hash(DEMO_PASSWORD, 10)).await?;
    let per_conv: i32 = if spec.conversations > 0 {
        (spec.messages / spec.conversations).clamp(0, i32::MAX as i64) as i32
    } else {
        0
    };
    let filler = Filler::new();
    let text = filler.text.as_bytes();
    let starts = &filler.starts;
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
    // Ids are drawn up front so that messages can be numbered by conversation number `g`.
    tx.execute(
        "CREATE TEMP TABLE seed_conversations ON COMMIT DROP AS
         SELECT g, gen_random_uuid() AS id, u.id AS user_id,
                now() - make_interval(secs => g * 7) AS created_at
         FROM generate_series(1, $1::bigint) g
         JOIN seed_users u ON u.n = g % (SELECT count(*) FROM seed_users)",
        &[&spec.conversations],
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO conversations (id, user_id, provider, model, title, last_message_at, created_at, updated_at)
             SELECT id, user_id,
                    (ARRAY['openai','anthropic','gemini','mistral'])[1 + g % 4],
                    (ARRAY['gpt-4o','claude-haiku-4-5-20251001','gemini-2.5-flash','mistral-small-latest'])[1 + g % 4],
                    CASE WHEN g % 3 = 0 THEN NULL
                         ELSE translate({title}, E'\\n', ' ') END,
                    created_at + make_interval(secs => $3::int), created_at, created_at
             FROM seed_conversations",
            title = filler_slice("g * 7919", "10 + (g * 31) % 71"),
        ),
        &[&text, starts, &per_conv],
    )
    .await?;
    // Message number n = g * per_conv + k drives both the slice's start and its length.
    tx.execute(
        &format!(
            "INSERT INTO messages (conversation_id, role, content, created_at, updated_at)
             SELECT c.id,
                    CASE WHEN k % 2 = 1 THEN 'user' ELSE 'assistant' END,
                    {content},
                    c.created_at + make_interval(secs => k), c.created_at + make_interval(secs => k)
             FROM seed_conversations c
             CROSS JOIN generate_series(1, $3::int) k
             CROSS JOIN LATERAL (SELECT c.g * $3::int + k AS n) o",
            content = filler_slice(
                "o.n * 7919",
                "CASE WHEN k % 2 = 1 THEN 50 + (o.n * 37) % 351 ELSE 300 + (o.n * 613) % 2701 END",
            ),
        ),
        &[&text, starts, &per_conv],
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO comparison_results (user_id, prompt, results, created_at, updated_at)
             SELECT u.id, {prompt},
                    jsonb_build_array(
                      jsonb_build_object('provider', 'openai', 'model', 'gpt-4o',
                        'response', {first}, 'time', round(0.4 + a / 1500.0, 2), 'tokens', a / 4),
                      jsonb_build_object('provider', 'mistral', 'model', 'mistral-small-latest',
                        'response', {second}, 'time', round(0.3 + b / 1800.0, 2), 'tokens', b / 4))
                    || CASE WHEN g % 3 = 0 THEN jsonb_build_array(
                      jsonb_build_object('provider', 'anthropic', 'model', 'claude-haiku-4-5-20251001',
                        'response', {third}, 'time', round(0.5 + c / 1600.0, 2), 'tokens', c / 4))
                       ELSE '[]'::jsonb END,
                    now() - make_interval(secs => g * 5), now() - make_interval(secs => g * 5)
             FROM generate_series(1, $3::bigint) g
             JOIN seed_users u ON u.n = g % (SELECT count(*) FROM seed_users)
             CROSS JOIN LATERAL (SELECT 300 + (g * 613) % 2701 AS a, 300 + (g * 409) % 2701 AS b,
                                        300 + (g * 211) % 2701 AS c) len",
            prompt = filler_slice("g * 7919", "50 + (g * 37) % 351"),
            first = filler_slice("g * 7919 + 1", "a"),
            second = filler_slice("g * 7919 + 2", "b"),
            third = filler_slice("g * 7919 + 3", "c"),
        ),
        &[&text, starts, &spec.comparisons],
    )
    .await?;
    tx.execute(
        "UPDATE users u SET cache_version = cache_version + 1,
           conversation_count = (SELECT count(*) FROM conversations c WHERE c.user_id = u.id)
         WHERE username LIKE 'bulk%'",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_is_deterministic_ascii_prose_with_room_after_every_start() {
        let a = Filler::new();
        let b = Filler::new();
        assert_eq!(a.text, b.text);
        assert!(a.text.len() >= FILLER_BYTES);
        assert!(a.text.is_ascii());
        assert!(a.starts.len() > 300, "{}", a.starts.len());
        for &s in &a.starts {
            let s = s as usize;
            assert!(s + MAX_SLICE <= a.text.len());
            let first = a.text.as_bytes()[s];
            assert!(first.is_ascii_uppercase(), "sentence start at {s}");
        }
        assert!(a.text.contains(".\n\n") && a.text.contains(", "));
    }
}
