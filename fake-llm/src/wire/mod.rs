//! The three wire formats the fake speaks. OpenAI and Mistral share the OpenAI one.

mod anthropic;
mod gemini;
mod openai;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

/// One provider wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Wire {
    /// The API key the request carries, if any.
    pub fn api_key(self, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
        match self {
            Wire::OpenAi => openai::api_key(headers),
            Wire::Anthropic => anthropic::api_key(headers),
            Wire::Gemini => gemini::api_key(headers, query),
        }
    }

    /// The text of the last user message of a request body ("" if there is none).
    pub fn last_user_text(self, body: &Value) -> String {
        match self {
            Wire::OpenAi | Wire::Anthropic => last_user_message_text(body),
            Wire::Gemini => gemini::last_user_text(body),
        }
    }

    /// A complete, non-streamed answer.
    pub fn full_body(self, model: &str, text: &str) -> Value {
        match self {
            Wire::OpenAi => openai::full_body(model, text),
            Wire::Anthropic => anthropic::full_body(model, text),
            Wire::Gemini => gemini::full_body(model, text),
        }
    }

    /// Frames sent before the first content chunk.
    pub fn prologue(self, model: &str) -> Vec<Bytes> {
        match self {
            Wire::OpenAi => openai::prologue(model),
            Wire::Anthropic => anthropic::prologue(model),
            Wire::Gemini => Vec::new(),
        }
    }

    /// The frame carrying one content chunk; `last` marks the final chunk.
    pub fn content_frame(self, model: &str, piece: &str, last: bool) -> Bytes {
        match self {
            Wire::OpenAi => openai::content_frame(model, piece),
            Wire::Anthropic => anthropic::content_frame(piece),
            Wire::Gemini => gemini::content_frame(model, piece, last),
        }
    }

    /// Frames sent after the last content chunk.
    pub fn epilogue(self, model: &str) -> Vec<Bytes> {
        match self {
            Wire::OpenAi => openai::epilogue(model),
            Wire::Anthropic => anthropic::epilogue(),
            Wire::Gemini => Vec::new(),
        }
    }

    /// A frame whose JSON payload is cut off.
    pub fn malformed_frame(self) -> Bytes {
        match self {
            Wire::Anthropic => Bytes::from_static(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"te\n\n",
            ),
            Wire::OpenAi | Wire::Gemini => {
                Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\n\n")
            }
        }
    }

    /// The provider's in-stream error event.
    pub fn stream_error_frame(self) -> Bytes {
        match self {
            Wire::OpenAi => openai::stream_error_frame(),
            Wire::Anthropic => anthropic::stream_error_frame(),
            Wire::Gemini => gemini::stream_error_frame(),
        }
    }

    /// The provider-shaped error body for `status`. The 401 body echoes the key it got in full,
    /// worse than the real providers (which mask it), so clients can prove they redact it.
    pub fn error_body(self, status: u16, api_key: &str, model: &str) -> Value {
        let message = match status {
            401 => format!("Incorrect API key provided: {api_key}."),
            429 => format!("Rate limit reached for {model}. Please try again later."),
            500..=599 => "The server had an error while processing your request.".to_owned(),
            _ => format!("Request failed with status {status}."),
        };
        match self {
            Wire::OpenAi => openai::error_body(status, &message),
            Wire::Anthropic => anthropic::error_body(status, &message),
            Wire::Gemini => gemini::error_body(status, &message),
        }
    }
}

/// OpenAI and Anthropic: the last `messages[]` entry with role `user`; its `content` is a string
/// or an array of `{type: "text", text}` parts/blocks.
fn last_user_message_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|msgs| msgs.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        })
        .unwrap_or_default()
}

/// One SSE frame `data: <json>\n\n`.
pub(crate) fn data_frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// A header's value as a string, if present and visible ASCII.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Rough token count for `usage` fields.
pub(crate) fn tokens(text: &str) -> usize {
    (text.chars().count() / 4).max(1)
}
