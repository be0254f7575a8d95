//! `POST /api/v1/chat` and `POST /api/v1/chat/stream` (origin-api.md §6.2, §6.3).
//!
//! Both resolve the conversation (ownership) and the API key before writing anything.
//! `/chat` writes only after the provider answered. `/chat/stream` commits the conversation and the
//! user message before the headers, streams the deltas, and commits the assistant message before
//! the `done` event.
//!
//! **One chat memory.** Both endpoints send the same messages: with a `conversationId`, the stored
//! history (read in the statement that checks ownership) plus the request's last message (the new
//! turn; earlier request messages are ignored, the stored history replaces them); without one, the
//! request's messages. Either way bounded by `providers.chat_history_max_chars`
//! ([`crate::llm::memory`]): the oldest messages are dropped first, the newest is always sent.
//!
//! **Client disconnects** (`/chat/stream`; `/compare/stream` follows the same rule). The point of
//! no return is the end of the provider's stream as the origin reads it:
//! - before it, a client that goes away cancels the upstream call (counted `cancelled`) and
//!   nothing more is written: the conversation and user message committed before the headers stay
//!   (their invalidation went out with the headers and, with a bus, into the outbox), no answer
//!   and no further outbox row;
//! - once the provider's answer is complete it is committed, with the outbox row of its
//!   invalidation, whether or not the client is still connected; `done` follows the commit (sent
//!   to nobody if the client left). The proxy applies the stream's `Cache-Group-Invalidation`
//!   when the stream ends, also when its client left first.
//!
//! Nothing after the provider's end looks at the client, and the relay's race against the
//! disconnect is `biased` towards the upstream, so a disconnect that coincides with the
//! provider's last bytes still stores the answer.
//!
//! Other product decisions (documented deviations from the original):
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
use crate::llm::{memory, relay_outcome, Stop};
use crate::metrics::{LlmCall, LlmEndpoint, LlmOutcome};
use crate::outbox;
use crate::provider_keys;
use crate::repo::conversations as repo;
use crate::routes::caching::{commit_invalidating, groups};
use crate::state::AppState;

const NOT_FOUND: &str = "Conversation not found";

/// What is known before the provider call: the user, the request, the key and the messages to
/// send (the memory).
struct Prepared {
    user: AuthUser,
    req: ChatRequest,
    api_key: String,
    messages: Vec<ChatMessage>,
}

/// Authenticates, validates, checks ownership while reading the stored history, and resolves
/// the key (no writes).
async fn prepare(ctx: &RequestCtx) -> Result<Prepared, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let req = chat_request(&ctx.json_body()?)?;
    let budget = ctx.state.config.providers.chat_history_max_chars as usize;
    let messages = match req.conversation_id {
        Some(id) => {
            // Validation guarantees at least one message.
            let newest = req.messages.last().ok_or_else(|| {
                AppError::invalid_field("messages", "Length must be between 1 and 25.")
            })?;
            let room = memory::history_budget(newest, budget) as i64;
            let stored = repo::history(&db, id, user.id, room)
                .await?
                .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
            let history = stored
                .into_iter()
                .map(|(role, content)| ChatMessage::new(role, content))
                .chain(std::iter::once(newest.clone()))
                .collect();
            memory::fit(history, budget)
        }
        None => memory::fit(req.messages.clone(), budget),
    };
    let provider = req.provider.as_str();
    let mut keys = provider_keys::resolve(&ctx.state, &db, user.id, &[provider]).await?;
    let api_key = keys
        .remove(provider)
        .ok_or_else(|| provider_keys::missing_key(provider))?;
    Ok(Prepared {
        user,
        req,
        api_key,
        messages,
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
    let p = prepare(ctx).await?;
    let llm = &ctx.state.llm;
    let call = llm.track(p.req.provider, LlmEndpoint::Chat);
    let result = llm
        .client
        .chat(p.req.provider, &p.req.model, &p.api_key, &p.messages)
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
    let p = prepare(ctx).await?;
    let (id, invalidation) = save_pre(ctx, p.user.id, &p.req, None).await?;
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
        messages: p.messages,
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
        // `biased`: an upstream that has finished wins over a disconnect noticed at the same
        // time (the module documentation's point of no return).
        let relayed = tokio::select! {
            biased;
            r = self.relay(&events, &mut call) => r,
            _ = events.closed() => Err(Stop::ClientGone),
        };
        // The provider call is over here; saving the answer is not part of its duration.
        call.finish(relay_outcome(&relayed));
        match relayed {
            // Stored whether or not the client is still there.
            Ok(text) => match self.save_answer(&text).await {
                Ok(()) => {
                    if !events
                        .send(&json!({"done": true, "conversationId": self.conversation_id}))
                        .await
                    {
                        tracing::info!(event = "chat_stream_client_left", provider = %self.provider,
                            "answer stored after the client disconnected");
                    }
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
