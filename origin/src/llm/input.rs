//! Validation of the chat and compare request bodies (origin-api.md §6.1), producing the 422
//! `details` shape of the rest of the API.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use llmselect_llm::{ChatMessage, Provider};

use crate::error::AppError;
use crate::http::input::Fields;
use crate::model_registry::PROVIDERS;

/// A validated `/chat` or `/chat/stream` body.
#[derive(Debug)]
pub struct ChatRequest {
    pub provider: Provider,
    pub model: String,
    /// 1..25 messages, as sent.
    pub messages: Vec<ChatMessage>,
    pub conversation_id: Option<Uuid>,
}

/// One `{provider, model}` entry of a compare request.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Provider,
    pub model: String,
}

/// A validated `/compare` or `/compare/stream` body.
#[derive(Debug)]
pub struct CompareRequest {
    pub targets: Vec<Target>,
    pub prompt: String,
}

fn provider_of(name: &str) -> Option<Provider> {
    name.parse().ok()
}

fn message_errors(v: &Value) -> Result<ChatMessage, Map<String, Value>> {
    let mut f = Fields::item(v, &["role", "content"])?;
    let role = f.one_of("role", true, &["system", "user", "assistant"]);
    let content = f.string("content", true, Some((1, 4000)));
    match (role, content) {
        (Some(role), Some(content)) if !f.has_errors() => Ok(ChatMessage::new(role, content)),
        _ => Err(f.into_errors()),
    }
}

pub fn chat_request(body: &Value) -> Result<ChatRequest, AppError> {
    let mut f = Fields::new(body, &["provider", "model", "messages", "conversationId"])?;
    let provider = f.one_of("provider", true, &PROVIDERS);
    let model = f.string("model", true, Some((1, 100)));
    let mut messages = Vec::new();
    if let Some(list) = f.array("messages", true) {
        if list.is_empty() || list.len() > 25 {
            f.error("messages", "Length must be between 1 and 25.");
        }
        for (i, item) in list.iter().enumerate() {
            match message_errors(item) {
                Ok(m) => messages.push(m),
                Err(errors) => f.nested("messages", i, errors),
            }
        }
    }
    let conversation_id = match body.get("conversationId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(id) => Some(id),
            Err(_) => {
                f.error("conversationId", "Not a valid UUID.");
                None
            }
        },
        Some(_) => {
            f.error("conversationId", "Not a valid UUID.");
            None
        }
    };
    f.finish()?;
    match (provider.as_deref().and_then(provider_of), model) {
        (Some(provider), Some(model)) => Ok(ChatRequest {
            provider,
            model,
            messages,
            conversation_id,
        }),
        _ => Err(AppError::Validation(json!({"_schema": ["Invalid input."]}))),
    }
}

fn target_errors(v: &Value) -> Result<Target, Map<String, Value>> {
    let mut f = Fields::item(v, &["provider", "model"])?;
    let provider = f.one_of("provider", true, &PROVIDERS);
    let model = f.string("model", true, Some((1, 100)));
    match (provider.as_deref().and_then(provider_of), model) {
        (Some(provider), Some(model)) if !f.has_errors() => Ok(Target { provider, model }),
        _ => Err(f.into_errors()),
    }
}

pub fn compare_request(body: &Value) -> Result<CompareRequest, AppError> {
    let mut f = Fields::new(body, &["providers", "prompt"])?;
    let prompt = f.string("prompt", true, Some((1, 2000)));
    let mut targets = Vec::new();
    if let Some(list) = f.array("providers", true) {
        if list.is_empty() || list.len() > 4 {
            f.error("providers", "Length must be between 1 and 4.");
        }
        for (i, item) in list.iter().enumerate() {
            match target_errors(item) {
                Ok(t) => targets.push(t),
                Err(errors) => f.nested("providers", i, errors),
            }
        }
    }
    f.finish()?;
    Ok(CompareRequest {
        targets,
        prompt: prompt.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_validation_reports_nested_and_unknown_fields() {
        let body = json!({"provider": "openai", "model": "m", "conversation_id": "x",
                          "messages": [{"role": "robot", "content": "hi"}]});
        let AppError::Validation(d) = chat_request(&body).unwrap_err() else {
            panic!()
        };
        assert_eq!(d["conversation_id"], json!(["Unknown field."]));
        assert!(d["messages"]["0"]["role"].is_array());
        let body = json!({"provider": "openai", "model": "m", "conversationId": "nope",
                          "messages": [{"role": "user", "content": "hi"}]});
        let AppError::Validation(d) = chat_request(&body).unwrap_err() else {
            panic!()
        };
        assert_eq!(d["conversationId"], json!(["Not a valid UUID."]));
    }

    #[test]
    fn compare_keeps_request_order() {
        let body = json!({"prompt": "p", "providers": [
            {"provider": "openai", "model": "a"}, {"provider": "openai", "model": "b"}]});
        let req = compare_request(&body).unwrap();
        assert_eq!(req.targets[0].model, "a");
        assert_eq!(req.targets[1].model, "b");
    }
}
