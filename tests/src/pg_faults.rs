//! PostgreSQL restarted and stopped under write load (issue 16, item 7), then every acknowledged
//! write checked in the database. One implementation for the end-to-end test
//! (`tests/tests/origin/db_faults.rs`, which asserts on the [`Figures`]) and for the `postgres`
//! scenario of `scripts/reliability.sh` (which reports them).
//!
//! The origin runs on a private PostgreSQL server ([`PrivatePg`]) so the shared server of the
//! other tests is never touched. Concurrent writers create conversations and post messages
//! through the API while the server is restarted (`pg_ctl restart -m fast`) and later stopped
//! (`pg_ctl stop -m fast`) for [`Settings::outage`] and started again. Each write's outcome is
//! recorded: acknowledged (2xx with its id), an error answer, or no answer in time (a hang).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::db::TestDb;
use crate::origin::{TestOrigin, TestUser};
use crate::private_pg::PrivatePg;
use crate::stack::Stack;
use crate::wait::{eventually, eventually_true};

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Concurrent writers, one user each.
    pub writers: usize,
    /// How long a request waits for a pooled connection before its 503.
    pub pool_timeout_ms: u64,
    /// How long the server stays down in the stop/start phase.
    pub outage: Duration,
    /// Writes acknowledged before each fault, and after the outage before the run ends.
    pub writes_per_phase: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            writers: 4,
            pool_timeout_ms: 1_000,
            outage: Duration::from_secs(2),
            writes_per_phase: 40,
        }
    }
}

impl Settings {
    /// Any answer slower than this is a hang: the pool timeout plus a generous margin.
    pub fn request_limit(&self) -> Duration {
        Duration::from_millis(self.pool_timeout_ms) + Duration::from_secs(4)
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub writers: usize,
    pub outage_ms: u64,
    /// Writes the API acknowledged (2xx with an id).
    pub acknowledged: usize,
    pub acknowledged_conversations: usize,
    pub acknowledged_messages: usize,
    /// Acknowledged writes found in the database as acknowledged.
    pub present: usize,
    /// Acknowledged writes missing from the database (or stored differently).
    pub lost: Vec<String>,
    /// Rows breaking an invariant a write keeps in one statement: a message without its
    /// conversation, a user whose `conversation_count` or `cache_version` does not match the
    /// rows, a conversation whose `last_message_at` is not its newest message's time.
    pub half_written: i64,
    /// Rows stored beyond the acknowledged writes (a commit that raced the disconnect and was
    /// answered with an error: allowed).
    pub stored_beyond_acknowledged: i64,
    /// Error answers by status.
    pub errors: BTreeMap<u16, usize>,
    /// Error answers given while the server was stopped.
    pub errors_during_outage: usize,
    /// Error answers that were not a `503 service_unavailable` JSON body.
    pub unclean_errors: Vec<String>,
    /// Requests without an answer within [`Settings::request_limit`] (or a broken connection).
    pub hangs: Vec<String>,
    /// `/health` (operations listener) while the server was stopped.
    pub health_during_outage: Value,
    /// From the restart's return (server accepting again) to the first acknowledged write.
    pub recovery_after_restart_ms: f64,
    /// From the start after the outage to the first acknowledged write.
    pub recovery_after_start_ms: f64,
    /// A write after everything, on the same origin: its status.
    pub final_write_status: u16,
}

/// What one write request came to.
enum Outcome {
    Conversation {
        user: usize,
        id: Uuid,
        title: String,
    },
    Message {
        conversation: Uuid,
        id: i64,
        content: String,
    },
    /// A non-2xx answer: its status and body.
    Error { status: u16, body: Value },
    /// No answer within the limit, or a broken connection.
    Hang(String),
}

struct Record {
    at: Instant,
    outcome: Outcome,
}

impl Record {
    fn acknowledged(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Conversation { .. } | Outcome::Message { .. }
        )
    }
}

