//! `/api/v1/conversations…` (origin-api.md §3.6), plus create and append-message.
//!
//! Statement budget (reported in `Server-Timing` and the `origin_db_statements_per_request`
//! histogram): list = auth + one page statement that also carries the total; detail and export =
//! one statement for the user and the conversation + messages. A matching `If-None-Match` is
//! answered after the first statement: the auth load (list, whose ETag derives from the user's
//! `cache_version`) or the user-and-conversation load (detail, whose ETag derives from the
//! conversation row).

use http::header::{HeaderValue, CONTENT_DISPOSITION, LOCATION};
use http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::{authenticate, AccessToken, AuthUser};
use crate::cursor;
use crate::db::Db;
use crate::error::AppError;
use crate::http::input::Fields;
use crate::http::request::RequestCtx;
use crate::http::response::{
    bytes_response, etag_of, json_response, mutation_response, Cacheable, Response,
};
use crate::model_registry::PROVIDERS;
use crate::repo::conversations::{self as repo, Conversation, Message};
use crate::repo::{fmt_ts, fmt_ts_naive, like_pattern};
use crate::routes::caching::{commit_invalidating, groups, user_list_cache};

const NOT_FOUND: &str = "Conversation not found";

fn parse_id(ctx: &RequestCtx) -> Result<Uuid, AppError> {
    ctx.params
        .first()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| AppError::not_found(NOT_FOUND))
}

/// Authenticates and loads the path's conversation in one statement (the user row LEFT JOIN the
/// conversation). The conversation is `None` when the id is malformed, missing or another user's;
/// a malformed id costs the plain auth load, so that an unauthenticated request still gets its
/// 401 rather than a 404.
async fn authenticate_with_conversation(
    ctx: &RequestCtx,
    db: &Db<'_, impl tokio_postgres::GenericClient + Sync>,
) -> Result<(AuthUser, Option<Conversation>), AppError> {
    let Ok(id) = parse_id(ctx) else {
        return Ok((authenticate(ctx, db).await?, None));
    };
    let token = AccessToken::verify(ctx)?;
    let (user, conversation) =
        match repo::get_with_user(db, token.user_id, token.revocation(), id).await? {
            Some((user, conversation)) => (Some(user), conversation),
            None => (None, None),
        };
    Ok((token.with_user(user)?, conversation))
}

fn message_json(m: &Message) -> Value {
    json!({"role": m.role, "content": m.content, "createdAt": fmt_ts(&m.created_at)})
}

/// The conversation without its messages (the rename answer).
fn summary_json(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "title": c.display_title(),
        "provider": c.provider,
        "model": c.model,
        "lastMessageAt": fmt_ts(&c.last_message_at),
    })
}

fn detail_json(c: &Conversation, messages: &[Message]) -> Value {
    let mut body = summary_json(c);
    body["messages"] = messages.iter().map(message_json).collect();
    body["messageCount"] = json!(messages.len());
    body
}

fn detail_cache(ctx: &RequestCtx, user: &AuthUser, c: &Conversation, variant: &str) -> Cacheable {
    let etag = etag_of(&[
        b"conversation",
        c.id.as_bytes(),
        &c.updated_at.timestamp_micros().to_be_bytes(),
        &c.last_message_at.timestamp_micros().to_be_bytes(),
        variant.as_bytes(),
    ]);
    Cacheable::per_user(
        user.cdn_max_age(&ctx.state.config),
        vec![
            groups::ALL.into(),
            groups::user(user.id),
            groups::conversation(&c.id),
        ],
        etag,
    )
}

/// `page`/`limit` as the original parsed them: invalid values fall back to the defaults.
fn int_param(ctx: &RequestCtx, name: &str, default: i64, valid: impl Fn(i64) -> bool) -> i64 {
    ctx.query_param(name)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| valid(*v))
        .unwrap_or(default)
}

