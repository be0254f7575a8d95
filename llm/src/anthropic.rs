//! Anthropic Messages API.

use serde_json::{json, Value};

use crate::sse::SseEvent;
use crate::stream::{parse_frame, Decoded, FrameError};
use crate::ChatMessage;

/// The API version header value the adapter sends.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `{model, max_tokens, messages: [non-system], system?: <first system content>, stream?: true}`.
pub fn request_body(model: &str, messages: &[ChatMessage], max_tokens: u32, stream: bool) -> Value {
    let system = messages.iter().find(|m| m.role == "system");
    let rest: Vec<Value> = messages
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = json!({"model": model, "max_tokens": max_tokens, "messages": rest});
    if let Some(system) = system {
        body["system"] = json!(system.content);
    }
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// `content[0].text`.
pub fn extract_text(body: &Value) -> Option<String> {
    body.get("content")?
        .get(0)?
        .get("text")?
        .as_str()
        .map(str::to_owned)
}

/// `content_block_delta` → `delta.text`; `error` fails; `message_stop` ends; the rest is skipped.
pub fn decode_event(event: &SseEvent) -> Result<Decoded, FrameError> {
    let value = parse_frame(&event.data)?;
    match value["type"].as_str() {
        Some("content_block_delta") => Ok(Decoded::delta(
            value["delta"]["text"].as_str().unwrap_or(""),
        )),
        Some("error") => Err(FrameError::upstream(&value["error"])),
        Some("message_stop") => Ok(Decoded::Done),
        _ => Ok(Decoded::Skip),
    }
}
