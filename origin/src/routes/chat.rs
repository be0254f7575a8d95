//! `POST /api/v1/chat` and `POST /api/v1/chat/stream` (origin-api.md §6.2, §6.3).
//!
//! Both resolve the conversation (ownership) and the API key before writing anything.
//! `/chat` writes only after the provider answered. `/chat/stream` commits the conversation and the
//! user message before the headers, streams the deltas, and commits the assistant message before
//! the `done` event.
//!
//! Product decisions (documented deviations from the original):
//! - With a `conversationId`, `/chat/stream` loads the stored history (one query) and sends it plus
//!   the request's last message, so the model sees the conversation. `/chat` sends `messages` as
//!   given.
//! - A client that disconnects mid-stream cancels the upstream call and nothing more is saved (the
//!   user message committed before the stream stays).
//! - Every provider failure of `/chat` is a 400 `"<Provider> API error"` (never 502).

use std::time::Instant;

use http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use futures::StreamExt;
use llmselect_llm::ChatMessage;

use crate::auth::{authenticate, AuthUser};
use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::{mutation_response, Response};
use crate::llm::errors::{chat_error, STREAM_FAILED};
use crate::llm::input::{chat_request, ChatRequest};
use crate::llm::sse::{sse_response, EventSender};
use crate::llm::{relay_outcome, Stop};
use crate::metrics::{LlmCall, LlmEndpoint, LlmOutcome};
use crate::outbox;
use crate::provider_keys;
use crate::repo::conversations as repo;
use crate::routes::caching::{commit_invalidating, groups};
use crate::state::AppState;

const NOT_FOUND: &str = "Conversation not found";

/// What is known before the provider call: the user, the request, the key and, for the stream,
/// the stored history.
struct Prepared {
    user: AuthUser,
    req: ChatRequest,
    api_key: String,
    history: Vec<ChatMessage>,
}

/// Authenticates, validates, checks ownership and resolves the key (no writes).
async fn prepare(ctx: &RequestCtx, load_history: bool) -> Result<Prepared, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let req = chat_request(&ctx.json_body()?)?;
    let mut history = Vec::new();
    if let Some(id) = req.conversation_id {
        if repo::get(&db, id, user.id).await?.is_none() {
            return Err(AppError::not_found(NOT_FOUND));
        }
        if load_history {
            history = repo::messages(&db, id)
                .await?
                .into_iter()
                .map(|m| ChatMessage::new(m.role, m.content))
                .collect();
        }
    }
    let provider = req.provider.as_str();
    let mut keys = provider_keys::resolve(&ctx.state, &db, user.id, &[provider]).await?;
    let api_key = keys
        .remove(provider)
        .ok_or_else(|| provider_keys::missing_key(provider))?;
    Ok(Prepared {
        user,
        req,
        api_key,
        history,
    })
}

/// In one transaction: creates the conversation (or switches its model) and inserts the last
/// message when it is a user message (and the answer, for `/chat`), with the outbox row of its
/// invalidation ([`chat_groups`]). Returns the conversation id and the outbox id.
async fn save_pre(
    ctx: &RequestCtx,
    user_id: i64,
    req: &ChatRequest,
    assistant: Option<&str>,
) -> Result<(Uuid, Option<i64>), AppError> {
    let mut conn = ctx.conn().await?;
    let tx = conn.begin().await?;
    let db = tx.db(&ctx.obs);
    let provider = req.provider.as_str();
    let id = match req.conversation_id {
        Some(id) => {
            repo::set_model(&db, id, user_id, provider, &req.model).await?;
            id
        }
        None => {
            repo::create(&db, user_id, provider, &req.model, None)
                .await?
                .id
        }
    };
    if let Some(last) = req.messages.last().filter(|m| m.role == "user") {
        repo::add_message(&db, id, user_id, "user", &last.content)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    }
    if let Some(text) = assistant {
        repo::add_message(&db, id, user_id, "assistant", text)
            .await?
            .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    }
    let invalidation = commit_invalidating(ctx, tx, &chat_groups(user_id, &id), None).await?;
    Ok((id, invalidation))
}

fn chat_groups(user_id: i64, id: &Uuid) -> Vec<String> {
    vec![
        groups::user_conversations(user_id),
        groups::conversation(id),
    ]
}

pub async fn chat(ctx: &RequestCtx) -> Result<Response, AppError> {
    let p = prepare(ctx, false).await?;
    let llm = &ctx.state.llm;
    let call = llm.track(p.req.provider, LlmEndpoint::Chat);
    let result = llm
        .client
        .chat(p.req.provider, &p.req.model, &p.api_key, &p.req.messages)
        .await;
    call.finish(LlmOutcome::of(&result));
    let text = result.map_err(|e| {
        tracing::warn!(event = "llm_chat_failed", provider = %p.req.provider, error = %e);
        chat_error(&e, p.req.conversation_id)
    })?;
    let (id, invalidation) = save_pre(ctx, p.user.id, &p.req, Some(&text)).await?;
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"response": text, "conversationId": id}),
        &chat_groups(p.user.id, &id),
        invalidation,
    ))
}

