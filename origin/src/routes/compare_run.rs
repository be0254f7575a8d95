//! Live comparisons: `POST /api/v1/compare`, `/compare/stream` and `/compare/analyze`
//! (origin-api.md §6.4–§6.6) call the providers now; the stored history is `comparison_history`.
//!
//! Every requested model runs in its own task with owned data (provider, model, key); results are
//! kept in request order, failures in place, so a vote's index points at what the client showed.
//! A provider without a key fails in place too (compare never answers 404 for one missing key).
//!
//! **Client disconnects** follow `/chat/stream`'s rule (see `routes::chat`): per model, the point
//! of no return is the end of that provider's stream. A client that leaves cancels every model
//! still streaming (counted `cancelled`, stored as a failed entry in place); an answer that was
//! complete stays complete. Once every model has finished or been cancelled, the comparison is
//! stored with the outbox row of its invalidation whenever at least one model completed, whether
//! or not the client is still connected; nothing is stored when none did (for example a client
//! that left before any first token). Nothing is written before the headers.

use std::collections::HashMap;

use futures::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};

use llmselect_llm::{ChatMessage, Provider};

use crate::auth::authenticate;
use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::{mutation_response, uncacheable, Response};
use crate::llm::errors::{COMPARE_FAILED, STREAM_FAILED};
use crate::llm::input::{compare_request, Target};
use crate::llm::sse::{sse_response, EventSender};
use crate::llm::{estimate_tokens, relay_outcome, LlmService, Stop};
use crate::metrics::{LlmCall, LlmEndpoint, LlmOutcome};
use crate::outbox;
use crate::provider_keys;
use crate::repo::comparisons as repo;
use crate::routes::caching::groups;
use crate::state::AppState;

/// Authenticates, validates and resolves every requested provider's key with one query.
async fn prepare(
    ctx: &RequestCtx,
) -> Result<(i64, Vec<Target>, String, HashMap<String, String>), AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let req = compare_request(&ctx.json_body()?)?;
    let mut names: Vec<&str> = req.targets.iter().map(|t| t.provider.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let keys = provider_keys::resolve(&ctx.state, &db, user.id, &names).await?;
    Ok((user.id, req.targets, req.prompt, keys))
}

fn success_entry(t: &Target, text: &str, secs: f64) -> Value {
    json!({
        "provider": t.provider.as_str(), "model": t.model, "response": text,
        "time": round3(secs), "tokens": estimate_tokens(text),
    })
}

fn failed_entry(t: &Target) -> Value {
    json!({
        "provider": t.provider.as_str(), "model": t.model, "response": COMPARE_FAILED,
        "time": 0, "tokens": 0, "error": true,
    })
}

fn round3(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// Inserts the comparison row (its own statement bumps the user's cache version) in a
/// transaction with the outbox row of its invalidation (`target`: the request's). Returns the
/// comparison id and the outbox id.
async fn store(
    state: &AppState,
    target: &str,
    user_id: i64,
    prompt: &str,
    results: &Value,
) -> Result<(i64, Option<i64>), AppError> {
    let obs = state.query_observer();
    let mut conn = state.pool.get().await?;
    let tx = conn.begin().await?;
    let id = repo::create(&tx.db(&obs), user_id, prompt, results)
        .await?
        .id;
    let inv = outbox::of_mutation(target, &[groups::user_comparisons(user_id)], None);
    let invalidation = state.outbox.commit(tx, &obs, &inv).await?;
    Ok((id, invalidation))
}

pub async fn compare(ctx: &RequestCtx) -> Result<Response, AppError> {
    let (user_id, targets, prompt, keys) = prepare(ctx).await?;
    let messages = vec![ChatMessage::user(prompt.clone())];
    let tasks: Vec<_> = targets
        .iter()
        .map(|t| {
            let key = keys.get(t.provider.as_str()).cloned();
            let llm = ctx.state.llm.clone();
            let (provider, model, messages) = (t.provider, t.model.clone(), messages.clone());
            tokio::spawn(async move {
                let key = key?;
                let call = llm.track(provider, LlmEndpoint::Compare);
                let result = llm.client.chat(provider, &model, &key, &messages).await;
                let secs = call.finish(LlmOutcome::of(&result)).as_secs_f64();
                match result {
                    Ok(text) => Some((text, secs)),
                    Err(e) => {
                        tracing::warn!(event = "compare_provider_failed", provider = %provider, error = %e);
                        None
                    }
                }
            })
        })
        .collect();
    let outcomes = futures::future::join_all(tasks).await;
    let results: Vec<Value> = targets
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| match outcome {
            Ok(Some((text, secs))) => success_entry(t, &text, secs),
            _ => failed_entry(t),
        })
        .collect();
    let results = Value::Array(results);
    let (id, invalidation) = store(&ctx.state, &ctx.target, user_id, &prompt, &results).await?;
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"id": id, "results": results, "prompt": prompt}),
        &[groups::user_comparisons(user_id)],
        invalidation,
    ))
}

