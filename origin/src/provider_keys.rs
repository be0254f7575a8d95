//! Key resolution for LLM calls (origin-api.md §6.1), for the chat and compare handlers:
//! 1. the user's stored key when its `override_system_key` is set;
//! 2. the system key from the configuration;
//! 3. the user's stored key.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use crate::db::Db;
use crate::error::AppError;
use crate::repo::api_keys;
use crate::state::AppState;

/// Resolves the key of each of `providers` for `user_id` with one statement. Providers without any
/// key are absent from the map; the caller answers
/// `404 "API key for provider '<p>' not configured"` (see [`missing_key`]).
pub async fn resolve(
    state: &AppState,
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    providers: &[&str],
) -> Result<HashMap<String, String>, AppError> {
    let stored = api_keys::resolve(db, user_id, providers).await?;
    let mut out = HashMap::new();
    for provider in providers {
        let user_key = stored.iter().find(|k| k.provider == *provider);
        let chosen = match (user_key, state.config.system_key(provider)) {
            (Some(k), _) if k.override_system_key => Some(state.cipher.decrypt(&k.key_encrypted)?),
            (_, Some(system)) => Some(system.to_string()),
            (Some(k), None) => Some(state.cipher.decrypt(&k.key_encrypted)?),
            (None, None) => None,
        };
        if let Some(key) = chosen {
            out.insert(provider.to_string(), key);
        }
    }
    Ok(out)
}

/// The 404 for a provider without a key.
pub fn missing_key(provider: &str) -> AppError {
    AppError::not_found(format!("API key for provider '{provider}' not configured"))
}
