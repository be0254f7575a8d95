//! Anthropic Messages API.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

use super::{header_str, tokens};

const ID: &str = "msg_fake";

pub fn api_key(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "x-api-key")
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

pub fn full_body(model: &str, text: &str) -> Value {
    json!({
        "id": ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": tokens(text)}
    })
}

/// `event: <name>\ndata: <json>\n\n`
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

pub fn prologue(model: &str) -> Vec<Bytes> {
    vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": ID, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}
            }}),
        ),
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", &json!({"type": "ping"})),
    ]
}

pub fn content_frame(piece: &str) -> Bytes {
    event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
    )
}

pub fn epilogue() -> Vec<Bytes> {
    vec![
        event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ),
        event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
        ),
        event("message_stop", &json!({"type": "message_stop"})),
    ]
}

pub fn stream_error_frame() -> Bytes {
    event(
        "error",
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
}

pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}
