//! Gemini `generateContent` / `streamGenerateContent?alt=sse`.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

use super::{data_frame, header_str, tokens};

/// The key from `x-goog-api-key`, or from the legacy `?key=` query parameter.
pub fn api_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    header_str(headers, "x-goog-api-key")
        .map(str::to_owned)
        .or_else(|| {
            query?
                .split('&')
                .find_map(|pair| pair.strip_prefix("key=").map(str::to_owned))
        })
        .filter(|k| !k.is_empty())
}

pub fn last_user_text(body: &Value) -> String {
    body["contents"]
        .as_array()
        .and_then(|contents| contents.iter().rev().find(|c| c["role"] == "user"))
        .and_then(|c| c["parts"].as_array())
        .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default()
}

fn candidate(model: &str, text: &str, finished: bool) -> Value {
    let mut candidate =
        json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    if finished {
        candidate["finishReason"] = json!("STOP");
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": tokens(text), "totalTokenCount": 10 + tokens(text)},
        "modelVersion": model
    })
}

pub fn full_body(model: &str, text: &str) -> Value {
    candidate(model, text, true)
}

pub fn content_frame(model: &str, piece: &str, last: bool) -> Bytes {
    data_frame(&candidate(model, piece, last))
}

pub fn stream_error_frame() -> Bytes {
    data_frame(&error_body(500, "An internal error has occurred."))
}

pub fn error_body(status: u16, message: &str) -> Value {
    let (message, state) = match status {
        401 => (
            format!("API key not valid. Please pass a valid API key. {message}"),
            "UNAUTHENTICATED",
        ),
        429 => (message.to_owned(), "RESOURCE_EXHAUSTED"),
        400 => (message.to_owned(), "INVALID_ARGUMENT"),
        _ => (message.to_owned(), "INTERNAL"),
    };
    json!({"error": {"code": status, "message": message, "status": state}})
}
