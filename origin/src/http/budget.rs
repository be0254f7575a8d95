//! Time budgets of a request: the body must arrive within `http.body_read_timeout_ms` (else 408)
//! and the handler must answer within `http.handler_timeout_ms` (else 504). The chat and compare
//! handlers are exempt from the handler budget: they wait on providers (bounded by
//! `providers.llm_read_timeout_ms`) and their SSE bodies stream for as long as the answer takes.

use std::future::Future;
use std::time::Duration;

use crate::error::AppError;
use crate::http::router::Handler;
use crate::state::AppState;

/// True for the handlers that call an LLM provider or stream SSE: no handler budget.
pub fn exempt(handler: Handler) -> bool {
    matches!(
        handler,
        Handler::Chat
            | Handler::ChatStream
            | Handler::Compare
            | Handler::CompareStream
            | Handler::CompareAnalyze
    )
}

/// Runs `read` (the body read) within the body budget: a body that has not fully arrived in time
/// is a 408.
pub async fn read_body<T>(
    state: &AppState,
    read: impl Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    let budget = Duration::from_millis(state.config.http.body_read_timeout_ms);
    match tokio::time::timeout(budget, read).await {
        Ok(result) => result,
        Err(_) => Err(AppError::RequestTimeout(budget)),
    }
}

/// Runs `handler` within the handler budget unless `route` is [`exempt`]; a handler over budget
/// is dropped (its transaction, if any, rolls back) and the answer is a 504.
pub async fn run_handler<T>(
    state: &AppState,
    route: Handler,
    handler: impl Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    if exempt(route) {
        return handler.await;
    }
    let budget = Duration::from_millis(state.config.http.handler_timeout_ms);
    match tokio::time::timeout(budget, handler).await {
        Ok(result) => result,
        Err(_) => Err(AppError::HandlerTimeout(budget)),
    }
}
