//! Issue 16, item 7: PostgreSQL restarted and stopped under write load, then every acknowledged
//! write checked in the database. The origin runs on a private PostgreSQL server
//! ([`PrivatePg`]) so the shared server of the other tests is never touched; concurrent writers
//! create conversations and post messages through the API while the server is restarted
//! (`pg_ctl restart -m fast`) and later stopped for a couple of seconds and started again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use llmselect_e2e::db::TestDb;
use llmselect_e2e::origin::{TestOrigin, TestUser};
use llmselect_e2e::private_pg::PrivatePg;
use llmselect_e2e::stack::Stack;
use llmselect_e2e::wait::{eventually, eventually_true};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::get_ops;

/// Concurrent writers, one user each.
const WRITERS: usize = 4;
/// How long a request may wait for a pooled connection before its 503.
const POOL_TIMEOUT_MS: u64 = 1_000;
/// Any answer slower than this is a hang (the pool timeout plus a generous margin).
const REQUEST_LIMIT: Duration = Duration::from_secs(5);
/// How long the server stays down in the stop/start phase.
const OUTAGE: Duration = Duration::from_secs(2);

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
    /// A non-2xx answer: its status and JSON body.
    Error { status: u16, body: Value },
    /// No answer within [`REQUEST_LIMIT`], or a broken connection.
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
) -> Result<(u16, Value), String> {
    let r = o
        .request_as(user, Method::POST, path)
        .json(&body)
        .timeout(REQUEST_LIMIT)
        .send()
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("POST {path}: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// Writes until `done`: a conversation, then three messages into it, and again. Every outcome goes
/// to `log`.
async fn writer(
    o: &TestOrigin,
    n: usize,
    user: &TestUser,
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
                match post(o, user, &path, json!({"role": "user", "content": label})).await {
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
                let body = json!({"provider": "openai", "model": "gpt-4o", "title": label});
                match post(o, user, "/api/v1/conversations", body).await {
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
        let failed = !matches!(
            outcome,
            Outcome::Conversation { .. } | Outcome::Message { .. }
        );
        log.lock().push(Record {
            at: Instant::now(),
            outcome,
        });
        if failed {
            // The database is away: do not spin on instant refusals.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Acknowledged writes so far, and those acknowledged after `since`.
fn acks(log: &Mutex<Vec<Record>>, since: Instant) -> (usize, usize) {
    let log = log.lock();
    let all = log.iter().filter(|r| r.acknowledged()).count();
    let after = log
        .iter()
        .filter(|r| r.acknowledged() && r.at > since)
        .count();
    (all, after)
}

/// The first acknowledged write after `since`, how long after it.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_postgres_restart_and_outage() {
    let pg = PrivatePg::start().await;
    let s = Stack::builder()
        .database(TestDb::on_server(&pg.admin_url()).await)
        .origin(|c| {
            c.database.pool_max_size = 8;
            c.database.pool_timeout_ms = POOL_TIMEOUT_MS;
            c.database.health_timeout_ms = 500;
        })
        .start()
        .await;
    let o = s.origin();
    let mut users = Vec::new();
    for n in 0..WRITERS {
        users.push(o.user(&format!("writer{n}")).await);
    }
    let done = AtomicBool::new(false);
    let log = Mutex::new(Vec::<Record>::new());
    let started = Instant::now();

    let faults = async {
        eventually_true("writes before the restart", || async {
            acks(&log, started).0 >= 40
        })
        .await;
        pg.restart().await;
        let restarted = Instant::now();
        let after_restart = recovery_after(&log, restarted, "a write after the restart").await;
        eventually_true("writes after the restart", || async {
            acks(&log, restarted).1 >= 40
        })
        .await;

        pg.stop().await;
        let stopped = Instant::now();
        // While it is down /health says so, and every writer gets its error answers.
        let health = eventually("/health reports the database down", || async {
            let r = get_ops(o, "/health").await;
            match r.status().as_u16() {
                503 => Some(r.json::<Value>().await.expect("health JSON")),
                _ => None,
            }
        })
        .await;
        eventually_true("writes fail while the server is down", || async {
            let log = log.lock();
            let failed = log
                .iter()
                .filter(|r| r.at > stopped && !r.acknowledged())
                .count();
            failed >= WRITERS * 2 || stopped.elapsed() >= OUTAGE
        })
        .await;
        tokio::time::sleep_until((stopped + OUTAGE).into()).await;
        pg.start_again().await;
        let back = Instant::now();
        let after_outage = recovery_after(&log, back, "a write after the outage").await;
        eventually_true("writes after the outage", || async {
            acks(&log, back).1 >= 40
        })
        .await;
        eventually_true("/health recovers", || async {
            get_ops(o, "/health").await.status() == 200
        })
        .await;
        done.store(true, Ordering::Relaxed);
        (after_restart, after_outage, stopped, back, health)
    };
    let writers = futures::future::join_all(
        users
            .iter()
            .enumerate()
            .map(|(n, u)| writer(o, n, u, &done, &log)),
    );
    let ((after_restart, after_outage, stopped, back, health), _) = tokio::join!(faults, writers);

    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["database"]["connected"], false, "{health}");

    let log = log.into_inner();
    let hangs: Vec<&String> = log
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Hang(e) => Some(e),
            _ => None,
        })
        .collect();
    assert!(
        hangs.is_empty(),
        "requests without an answer: {hangs:?}\n{}",
        pg.server_log()
    );
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for r in &log {
        if let Outcome::Error { status, body } = &r.outcome {
            assert_eq!(*status, 503, "a failed write is a 503: {body}");
            assert_eq!(body["error"], "service_unavailable", "{body}");
            *statuses.entry(*status).or_default() += 1;
        }
    }
    let during_outage = log
        .iter()
        .filter(|r| r.at > stopped && r.at <= back && !r.acknowledged())
        .count();
    assert!(
        during_outage > 0,
        "no write failed while the server was down"
    );

    // Every acknowledged write is in the database, as acknowledged.
    let db = o.db.client().await;
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
            _ => {}
        }
    }
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
        match row {
            Some(row) => {
                assert_eq!(row.get::<_, String>(0), format!("writer{user}"));
                assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(&title[..]));
            }
            None => lost.push(format!("conversation {id} ({title})")),
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
        match row {
            Some(row) => {
                assert_eq!(row.get::<_, Uuid>(0), *conversation);
                assert_eq!(&row.get::<_, String>(1), content);
            }
            None => lost.push(format!("message {id} ({content})")),
        }
    }
    assert!(lost.is_empty(), "acknowledged but missing: {lost:?}");

    // No half-written rows: each write is one statement that inserts and bumps the user's
    // counters, so the counters match the rows exactly, and each conversation's sort key is its
    // newest message's time.
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
    assert_eq!(half_written, 0, "half-written rows");

    // Answered with an error but committed all the same (the commit raced the disconnect): allowed,
    // reported.
    let stored: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM messages)",
            &[],
        )
        .await
        .expect("row count")
        .get(0);
    let acknowledged = conversations.len() + messages.len();
    println!(
        "postgres faults: {acknowledged} writes acknowledged ({} conversations, {} messages), \
         all present, 0 lost, 0 half-written; {} stored beyond the acknowledged; errors {statuses:?} \
         ({during_outage} during the {OUTAGE:?} outage); first write acknowledged {after_restart:?} \
         after the restart and {after_outage:?} after the server came back",
        conversations.len(),
        messages.len(),
        stored - acknowledged as i64,
    );
    // The origin serves writes again without a restart of its own.
    let last = post(
        o,
        &users[0],
        "/api/v1/conversations",
        json!({"provider": "openai", "model": "gpt-4o", "title": "after"}),
    )
    .await
    .expect("answer");
    assert_eq!(last.0, 201, "{}", last.1);
}