pub async fn chat_stream(ctx: &RequestCtx) -> Result<Response, AppError> {
    let p = prepare(ctx, true).await?;
    let (id, invalidation) = save_pre(ctx, p.user.id, &p.req, None).await?;
    let messages = if p.req.conversation_id.is_some() {
        // The history was read before the new user message was committed.
        p.history
            .into_iter()
            .chain(p.req.messages.last().cloned())
            .collect()
    } else {
        p.req.messages
    };
    let (response, events) = sse_response(
        &chat_groups(p.user.id, &id),
        invalidation,
        ctx.state.llm.keepalive,
    );
    let job = StreamJob {
        state: ctx.state.clone(),
        target: ctx.target.clone(),
        user_id: p.user.id,
        conversation_id: id,
        provider: p.req.provider,
        model: p.req.model,
        api_key: p.api_key,
        messages,
    };
    tokio::spawn(job.run(events));
    Ok(response)
}

/// Everything the relay task owns (no request context).
struct StreamJob {
    state: AppState,
    /// The request target (the outbox row of the answer's commit names it).
    target: String,
    user_id: i64,
    conversation_id: Uuid,
    provider: llmselect_llm::Provider,
    model: String,
    api_key: String,
    messages: Vec<ChatMessage>,
}

impl StreamJob {
    async fn run(self, events: EventSender) {
        let start = Instant::now();
        let mut call = self.state.llm.track(self.provider, LlmEndpoint::ChatStream);
        let relayed = tokio::select! {
            r = self.relay(&events, &mut call) => r,
            _ = events.closed() => Err(Stop::ClientGone),
        };
        // The provider call is over here; saving the answer is not part of its duration.
        call.finish(relay_outcome(&relayed));
        match relayed {
            Ok(text) => match self.save_answer(&text).await {
                Ok(()) => {
                    events
                        .send(&json!({"done": true, "conversationId": self.conversation_id}))
                        .await;
                }
                Err(e) => {
                    tracing::error!(event = "chat_stream_save_failed", error = %e);
                    events.send(&json!({"error": STREAM_FAILED})).await;
                }
            },
            Err(Stop::ClientGone) => {
                tracing::info!(event = "chat_stream_cancelled", provider = %self.provider,
                    "client disconnected; upstream cancelled, nothing more saved");
            }
            Err(Stop::Failed(reason)) => {
                tracing::warn!(event = "chat_stream_failed", provider = %self.provider, error = %reason);
                events.send(&json!({"error": STREAM_FAILED})).await;
            }
        }
        tracing::info!(event = "chat_stream_end", provider = %self.provider,
            total_ms = start.elapsed().as_millis() as u64);
    }

    /// Relays every delta; returns the full text when the upstream finished cleanly.
    async fn relay(&self, events: &EventSender, call: &mut LlmCall) -> Result<String, Stop> {
        let client = &self.state.llm.client;
        let mut deltas = client
            .chat_stream(self.provider, &self.model, &self.api_key, &self.messages)
            .await
            .map_err(Stop::Failed)?;
        let mut text = String::new();
        while let Some(delta) = deltas.next().await {
            let delta = delta.map_err(Stop::Failed)?;
            if delta.is_empty() {
                continue;
            }
            if text.is_empty() {
                let ttft = call.first_token();
                tracing::info!(event = "chat_stream_first_token", provider = %self.provider,
                    ttft_ms = ttft.as_millis() as u64);
            }
            text.push_str(&delta);
            if !events.send(&json!({"content": delta})).await {
                return Err(Stop::ClientGone);
            }
        }
        Ok(text)
    }

    /// Commits the answer, with its own outbox row (the headers, and their invalidation id, are
    /// long gone).
    async fn save_answer(&self, text: &str) -> Result<(), AppError> {
        let obs = self.state.query_observer();
        let mut conn = self.state.pool.get().await?;
        let tx = conn.begin().await?;
        repo::add_message(
            &tx.db(&obs),
            self.conversation_id,
            self.user_id,
            "assistant",
            text,
        )
        .await?
        .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
        let groups = chat_groups(self.user_id, &self.conversation_id);
        let inv = outbox::of_mutation(&self.target, &groups, None);
        self.state.outbox.commit(tx, &obs, &inv).await?;
        Ok(())
    }
}
