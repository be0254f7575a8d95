//! OpenAI-compatible chat completions (also Mistral and gateways).

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

use super::{data_frame, header_str, tokens};

/// Fixed so answers are byte-for-byte deterministic.
const CREATED: u64 = 1_700_000_000;
const ID: &str = "chatcmpl-fake";

pub fn api_key(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "authorization")?
        .strip_prefix("Bearer ")
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

pub fn full_body(model: &str, text: &str) -> Value {
    json!({
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": tokens(text), "total_tokens": 10 + tokens(text)}
    })
}

fn chunk(model: &str, delta: Value, finish_reason: Value) -> Bytes {
    data_frame(&json!({
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    }))
}

pub fn prologue(model: &str) -> Vec<Bytes> {
    vec![chunk(
        model,
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )]
}

pub fn content_frame(model: &str, piece: &str) -> Bytes {
    chunk(model, json!({"content": piece}), Value::Null)
}

pub fn epilogue(model: &str) -> Vec<Bytes> {
    vec![
        chunk(model, json!({}), json!("stop")),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ]
}

pub fn stream_error_frame() -> Bytes {
    data_frame(
        &json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}),
    )
}

pub fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("requests", "rate_limit_exceeded"),
        _ => ("server_error", "server_error"),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
