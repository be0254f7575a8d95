//! The stored comparison history: `/api/v1/comparisons…` (origin-api.md §3.7), list, save, vote and
//! delete. Running a comparison against the providers is `compare_run`.

use http::StatusCode;
use serde_json::{json, Value};

use crate::auth::authenticate;
use crate::cursor;
use crate::error::AppError;
use crate::http::input::Fields;
use crate::http::request::RequestCtx;
use crate::http::response::{json_response, mutation_response, Response};
use crate::model_registry::PROVIDERS;
use crate::repo::comparisons::{self as repo, Vote};
use crate::routes::caching::{commit_invalidating, groups, user_list_cache};

const NOT_FOUND: &str = "Comparison not found";

fn parse_id(ctx: &RequestCtx) -> Result<i64, AppError> {
    ctx.params
        .first()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| AppError::not_found(NOT_FOUND))
}

pub async fn list(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let int = |name: &str| {
        ctx.query_param(name)
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let limit = int("limit").unwrap_or(50).clamp(1, 100);
    let offset = int("offset").unwrap_or(0).max(0);
    let cursor = cursor::from_query::<i64>(ctx, "cmp", user.id)?;
    let normalised = format!(
        "limit={limit}&offset={}&cursor={}",
        if cursor.is_some() { 0 } else { offset },
        cursor.as_ref().map_or("", |(text, _)| text)
    );
    let cache = user_list_cache(
        ctx,
        &user,
        "comparisons",
        groups::user_comparisons(user.id),
        &normalised,
    );
    if cache.matches(&ctx.headers) {
        return Ok(cache.not_modified());
    }
    let after = cursor.map(|(_, after)| after);
    let items = match after {
        Some(after) => repo::list_after(&db, user.id, limit, after).await?,
        None => repo::list_page(&db, user.id, limit, offset).await?,
    };
    let next_cursor = cursor::after_page("cmp", user.id, limit, &items, |c| {
        (c.created_at, c.id.to_string())
    });
    let body = json!({
        "comparisons": items.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        "limit": limit,
        "offset": if after.is_some() { 0 } else { offset },
        "next_cursor": next_cursor,
    });
    Ok(cache.wrap(json_response(StatusCode::OK, &body)))
}

/// Validates one element of `results`.
fn result_entry(v: &Value) -> Result<Value, serde_json::Map<String, Value>> {
    let mut f = Fields::item(
        v,
        &["provider", "model", "response", "time", "tokens", "error"],
    )?;
    let provider = f.one_of("provider", true, &PROVIDERS);
    let model = f.string("model", true, Some((1, 100)));
    let response = f.string("response", true, None);
    f.number("time", true);
    let tokens = f.int("tokens", true, Some(0));
    let error = f.boolean("error", false);
    if f.has_errors() {
        return Err(f.into_errors());
    }
    let mut out = json!({
        "provider": provider, "model": model, "response": response, "time": v["time"].clone(), "tokens": tokens,
    });
    if let Some(e) = error {
        out["error"] = json!(e);
    }
    Ok(out)
}

pub async fn create(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["prompt", "results"])?;
    let prompt = f.string("prompt", true, Some((1, 100_000)));
    let mut results = Vec::new();
    if let Some(list) = f.array("results", true) {
        if list.is_empty() || list.len() > 10 {
            f.error("results", "Length must be between 1 and 10.");
        }
        for (i, v) in list.iter().enumerate() {
            match result_entry(v) {
                Ok(r) => results.push(r),
                Err(errors) => f.nested("results", i, errors),
            }
        }
    }
    f.finish()?;
    let prompt = prompt.unwrap_or_default();
    let tx = conn.begin().await?;
    let c = repo::create(&tx.db(&ctx.obs), user.id, &prompt, &Value::Array(results)).await?;
    let groups = [groups::user_comparisons(user.id)];
    let invalidation = commit_invalidating(ctx, tx, &groups, None).await?;
    Ok(mutation_response(
        StatusCode::CREATED,
        &c.to_json(),
        &groups,
        invalidation,
    ))
}

pub async fn vote(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let id = parse_id(ctx)?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["preferred_index"])?;
    let index = f.int("preferred_index", true, Some(0));
    f.finish()?;
    let out_of_range = || AppError::bad_request("Invalid preferred_index: out of valid range");
    let index = i32::try_from(index.unwrap_or_default()).map_err(|_| out_of_range())?;
    let tx = conn.begin().await?;
    match repo::vote(&tx.db(&ctx.obs), id, user.id, index).await? {
        Vote::Recorded(c) => {
            let groups = [groups::user_comparisons(user.id)];
            let invalidation = commit_invalidating(ctx, tx, &groups, None).await?;
            Ok(mutation_response(
                StatusCode::OK,
                &c.to_json(),
                &groups,
                invalidation,
            ))
        }
        Vote::OutOfRange => Err(out_of_range()),
        Vote::NotFound => Err(AppError::not_found(NOT_FOUND)),
    }
}

pub async fn delete(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let id = parse_id(ctx)?;
    let tx = conn.begin().await?;
    if !repo::delete(&tx.db(&ctx.obs), id, user.id).await? {
        return Err(AppError::not_found(NOT_FOUND));
    }
    let groups = [groups::user_comparisons(user.id)];
    let invalidation = commit_invalidating(ctx, tx, &groups, None).await?;
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"message": "Comparison deleted successfully"}),
        &groups,
        invalidation,
    ))
}