pub async fn list(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let limit = int_param(ctx, "limit", 20, |v| (1..=100).contains(&v));
    let page = int_param(ctx, "page", 1, |v| (1..=i64::MAX / 101).contains(&v));
    let search = ctx
        .query_param("search")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let cursor = cursor::from_query::<Uuid>(ctx, "conv", user.id)?;
    // `search:content`: searches match message content since issue 15, so the same search URL
    // and `cache_version` no longer mean the same body; the marker changes every list ETag once.
    let normalised = format!(
        "search:content&limit={limit}&page={}&search={}&cursor={}",
        if cursor.is_some() { 0 } else { page },
        search.as_deref().unwrap_or(""),
        cursor.as_ref().map_or("", |(text, _)| text)
    );
    let cache = user_list_cache(
        ctx,
        &user,
        "conversations",
        groups::user_conversations(user.id),
        &normalised,
    );
    if cache.matches(&ctx.headers) {
        return Ok(cache.not_modified());
    }
    let after = cursor.map(|(_, after)| after);
    let pattern = search.as_deref().map(like_pattern);
    let repo::ListPage { items, total } = match after {
        Some(after) => repo::list_after(&db, user.id, pattern.as_deref(), limit, after).await?,
        None => {
            repo::list_page(&db, user.id, pattern.as_deref(), limit, (page - 1) * limit).await?
        }
    };
    let next_cursor = cursor::after_page("conv", user.id, limit, &items, |c| {
        (c.last_message_at, c.id.to_string())
    });
    let conversations: Vec<Value> = items
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "title": repo::display_title(c.title.as_deref(), &c.provider, &c.model),
                "provider": c.provider,
                "model": c.model,
                "lastMessageAt": fmt_ts(&c.last_message_at),
                "messageCount": c.message_count,
                "preview": c.preview,
            })
        })
        .collect();
    let body = json!({
        "conversations": conversations,
        "page": if after.is_some() { Value::Null } else { json!(page) },
        "limit": limit,
        "total": total,
        "totalPages": (total + limit - 1) / limit,
        "nextCursor": next_cursor,
    });
    Ok(cache.wrap(json_response(StatusCode::OK, &body)))
}

pub async fn get(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let (user, conv) = authenticate_with_conversation(ctx, &db).await?;
    let conv = conv.ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    let cache = detail_cache(ctx, &user, &conv, "detail");
    if cache.matches(&ctx.headers) {
        return Ok(cache.not_modified());
    }
    let messages = repo::messages(&db, conv.id).await?;
    Ok(cache.wrap(json_response(
        StatusCode::OK,
        &detail_json(&conv, &messages),
    )))
}

pub async fn export(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let (user, conv) = authenticate_with_conversation(ctx, &db).await?;
    // A malformed id is a 404 before a bad format is a 400; a missing conversation only after.
    let id = parse_id(ctx)?;
    let format = ctx
        .query_param("format")
        .map(|f| f.trim().to_lowercase())
        .unwrap_or_else(|| "markdown".into());
    if format != "markdown" && format != "json" {
        return Err(AppError::Plain {
            status: StatusCode::BAD_REQUEST,
            error: "Invalid format. Must be 'markdown' or 'json'".into(),
        });
    }
    let conv = conv.ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    let cache = detail_cache(ctx, &user, &conv, &format);
    if cache.matches(&ctx.headers) {
        return Ok(cache.not_modified());
    }
    let messages = repo::messages(&db, id).await?;
    if format == "json" {
        let mut body = detail_json(&conv, &messages);
        if let Some(obj) = body.as_object_mut() {
            obj.remove("messageCount");
        }
        return Ok(cache.wrap(json_response(StatusCode::OK, &body)));
    }
    let mut lines = vec![
        format!("# {}", conv.display_title()),
        String::new(),
        format!("**Provider:** {}", conv.provider),
        format!("**Model:** {}", conv.model),
        format!("**Last Updated:** {}", fmt_ts_naive(&conv.last_message_at)),
        String::new(),
        "---".to_string(),
        String::new(),
    ];
    for m in &messages {
        let heading = if m.role == "user" {
            "## User"
        } else {
            "## Assistant"
        };
        lines.extend([
            heading.to_string(),
            String::new(),
            m.content.clone(),
            String::new(),
            "---".to_string(),
            String::new(),
        ]);
    }
    let text = lines.join("\n");
    let mut response = bytes_response(StatusCode::OK, "text/markdown; charset=utf-8", text.into());
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.md\"")) {
        response.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(cache.wrap(response))
}