pub async fn compare_stream(ctx: &RequestCtx) -> Result<Response, AppError> {
    let (user_id, targets, prompt, keys) = prepare(ctx).await?;
    // Nothing is written before the headers: the stored comparison's commit (before the `done`
    // event) carries its own outbox row.
    let (response, events) = sse_response(
        &[groups::user_comparisons(user_id)],
        None,
        ctx.state.llm.keepalive,
    );
    let state = ctx.state.clone();
    let target = ctx.target.clone();
    // Not raced against the disconnect as a whole: each model's task stops its own upstream call
    // when the client leaves, and what completed is stored all the same.
    tokio::spawn(async move {
        run_compare_stream(state, target, user_id, targets, prompt, keys, &events).await;
    });
    Ok(response)
}

async fn run_compare_stream(
    state: AppState,
    target: String,
    user_id: i64,
    targets: Vec<Target>,
    prompt: String,
    keys: HashMap<String, String>,
    events: &EventSender,
) {
    if !events
        .send(&json!({"event": "start", "total": targets.len()}))
        .await
    {
        tracing::info!(
            event = "compare_stream_cancelled",
            "client disconnected before any provider call; nothing saved"
        );
        return;
    }
    let messages = vec![ChatMessage::user(prompt.clone())];
    let tasks: Vec<_> = targets
        .iter()
        .map(|t| {
            let key = keys.get(t.provider.as_str()).cloned();
            let job = (
                state.llm.clone(),
                t.provider,
                t.model.clone(),
                messages.clone(),
            );
            let events = events.clone();
            // Each task stops its upstream call as soon as the client is gone (inside
            // `stream_one`), not at its next failed send: a slow first token could otherwise keep
            // a provider call running for the whole read timeout.
            tokio::spawn(async move {
                let (llm, provider, model, messages) = job;
                stream_one(&llm, provider, &model, key, &messages, &events).await
            })
        })
        .collect();
    let outcomes = futures::future::join_all(tasks).await;
    let mut any_completed = false;
    let results: Vec<Value> = targets
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| match outcome {
            Ok(Some(entry)) => {
                any_completed = true;
                entry
            }
            _ => failed_entry(t),
        })
        .collect();
    if !any_completed {
        events.send(&json!({"event": "done"})).await;
        return;
    }
    // Stored whether or not the client is still there.
    match store(&state, &target, user_id, &prompt, &Value::Array(results)).await {
        Ok((id, _)) => {
            if !events
                .send(&json!({"event": "done", "comparisonId": id}))
                .await
            {
                tracing::info!(
                    event = "compare_stream_client_left",
                    comparison_id = id,
                    "comparison stored after the client disconnected"
                );
            }
        }
        Err(e) => {
            tracing::error!(event = "compare_stream_save_failed", error = %e);
            events.send(&json!({"event": "done"})).await;
        }
    }
}

/// Streams one model: a start marker, its chunks, then `complete` (returning the result entry) or
/// `error` (returning `None`).
async fn stream_one(
    llm: &LlmService,
    provider: Provider,
    model: &str,
    key: Option<String>,
    messages: &[ChatMessage],
    events: &EventSender,
) -> Option<Value> {
    let p = provider.as_str();
    let error = json!({"event": "error", "provider": p, "model": model, "error": STREAM_FAILED});
    let Some(key) = key else {
        events.send(&error).await;
        return None;
    };
    let marker = json!({"event": "chunk", "provider": p, "model": model, "chunk": "", "time": 0});
    if !events.send(&marker).await {
        return None;
    }
    let target = Target {
        provider,
        model: model.to_owned(),
    };
    let mut call = llm.track(provider, LlmEndpoint::CompareStream);
    // `biased`: a finished upstream wins over a disconnect noticed at the same time.
    let relayed = tokio::select! {
        biased;
        r = relay_one(llm, &target, &key, messages, events, &mut call) => r,
        _ = events.closed() => Err(Stop::ClientGone),
    };
    let secs = call.finish(relay_outcome(&relayed)).as_secs_f64();
    match relayed {
        Ok(text) => {
            let entry = success_entry(&target, &text, secs);
            events
                .send(&json!({"event": "complete", "provider": p, "model": model, "data": entry}))
                .await;
            Some(entry)
        }
        Err(Stop::Failed(e)) => {
            tracing::warn!(event = "compare_stream_failed", provider = p, error = %e);
            events.send(&error).await;
            None
        }
        Err(Stop::ClientGone) => None,
    }
}

