//! The fake over real HTTP: routing, auth checks, framing, controls and the recorder.

use clap::Parser;
use llmselect_fake_llm::cli::Args;
use llmselect_fake_llm::{answer_text, spawn, Failure, FakeConfig, FakeLlm};
use serde_json::{json, Value};

async fn fake() -> FakeLlm {
    spawn(FakeConfig::instant()).await.unwrap()
}

async fn post(url: String, headers: &[(&str, &str)], body: Value) -> (u16, String) {
    let mut req = reqwest::Client::new().post(url).json(&body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// `POST <openai base>/chat/completions` with `Authorization: <authorization>` and
/// [`openai_body`].
async fn post_openai(
    fake: &FakeLlm,
    authorization: &str,
    model: &str,
    stream: bool,
) -> (u16, String) {
    post(
        chat_url(fake),
        &[("authorization", authorization)],
        openai_body(model, stream),
    )
    .await
}

fn chat_url(fake: &FakeLlm) -> String {
    format!("{}/chat/completions", fake.openai_base_url())
}

fn openai_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "earlier"},
        {"role": "user", "content": "Hello"}
    ]})
}

#[tokio::test]
async fn openai_non_streaming_answer_and_recorder() {
    let fake = fake().await;
    let (status, body) = post_openai(&fake, "Bearer k1", "gpt-4o", false).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        answer_text("gpt-4o", "Hello")
    );
    assert_eq!(body["model"], "gpt-4o");

    assert_eq!(fake.requests("/v1/chat/completions"), 1);
    assert_eq!(fake.requests("/v1/messages"), 0);
    let req = fake.last_request("/v1/chat/completions").unwrap();
    assert_eq!(req.header("Authorization"), Some("Bearer k1"));
    assert_eq!(req.json(), openai_body("gpt-4o", false));
    fake.reset();
    assert_eq!(fake.total_requests(), 0);
    assert!(fake.last_request("/v1/chat/completions").is_none());
}

#[tokio::test]
async fn openai_stream_framing_ends_with_done() {
    let fake = fake().await;
    let (status, body) = post_openai(&fake, "Bearer k1", "gpt-4o", true).await;
    assert_eq!(status, 200);
    let frames: Vec<&str> = body.split_terminator("\n\n").collect();
    // Role frame, 8 content frames, finish frame, [DONE].
    assert_eq!(frames.len(), 11, "{body}");
    assert_eq!(*frames.last().unwrap(), "data: [DONE]");
    let text: String = frames[1..9]
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, answer_text("gpt-4o", "Hello"));
}

