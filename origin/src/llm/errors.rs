//! How provider failures reach the client (origin-api.md §6.1). Nothing here echoes a key: the
//! adapters redact and truncate provider payloads before they become an [`LlmError`].

use serde_json::{json, Value};
use uuid::Uuid;

use llmselect_llm::LlmError;

use crate::error::AppError;

/// The message of every failed stream (chat/stream and compare/stream).
pub const STREAM_FAILED: &str = "Streaming failed. Please check your API key and try again.";

/// The response text of a failed provider in `/compare`.
pub const COMPARE_FAILED: &str =
    "Provider request failed. Please check your API key and try again.";

/// `/chat`: every provider failure is a 400 `"<Provider> API error"` with the upstream status
/// (null for timeouts and network errors) and the redacted payload, plus the given
/// `conversationId`. The 400 (not 502) keeps the original's contract with the SPA.
pub fn chat_error(err: &LlmError, conversation_id: Option<Uuid>) -> AppError {
    let payload = match err {
        LlmError::Status { payload, .. } => payload.clone(),
        LlmError::Timeout { .. } => "The provider did not answer in time".to_owned(),
        LlmError::Network { .. } => "The provider could not be reached".to_owned(),
        LlmError::Malformed { .. } | LlmError::Upstream { .. } => {
            "The provider sent a response that could not be read".to_owned()
        }
        LlmError::Config(_) => "The provider request could not be built".to_owned(),
    };
    let mut details = json!({
        "status_code": err.status_code(),
        "payload": {"error": payload},
    });
    if let Some(id) = conversation_id {
        details["conversationId"] = Value::String(id.to_string());
    }
    AppError::BadRequest {
        message: err.api_error_message(),
        details: Some(details),
    }
}