/// Database failures on PATCH/DELETE keep the original's `{"error": "<sentence>"}` shape.
fn plain_500(sentence: &str) -> impl Fn(AppError) -> AppError + '_ {
    move |e| match e {
        AppError::Internal(cause) => {
            tracing::error!(error = ?cause, "conversation write failed");
            AppError::Plain {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: sentence.to_string(),
            }
        }
        other => other,
    }
}

pub async fn rename(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let id = parse_id(ctx)?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["title"])?;
    let title = f.string("title", true, Some((1, 255)));
    f.finish()?;
    let title = title.unwrap_or_default();
    let failed = plain_500("Failed to update conversation");
    let tx = conn
        .begin()
        .await
        .map_err(AppError::from)
        .map_err(&failed)?;
    let conv = repo::rename(&tx.db(&ctx.obs), id, user.id, &title)
        .await
        .map_err(AppError::from)
        .map_err(&failed)?
        .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    let groups = [
        groups::user_conversations(user.id),
        groups::conversation(&id),
    ];
    let invalidation = commit_invalidating(ctx, tx, &groups, None)
        .await
        .map_err(AppError::from)
        .map_err(&failed)?;
    Ok(mutation_response(
        StatusCode::OK,
        &summary_json(&conv),
        &groups,
        invalidation,
    ))
}

pub async fn delete(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let id = parse_id(ctx)?;
    let failed = plain_500("Failed to delete conversation");
    let tx = conn
        .begin()
        .await
        .map_err(AppError::from)
        .map_err(&failed)?;
    let deleted = repo::delete(&tx.db(&ctx.obs), id, user.id)
        .await
        .map_err(AppError::from)
        .map_err(&failed)?;
    if !deleted {
        return Err(AppError::not_found(NOT_FOUND));
    }
    let groups = [
        groups::user_conversations(user.id),
        groups::conversation(&id),
    ];
    let invalidation = commit_invalidating(ctx, tx, &groups, None)
        .await
        .map_err(AppError::from)
        .map_err(&failed)?;
    Ok(mutation_response(
        StatusCode::OK,
        &json!({"message": "Conversation deleted successfully"}),
        &groups,
        invalidation,
    ))
}

pub async fn create(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["provider", "model", "title"])?;
    let provider = f.one_of("provider", true, &PROVIDERS);
    let model = f.string("model", true, Some((1, 100)));
    let title = f.string("title", false, Some((1, 255)));
    f.finish()?;
    let (Some(provider), Some(model)) = (provider, model) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let tx = conn.begin().await?;
    let conv = repo::create(
        &tx.db(&ctx.obs),
        user.id,
        &provider,
        &model,
        title.as_deref(),
    )
    .await?;
    let location = format!("/api/v1/conversations/{}", conv.id);
    let groups = [groups::user_conversations(user.id)];
    let invalidation = commit_invalidating(ctx, tx, &groups, Some(&location)).await?;
    let mut response = mutation_response(
        StatusCode::CREATED,
        &detail_json(&conv, &[]),
        &groups,
        invalidation,
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, v);
    }
    Ok(response)
}

pub async fn add_message(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let id = parse_id(ctx)?;
    let body = ctx.json_body()?;
    let mut f = Fields::new(&body, &["role", "content"])?;
    let role = f.one_of("role", true, &["system", "user", "assistant"]);
    let content = f.string("content", true, Some((1, 100_000)));
    f.finish()?;
    let (Some(role), Some(content)) = (role, content) else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let tx = conn.begin().await?;
    let m = repo::add_message(&tx.db(&ctx.obs), id, user.id, &role, &content)
        .await?
        .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    let groups = [
        groups::user_conversations(user.id),
        groups::conversation(&id),
    ];
    let invalidation = commit_invalidating(ctx, tx, &groups, None).await?;
    Ok(mutation_response(
        StatusCode::CREATED,
        &json!({
            "id": m.id,
            "conversationId": id,
            "role": m.role,
            "content": m.content,
            "createdAt": fmt_ts(&m.created_at),
        }),
        &groups,
        invalidation,
    ))
}