/// Calls the provider and relays its non-empty deltas as `chunk` events (times relative to the
/// call's start); returns the full text when the upstream finished cleanly.
async fn relay_one(
    llm: &LlmService,
    target: &Target,
    key: &str,
    messages: &[ChatMessage],
    events: &EventSender,
    call: &mut LlmCall,
) -> Result<String, Stop> {
    let (p, model) = (target.provider.as_str(), target.model.as_str());
    let mut deltas = llm
        .client
        .chat_stream(target.provider, model, key, messages)
        .await
        .map_err(Stop::Failed)?;
    let mut text = String::new();
    while let Some(delta) = deltas.next().await {
        let delta = delta.map_err(Stop::Failed)?;
        if delta.is_empty() {
            continue;
        }
        let first = text.is_empty();
        let time = if first {
            call.first_token()
        } else {
            call.elapsed()
        };
        text.push_str(&delta);
        let chunk = json!({"event": "chunk", "provider": p, "model": model, "chunk": delta,
            "time": round3(time.as_secs_f64()), "first_chunk": first});
        if !events.send(&chunk).await {
            return Err(Stop::ClientGone);
        }
    }
    Ok(text)
}

fn plain(status: StatusCode, error: &str) -> AppError {
    AppError::Plain {
        status,
        error: error.to_owned(),
    }
}

/// The analyst's instructions for `outputs` (origin-api.md §6.6).
fn analysis_prompt(prompt: &str, outputs: &[Value]) -> String {
    let rule = "=".repeat(60);
    let mut text = format!("Original prompt: \"{prompt}\"\n\n");
    for (i, o) in outputs.iter().enumerate() {
        let n = i + 1;
        let label = ["label", "model"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Model {n}"));
        let response = o.get("response").and_then(Value::as_str).unwrap_or("");
        text.push_str(&format!(
            "{rule}\nOUTPUT {n}: {label}\n{rule}\n{response}\n\n"
        ));
    }
    text.push_str(
        "Compare these outputs and answer in Markdown with these sections:\n\
         ## 1. Accuracy\n## 2. Depth\n## 3. Usefulness\n## 4. Tone and Readability\n\
         ## 5. Strengths and Weaknesses\n## 6. Overall Ranking\n",
    );
    text
}

/// `/compare/analyze`: writes nothing. Upstream failures answer `502 {"error":"Analysis failed"}`
/// (the cause is logged, never echoed).
pub async fn analyze(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let body = ctx.json_body()?;
    let Some(outputs) = body.get("outputs").and_then(Value::as_array) else {
        return Err(plain(StatusCode::BAD_REQUEST, "outputs array is required"));
    };
    if outputs.len() < 2 {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "At least 2 outputs are required for comparison",
        ));
    }
    let str_field = |k: &str, default: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let provider_name = str_field("analysis_provider", "openai");
    let model = str_field("analysis_model", "gpt-4o");
    let prompt = str_field("prompt", "");
    let Ok(provider) = provider_name.parse::<Provider>() else {
        return Err(AppError::invalid_field(
            "analysis_provider",
            "Must be one of: openai, anthropic, gemini, mistral.",
        ));
    };
    let mut keys = provider_keys::resolve(&ctx.state, &db, user.id, &[provider.as_str()]).await?;
    // Release the connection before the (slow) provider call.
    drop(conn);
    let key = keys
        .remove(provider.as_str())
        .ok_or_else(|| provider_keys::missing_key(provider.as_str()))?;
    let messages = [
        ChatMessage::system(
            "You are an expert analyst who compares the outputs of large language models \
             objectively, fairly and concisely.",
        ),
        ChatMessage::user(analysis_prompt(&prompt, outputs)),
    ];
    let llm = &ctx.state.llm;
    let call = llm.track(provider, LlmEndpoint::Analyze);
    let result = llm.client.chat(provider, &model, &key, &messages).await;
    call.finish(LlmOutcome::of(&result));
    let analysis = result.map_err(|e| {
        tracing::warn!(event = "analysis_failed", provider = %provider, error = %e);
        plain(StatusCode::BAD_GATEWAY, "Analysis failed")
    })?;
    Ok(uncacheable(
        StatusCode::OK,
        &json!({"analysis": analysis, "provider": provider.as_str(), "model": model,
                "outputs_compared": outputs.len()}),
        false,
    ))
}