/// One POST as `user`: its status and JSON body, or why no answer came in time.
async fn post(
    o: &TestOrigin,
    user: &TestUser,
    path: &str,
    body: Value,
    limit: Duration,
) -> Result<(u16, Value), String> {
    let r = o
        .request_as(user, Method::POST, path)
        .json(&body)
        .timeout(limit)
        .send()
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("POST {path}: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

fn conversation_body(title: &str) -> Value {
    json!({"provider": "openai", "model": "gpt-4o", "title": title})
}

/// Writes until `done`: a conversation, then three messages into it, and again. Every outcome goes
/// to `log`.
async fn writer(
    o: &TestOrigin,
    n: usize,
    user: &TestUser,
    limit: Duration,
    done: &AtomicBool,
    log: &Mutex<Vec<Record>>,
) {
    let mut conversation: Option<Uuid> = None;
    let mut seq = 0u64;
    while !done.load(Ordering::Relaxed) {
        seq += 1;
        let label = format!("w{n}-{seq}");
        let outcome = match conversation {
            Some(c) if seq % 4 != 0 => {
                let path = format!("/api/v1/conversations/{c}/messages");
                let body = json!({"role": "user", "content": label});
                match post(o, user, &path, body, limit).await {
                    Ok((201, v)) => Outcome::Message {
                        conversation: c,
                        id: v["id"].as_i64().expect("message id"),
                        content: label,
                    },
                    Ok((status, body)) => Outcome::Error { status, body },
                    Err(e) => Outcome::Hang(e),
                }
            }
            _ => {
                let body = conversation_body(&label);
                match post(o, user, "/api/v1/conversations", body, limit).await {
                    Ok((201, v)) => {
                        let id: Uuid = v["id"].as_str().expect("id").parse().expect("uuid");
                        conversation = Some(id);
                        Outcome::Conversation {
                            user: n,
                            id,
                            title: label,
                        }
                    }
                    Ok((status, body)) => Outcome::Error { status, body },
                    Err(e) => Outcome::Hang(e),
                }
            }
        };
        let record = Record {
            at: Instant::now(),
            outcome,
        };
        let failed = !record.acknowledged();
        log.lock().push(record);
        if failed {
            // The database is away: do not spin on instant refusals.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Acknowledged writes after `since`.
fn acks_since(log: &Mutex<Vec<Record>>, since: Instant) -> usize {
    log.lock()
        .iter()
        .filter(|r| r.acknowledged() && r.at > since)
        .count()
}

/// How long after `since` the first write was acknowledged (waits for it).
async fn recovery_after(log: &Mutex<Vec<Record>>, since: Instant, what: &str) -> Duration {
    eventually(what, || async {
        log.lock()
            .iter()
            .filter(|r| r.acknowledged() && r.at > since)
            .map(|r| r.at - since)
            .min()
    })
    .await
}

/// Runs the scenario and checks the database; panics only when the scenario cannot proceed
/// (no write ever acknowledged, the server does not start): what it finds is in the [`Figures`].
pub async fn run(settings: Settings) -> Figures {
    let pg = PrivatePg::start().await;
    let pool_timeout_ms = settings.pool_timeout_ms;
    let s = Stack::builder()
        .database(TestDb::on_server(&pg.admin_url()).await)
        .origin(move |c| {
            c.database.pool_max_size = 8;
            c.database.pool_timeout_ms = pool_timeout_ms;
            c.database.health_timeout_ms = 500;
        })
        .start()
        .await;
    let o = s.origin();
    let mut users = Vec::new();
    for n in 0..settings.writers {
        users.push(o.user(&format!("writer{n}")).await);
    }
    let limit = settings.request_limit();
    let per_phase = settings.writes_per_phase;
    let done = AtomicBool::new(false);
    let log = Mutex::new(Vec::<Record>::new());
    let started = Instant::now();
    let health = |o: &TestOrigin| {
        let url = o.ops_url("/health");
        let http = o.http.clone();
        async move { http.get(url).send().await.expect("GET /health") }
    };

    let faults = async {
        eventually_true("writes before the restart", || async {
            acks_since(&log, started) >= per_phase
        })
        .await;
        pg.restart().await;
        let restarted = Instant::now();
        let after_restart = recovery_after(&log, restarted, "a write after the restart").await;
        eventually_true("writes after the restart", || async {
            acks_since(&log, restarted) >= per_phase
        })
        .await;

        pg.stop().await;
        let stopped = Instant::now();
        let health_down = eventually("/health reports the database down", || async {
            let r = health(o).await;
            match r.status().as_u16() {
                503 => Some(r.json::<Value>().await.expect("health JSON")),
                _ => None,
            }
        })
        .await;
        // Down for the whole outage, however quickly the errors come.
        tokio::time::sleep_until((stopped + settings.outage).into()).await;
        pg.start_again().await;
        let back = Instant::now();
        let after_start = recovery_after(&log, back, "a write after the outage").await;
        eventually_true("writes after the outage", || async {
            acks_since(&log, back) >= per_phase
        })
        .await;
        eventually_true("/health recovers", || async {
            health(o).await.status() == 200
        })
        .await;
        done.store(true, Ordering::Relaxed);
        (after_restart, after_start, stopped, back, health_down)
    };
    let writers = futures::future::join_all(
        users
            .iter()
            .enumerate()
            .map(|(n, u)| writer(o, n, u, limit, &done, &log)),
    );
    let ((after_restart, after_start, stopped, back, health_during_outage), _) =
        tokio::join!(faults, writers);
    let log = log.into_inner();

    let mut errors = BTreeMap::<u16, usize>::new();
    let mut unclean_errors = Vec::new();
    let mut hangs = Vec::new();
    let mut conversations = Vec::new();
    let mut messages = Vec::new();
    for r in &log {
        match &r.outcome {
            Outcome::Conversation { user, id, title } => {
                conversations.push((*user, *id, title.clone()))
            }
            Outcome::Message {
                conversation,
                id,
                content,
            } => messages.push((*conversation, *id, content.clone())),
            Outcome::Error { status, body } => {
                *errors.entry(*status).or_default() += 1;
                if *status != 503 || body["error"] != "service_unavailable" {
                    unclean_errors.push(format!("{status} {body}"));
                }
            }
            Outcome::Hang(e) => hangs.push(e.clone()),
        }
    }
    let errors_during_outage = log
        .iter()
        .filter(|r| r.at > stopped && r.at <= back && !r.acknowledged())
        .count();

    // Every acknowledged write is in the database, as acknowledged.
    let db = o.db.client().await;
    let mut lost = Vec::new();
    for (user, id, title) in &conversations {
        let row = db
            .query_opt(
                "SELECT u.username, c.title FROM conversations c JOIN users u ON u.id = c.user_id \
                 WHERE c.id = $1",
                &[id],
            )
            .await
            .expect("conversation query");
        let as_acknowledged = row.is_some_and(|row| {
            row.get::<_, String>(0) == format!("writer{user}")
                && row.get::<_, Option<String>>(1).as_deref() == Some(&title[..])
        });
        if !as_acknowledged {
            lost.push(format!("conversation {id} ({title})"));
        }
    }
    for (conversation, id, content) in &messages {
        let row = db
            .query_opt(
                "SELECT conversation_id, content FROM messages WHERE id = $1",
                &[id],
            )
            .await
            .expect("message query");
        let as_acknowledged = row.is_some_and(|row| {
            row.get::<_, Uuid>(0) == *conversation && &row.get::<_, String>(1) == content
        });
        if !as_acknowledged {
            lost.push(format!("message {id} ({content})"));
        }
    }
    // Each write is one statement that inserts and bumps the user's counters, so the counters
    // match the rows exactly, and each conversation's sort key is its newest message's time.
    let half_written: i64 = db
        .query_one(
            "SELECT
               (SELECT count(*) FROM messages m
                  WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = m.conversation_id))
             + (SELECT count(*) FROM users u
                  WHERE u.conversation_count
                        <> (SELECT count(*) FROM conversations c WHERE c.user_id = u.id)
                     OR u.cache_version
                        <> (SELECT count(*) FROM conversations c WHERE c.user_id = u.id)
                         + (SELECT count(*) FROM messages m JOIN conversations c
                              ON c.id = m.conversation_id WHERE c.user_id = u.id))
             + (SELECT count(*) FROM conversations c
                  WHERE EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id)
                    AND c.last_message_at
                        <> (SELECT max(m.created_at) FROM messages m
                              WHERE m.conversation_id = c.id))",
            &[],
        )
        .await
        .expect("consistency query")
        .get(0);
    let stored: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM messages)",
            &[],
        )
        .await
        .expect("row count")
        .get(0);
    let acknowledged = conversations.len() + messages.len();
    // The origin serves writes again without a restart of its own.
    let final_write_status = post(
        o,
        &users[0],
        "/api/v1/conversations",
        conversation_body("after"),
        limit,
    )
    .await
    .map(|(status, _)| status)
    .unwrap_or(0);

    Figures {
        writers: settings.writers,
        outage_ms: settings.outage.as_millis() as u64,
        acknowledged,
        acknowledged_conversations: conversations.len(),
        acknowledged_messages: messages.len(),
        present: acknowledged - lost.len(),
        lost,
        half_written,
        stored_beyond_acknowledged: stored - acknowledged as i64,
        errors,
        errors_during_outage,
        unclean_errors,
        hangs,
        health_during_outage,
        recovery_after_restart_ms: after_restart.as_secs_f64() * 1000.0,
        recovery_after_start_ms: after_start.as_secs_f64() * 1000.0,
        final_write_status,
    }
}