#[tokio::test]
async fn anthropic_needs_key_and_version_and_streams_events() {
    let fake = fake().await;
    let url = format!("{}/v1/messages", fake.anthropic_base_url());
    let body = json!({"model": "claude", "max_tokens": 10, "stream": true,
                      "messages": [{"role": "user", "content": "Hi"}]});
    let (status, text) = post(url.clone(), &[], body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["type"],
        "authentication_error"
    );
    let (status, _) = post(url.clone(), &[("x-api-key", "k")], body.clone()).await;
    assert_eq!(status, 400, "anthropic-version is required");

    let (status, text) = post(
        url,
        &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")],
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.starts_with("event: message_start\ndata: "), "{text}");
    assert_eq!(text.matches("event: content_block_delta\n").count(), 8);
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[tokio::test]
async fn gemini_routes_keys_and_stream() {
    let fake = fake().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "Yo"}]}]});
    let base = fake.gemini_base_url();
    let (status, text) = post(
        format!("{base}/models/gemini-2.5-flash:generateContent"),
        &[("x-goog-api-key", "g")],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        answer_text("gemini-2.5-flash", "Yo")
    );

    // The legacy ?key= form is accepted too.
    let (status, text) = post(
        format!("{base}/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=g"),
        &[],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(frames.len(), 8);
    assert!(frames[7].contains("\"finishReason\":\"STOP\""));
    assert!(!frames[6].contains("finishReason"));

    let (status, _) = post(
        format!("{base}/models/gemini-2.5-flash:streamGenerateContent"),
        &[("x-goog-api-key", "g")],
        body.clone(),
    )
    .await;
    assert_eq!(status, 404, "only the SSE form is served");
    let (status, _) = post(
        format!("{base}/models/gemini-2.5-flash:generateContent"),
        &[],
        body,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        fake.requests("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
        2
    );
}

#[tokio::test]
async fn model_markers_inject_failures_per_request() {
    let fake = fake().await;
    let url = chat_url(&fake);
    let auth = [("authorization", "Bearer sk-echoed-key-123")];
    for code in [401u16, 429, 500] {
        let (status, body) = post(
            url.clone(),
            &auth,
            openai_body(&format!("fail-{code}"), false),
        )
        .await;
        assert_eq!(status, code);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["message"].is_string());
        if code == 401 {
            assert!(
                body.contains("sk-echoed-key-123"),
                "the fake echoes the key: {body}"
            );
        }
    }
    let (_, body) = post(url.clone(), &auth, openai_body("gpt-4o-malformed", true)).await;
    assert!(
        body.ends_with("data: {\"choices\":[{\"delta\":{\"content\":\n\n"),
        "{body}"
    );
    assert!(!body.contains("[DONE]"));
    // A plain model on the same fake is unaffected.
    let (status, _) = post(url, &auth, openai_body("gpt-4o", false)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn drop_mid_stream_aborts_the_body() {
    let fake = fake().await;
    let resp = reqwest::Client::new()
        .post(chat_url(&fake))
        .bearer_auth("k")
        .json(&openai_body("drop-mid-stream", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.is_err(), "the body must end in an error");
}

#[tokio::test]
async fn model_lists() {
    let fake = fake().await;
    let client = reqwest::Client::new();
    let v: Value = client
        .get(format!("{}/models", fake.openai_base_url()))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o"));
    let v: Value = client
        .get(format!("{}/models", fake.gemini_base_url()))
        .header("x-goog-api-key", "g")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["models"][0]["name"], "models/gemini-2.5-pro");
    let status = client
        .get(format!("{}/models", fake.openai_base_url()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    assert_eq!(fake.requests("/v1/models"), 2);
    assert_eq!(fake.requests("/v1beta/models"), 1);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let fake = fake().await;
    let status = reqwest::get(format!("{}/nope", fake.base_url()))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    assert_eq!(fake.requests("/nope"), 1);
}

#[tokio::test]
async fn startup_failure_applies_to_everything() {
    let fake = spawn(FakeConfig {
        failure: Some(Failure::Status(429)),
        ..FakeConfig::instant()
    })
    .await
    .unwrap();
    let (status, _) = post_openai(&fake, "Bearer k", "gpt-4o", false).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let fake = fake().await;
    let addr = fake.addr();
    drop(fake);
    let mut refused = false;
    for _ in 0..1000 {
        tokio::task::yield_now().await;
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the listener is still accepting after drop");
}

#[test]
fn cli_flags_map_to_the_config() {
    let args = Args::try_parse_from([
        "llmselect-fake-llm",
        "--listen",
        "127.0.0.1:9999",
        "--chunk-delay-ms",
        "7",
        "--latency-ms",
        "0",
        "--fail",
        "drop-mid-stream",
    ])
    .unwrap();
    let cfg = args.into_config();
    assert_eq!(cfg.listen.port(), 9999);
    assert_eq!(cfg.chunk_delay.as_millis(), 7);
    assert_eq!(cfg.latency.as_millis(), 0);
    assert_eq!(cfg.chunks, 8);
    assert_eq!(cfg.failure, Some(Failure::DropMidStream));
    assert!(Args::try_parse_from(["x", "--fail", "teapot"]).is_err());
}
