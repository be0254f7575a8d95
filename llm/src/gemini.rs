//! Gemini `generateContent` and `streamGenerateContent?alt=sse`.

use serde_json::{json, Value};

use crate::sse::SseEvent;
use crate::stream::{parse_frame, Decoded, FrameError};
use crate::ChatMessage;

/// `{contents: [{role: "user" | "model", parts: [{text}]}]}`: system messages dropped,
/// `assistant` → `model`, every other role → `user`. No token limit is sent.
pub fn request_body(messages: &[ChatMessage]) -> Value {
    let contents: Vec<Value> = messages
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| {
            let role = if m.role == "assistant" {
                "model"
            } else {
                "user"
            };
            json!({"role": role, "parts": [{"text": m.content}]})
        })
        .collect();
    json!({"contents": contents})
}

/// `candidates[0].content.parts[0].text`.
pub fn extract_text(body: &Value) -> Option<String> {
    body.get("candidates")?
        .get(0)?
        .get("content")?
        .get("parts")?
        .get(0)?
        .get("text")?
        .as_str()
        .map(str::to_owned)
}

/// Every `data:` frame is a partial response; its text parts are the delta. No end marker.
pub fn decode_event(event: &SseEvent) -> Result<Decoded, FrameError> {
    let value = parse_frame(&event.data)?;
    if let Some(error) = value.get("error") {
        return Err(FrameError::upstream(error));
    }
    let text: String = value["candidates"][0]["content"]["parts"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect())
        .unwrap_or_default();
    Ok(Decoded::delta(text))
}
