//! OpenAI chat completions, also used for Mistral and gateway mode (OpenAI-compatible).

use serde_json::{json, Value};

use crate::sse::SseEvent;
use crate::stream::{parse_frame, Decoded, FrameError};
use crate::ChatMessage;

/// Ids of OpenAI reasoning-era models that take `max_completion_tokens` instead of `max_tokens`.
const MAX_COMPLETION_TOKENS_PREFIXES: &[&str] = &["gpt-5", "o1", "o3", "o4"];

/// `max_completion_tokens` for ids starting with `gpt-5`, `o1`, `o3` or `o4`; `max_tokens` otherwise.
pub fn max_tokens_field(model: &str) -> &'static str {
    if MAX_COMPLETION_TOKENS_PREFIXES
        .iter()
        .any(|p| model.starts_with(p))
    {
        "max_completion_tokens"
    } else {
        "max_tokens"
    }
}

/// `{model, messages, max_tokens | max_completion_tokens, stream?: true}`.
/// `use_completion_tokens_rule` is false for Mistral, which always takes `max_tokens`.
pub fn request_body(
    model: &str,
    messages: &[ChatMessage],
    max_tokens: u32,
    stream: bool,
    use_completion_tokens_rule: bool,
) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = json!({"model": model, "messages": messages});
    let field = if use_completion_tokens_rule {
        max_tokens_field(model)
    } else {
        "max_tokens"
    };
    body[field] = json!(max_tokens);
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// `choices[0].message.content`; a `null` content (e.g. a refusal) is an empty answer.
pub fn extract_text(body: &Value) -> Option<String> {
    let message = body.get("choices")?.get(0)?.get("message")?;
    match message.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// `data: [DONE]` ends; `data: {json}` carries `choices[0].delta.content`; an `error` object fails.
pub fn decode_event(event: &SseEvent) -> Result<Decoded, FrameError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(Decoded::Done);
    }
    let value = parse_frame(data)?;
    if let Some(error) = value.get("error") {
        return Err(FrameError::upstream(error));
    }
    let delta = value
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("delta"))
        .and_then(|d| d.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(Decoded::delta(delta))
}
