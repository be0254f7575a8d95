//! One chat memory: `/chat` and `/chat/stream` send the same stored history to the provider,
//! bounded by `providers.chat_history_max_chars` (oldest dropped first, the newest message always
//! sent), checked by what the fake provider received.

use serde_json::{json, Value};

use super::*;

/// The budget of these tests, in characters.
const BUDGET: u32 = 70;

/// A message content of exactly 20 characters starting with `tag`.
fn c20(tag: &str) -> String {
    format!("{tag}{}", ".".repeat(20 - tag.len()))
}

/// `(role, content)` of the messages the fake received in its last chat completion.
fn sent(s: &Stack) -> Vec<(String, String)> {
    let body = s
        .fake()
        .last_request("/v1/chat/completions")
        .expect("the fake was called")
        .json();
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

/// A conversation of `user` holding six stored messages of 20 characters (120 in all, over the
/// budget): u1 a1 u2 a2 u3 a3.
async fn long_conversation(s: &Stack) -> String {
    let (origin, user) = (s.origin(), s.user());
    let cid = origin.create_conversation(user, Some("long")).await;
    for n in 1..=3 {
        origin
            .add_message(user, &cid, "user", &c20(&format!("u{n}")))
            .await;
        origin
            .add_message(user, &cid, "assistant", &c20(&format!("a{n}")))
            .await;
    }
    cid
}

/// Sends `content` in conversation `cid` through `path` and waits for the whole answer.
async fn send_turn(s: &Stack, path: &str, cid: &str, content: &str) {
    let r = post(s, path, &chat_body_in(cid, "openai", "gpt-4o", content)).await;
    assert_eq!(r.status(), 200, "{path}");
    if path.ends_with("/stream") {
        let events = events_of(r).await;
        assert_eq!(events.last().unwrap()["done"], true, "{events:?}");
    } else {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["conversationId"], cid);
    }
}

#[tokio::test]
async fn both_chat_endpoints_send_the_stored_history_within_the_budget() {
    let s = llm_stack_with(FakeConfig::instant(), |cfg| {
        cfg.providers.chat_history_max_chars = BUDGET;
    })
    .start()
    .await;
    for path in ["/api/v1/chat", "/api/v1/chat/stream"] {
        let cid = long_conversation(&s).await;
        // 70 characters: the new message (20), then a3 and u3 (60); a2 would make 80.
        let u4 = c20("u4");
        send_turn(&s, path, &cid, &u4).await;
        let (u3, a3) = (c20("u3"), c20("a3"));
        assert_eq!(
            sent(&s),
            pairs(&[("user", &u3), ("assistant", &a3), ("user", &u4)]),
            "{path}: the oldest turns are dropped"
        );

        // A new message alone over the budget is still sent, alone.
        let long = "L".repeat(BUDGET as usize + 30);
        send_turn(&s, path, &cid, &long).await;
        assert_eq!(
            sent(&s),
            pairs(&[("user", &long)]),
            "{path}: the newest message always"
        );
    }
}

#[tokio::test]
async fn a_conversation_within_the_budget_is_sent_whole_by_both_endpoints() {
    let s = setup().await;
    for path in ["/api/v1/chat", "/api/v1/chat/stream"] {
        let cid = long_conversation(&s).await;
        send_turn(&s, path, &cid, "next").await;
        let mut expected: Vec<(String, String)> = (1..=3)
            .flat_map(|n| {
                [
                    ("user".to_string(), c20(&format!("u{n}"))),
                    ("assistant".to_string(), c20(&format!("a{n}"))),
                ]
            })
            .collect();
        expected.push(("user".into(), "next".into()));
        assert_eq!(sent(&s), expected, "{path}");
    }
}

#[tokio::test]
async fn without_a_conversation_the_request_messages_are_bounded_too() {
    let s = llm_stack_with(FakeConfig::instant(), |cfg| {
        cfg.providers.chat_history_max_chars = BUDGET;
    })
    .start()
    .await;
    let (u1, a1, u2, a2, u3) = (c20("u1"), c20("a1"), c20("u2"), c20("a2"), c20("u3"));
    let body = json!({"provider": "openai", "model": "gpt-4o", "messages": [
        {"role": "user", "content": u1}, {"role": "assistant", "content": a1},
        {"role": "user", "content": u2}, {"role": "assistant", "content": a2},
        {"role": "user", "content": u3}]});
    for path in ["/api/v1/chat", "/api/v1/chat/stream"] {
        let r = post(&s, path, &body).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        // u3, a2, u2 fit (60); a1 would make 80.
        assert_eq!(
            sent(&s),
            pairs(&[("user", &u2), ("assistant", &a2), ("user", &u3)]),
            "{path}"
        );
    }
}
