//! `/api/v1/keys` (a user's provider keys, encrypted at rest) and `/api/v1/keys/system-keys`.

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::auth::authenticate;
use crate::error::AppError;
use crate::http::request::RequestCtx;
use crate::http::response::{bytes_response, etag_of, uncacheable, Cacheable, Response};
use crate::model_registry::PROVIDERS;
use crate::repo::api_keys;
use crate::routes::caching::groups;

pub async fn list(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let keys: Vec<Value> = api_keys::list(&db, user.id)
        .await?
        .into_iter()
        .map(|(provider, o)| json!({"provider": provider, "override_system_key": o}))
        .collect();
    Ok(uncacheable(StatusCode::OK, &json!({"keys": keys}), true))
}

/// What to do for one provider.
enum KeyChange {
    Store {
        provider: &'static str,
        key: String,
        override_system_key: bool,
    },
    Override {
        provider: &'static str,
        value: bool,
    },
}

fn parse_changes(body: &Value) -> Result<Vec<KeyChange>, AppError> {
    let Some(obj) = body.as_object() else {
        return Err(AppError::Validation(
            json!({"_schema": ["Invalid input type."]}),
        ));
    };
    let mut errors = Map::new();
    let mut err = |field: &str, msg: &str| {
        errors.insert(field.to_string(), json!([msg]));
    };
    for key in obj.keys() {
        let known = PROVIDERS
            .iter()
            .any(|p| key == p || key.strip_suffix("_override") == Some(p));
        if !known {
            err(key, "Unknown field.");
        }
    }
    let mut changes = Vec::new();
    for provider in PROVIDERS {
        let value = match obj.get(provider) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(_) => {
                err(provider, "Not a valid string.");
                continue;
            }
        };
        let flag_name = format!("{provider}_override");
        let flag = match obj.get(&flag_name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                err(&flag_name, "Not a valid boolean.");
                continue;
            }
        };
        if !value.is_empty() {
            changes.push(KeyChange::Store {
                provider,
                key: value,
                override_system_key: flag.unwrap_or(false),
            });
        } else if let Some(value) = flag {
            changes.push(KeyChange::Override { provider, value });
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(AppError::Validation(Value::Object(errors)))
    }
}

pub async fn save(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut conn = ctx.conn().await?;
    let user = authenticate(ctx, &conn.db(&ctx.obs)).await?;
    let body = ctx.json_body()?;
    let changes = parse_changes(&body)?;
    let tx = conn.begin().await?;
    {
        let db = tx.db(&ctx.obs);
        for change in &changes {
            match change {
                KeyChange::Store {
                    provider,
                    key,
                    override_system_key,
                } => {
                    let token = ctx.state.cipher.encrypt(key);
                    api_keys::upsert(&db, user.id, provider, &token, *override_system_key).await?;
                }
                KeyChange::Override { provider, value } => {
                    api_keys::set_override(&db, user.id, provider, *value).await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(uncacheable(
        StatusCode::OK,
        &json!({"message": "API keys updated successfully"}),
        false,
    ))
}

/// `DELETE /api/v1/keys/<provider>`: deletes the user's stored key of one provider (404 when the
/// provider is unknown or has no stored key). Chat and compare then use the system key, if any.
/// No cached response shows keys (`GET /keys` is `no-store`, the system-key list is not per
/// user), so like `POST /keys` this names no cache group.
pub async fn delete(ctx: &RequestCtx) -> Result<Response, AppError> {
    let conn = ctx.conn().await?;
    let db = conn.db(&ctx.obs);
    let user = authenticate(ctx, &db).await?;
    let provider = ctx.params.first().map(String::as_str).unwrap_or_default();
    let not_found = || AppError::not_found(format!("No API key stored for provider '{provider}'"));
    if !PROVIDERS.contains(&provider) {
        return Err(not_found());
    }
    if !api_keys::delete(&db, user.id, provider).await? {
        return Err(not_found());
    }
    Ok(uncacheable(
        StatusCode::OK,
        &json!({"message": "API key deleted", "provider": provider}),
        false,
    ))
}

pub async fn system_keys(ctx: &RequestCtx) -> Result<Response, AppError> {
    let mut keys = Map::new();
    for p in PROVIDERS {
        keys.insert(
            p.to_string(),
            json!(ctx.state.config.system_key(p).is_some()),
        );
    }
    let body = serde_json::to_vec(&json!({"system_keys": keys})).unwrap_or_default();
    let cache = Cacheable::public(
        300,
        3600,
        vec![groups::ALL.into(), groups::SYSTEM_KEYS.into()],
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
