//! `GET /api/v1/models[?provider=…]`: public, cached by the proxy until the earliest included
//! registry entry expires.

use std::time::Instant;

use http::StatusCode;
use serde_json::json;

use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::{bytes_response, etag_of, Cacheable, Response};
use crate::model_registry::PROVIDERS;
use crate::routes::caching::groups;

pub async fn list(ctx: &RequestCtx) -> Result<Response, AppError> {
    let provider = ctx
        .query_param("provider")
        .map(|p| p.trim().to_string())
        .unwrap_or_default();
    let providers: Vec<&'static str> = if provider.is_empty() {
        PROVIDERS.to_vec()
    } else {
        match PROVIDERS.iter().find(|p| **p == provider) {
            Some(p) => vec![*p],
            None => {
                return Err(AppError::bad_request(format!(
                    "Unsupported provider: {provider}"
                )))
            }
        }
    };
    let (models, expires_at) = ctx.state.models.list(&ctx.state.http, &providers).await;
    let body = serde_json::to_vec(&json!({"models": models})).unwrap_or_default();
    let cdn_max_age = expires_at
        .saturating_duration_since(Instant::now())
        .as_secs()
        .min(86_400);
    let cache = Cacheable::public(
        3600,
        cdn_max_age,
        vec![groups::ALL.into(), groups::MODELS.into()],
        etag_of(&[&body]),
    );
    if cache.matches(&ctx.headers) {
        return Ok(cache.not_modified());
    }
    Ok(cache.wrap(bytes_response(
        StatusCode::OK,
        "application/json",
        body.into(),
    )))
}
