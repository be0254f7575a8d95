//! The model registry (origin-api.md §5): a static list, optionally checked against each provider's
//! model-list endpoint when a system key is configured, cached per provider in process with
//! single-flight refresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::config::Config;
use crate::metrics::Metrics;

pub const PROVIDERS: [&str; 4] = ["openai", "anthropic", "gemini", "mistral"];

/// One entry of the static registry.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    pub provider: &'static str,
    pub id: &'static str,
    pub name: &'static str,
    pub context_window: u64,
    pub max_tokens: u64,
}

macro_rules! m {
    ($p:literal, $id:literal, $name:literal, $cw:literal, $mt:literal) => {
        ModelInfo {
            provider: $p,
            id: $id,
            name: $name,
            context_window: $cw,
            max_tokens: $mt,
        }
    };
}

/// Appendix A, in order.
pub static STATIC_MODELS: &[ModelInfo] = &[
    m!("openai", "gpt-5.1", "GPT-5.1", 250000, 20000),
    m!("openai", "gpt-4.1", "GPT-4.1", 150000, 16384),
    m!("openai", "gpt-4.1-mini", "GPT-4.1 Mini", 150000, 8192),
    m!("openai", "gpt-4.1-nano", "GPT-4.1 Nano", 150000, 4096),
    m!("openai", "o3", "o3", 200000, 100000),
    m!("openai", "o3-mini", "o3-mini", 200000, 65536),
    m!("openai", "o3-pro", "o3-pro", 200000, 100000),
    m!("openai", "o4-mini", "o4-mini", 200000, 65536),
    m!(
        "openai",
        "o3-deep-research",
        "o3-deep-research",
        200000,
        100000
    ),
    m!(
        "openai",
        "o4-mini-deep-research",
        "o4-mini-deep-research",
        200000,
        65536
    ),
    m!("openai", "gpt-4o", "GPT-4o", 128000, 4096),
    m!("openai", "gpt-4o-mini", "GPT-4o Mini", 128000, 16384),
    m!("openai", "o1-preview", "o1 Preview", 128000, 32768),
    m!("openai", "o1-mini", "o1 Mini", 128000, 65536),
    m!("openai", "gpt-4-turbo", "GPT-4 Turbo", 128000, 4096),
    m!("openai", "gpt-4", "GPT-4", 8192, 4096),
    m!("openai", "gpt-3.5-turbo", "GPT-3.5 Turbo", 16385, 4096),
    m!(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        200000,
        8192
    ),
    m!(
        "anthropic",
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        200000,
        8192
    ),
    m!(
        "anthropic",
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        200000,
        8192
    ),
    m!(
        "anthropic",
        "claude-3-5-sonnet-20241022",
        "Claude 3.5 Sonnet",
        200000,
        8192
    ),
    m!(
        "anthropic",
        "claude-3-opus-20240229",
        "Claude 3 Opus",
        200000,
        4096
    ),
    m!(
        "anthropic",
        "claude-3-haiku-20240307",
        "Claude 3 Haiku",
        200000,
        4096
    ),
    m!(
        "gemini",
        "gemini-3-pro-preview",
        "Gemini 3 Pro (Preview)",
        2000000,
        8192
    ),
    m!("gemini", "gemini-2.5-pro", "Gemini 2.5 Pro", 2000000, 8192),
    m!(
        "gemini",
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        1000000,
        8192
    ),
    m!(
        "gemini",
        "gemini-2.5-flash-lite",
        "Gemini 2.5 Flash-Lite",
        1000000,
        8192
    ),
    m!(
        "gemini",
        "gemini-2.0-flash-exp",
        "Gemini 2.0 Flash (Experimental)",
        1000000,
        8192
    ),
    m!("gemini", "gemini-1.5-pro", "Gemini 1.5 Pro", 2000000, 8192),
    m!(
        "gemini",
        "gemini-1.5-flash",
        "Gemini 1.5 Flash",
        1000000,
        8192
    ),
    m!("gemini", "gemini-pro", "Gemini Pro", 32760, 2048),
    m!(
        "gemini",
        "gemini-pro-vision",
        "Gemini Pro Vision",
        16384,
        2048
    ),
    m!(
        "mistral",
        "mistral-large-latest",
        "Mistral Large",
        128000,
        4096
    ),
    m!(
        "mistral",
        "mistral-medium-latest",
        "Mistral Medium",
        32000,
        4096
    ),
    m!(
        "mistral",
        "mistral-small-latest",
        "Mistral Small",
        32000,
        4096
    ),
];

/// A cached provider list.
#[derive(Debug, Clone)]
pub struct Entry {
    pub models: Vec<Value>,
    pub expires_at: Instant,
}

/// Where and how to check a provider's list.
#[derive(Debug, Clone)]
struct Upstream {
    base_url: String,
    key: String,
}

#[derive(Debug)]
pub struct ModelRegistry {
    entries: RwLock<HashMap<&'static str, Arc<Entry>>>,
    /// One refresh per provider at a time.
    refresh: HashMap<&'static str, tokio::sync::Mutex<()>>,
    upstream: HashMap<&'static str, Upstream>,
    ttl: Duration,
    verified_ttl: Duration,
    /// Lifetime of an entry whose provider check failed.
    failure_ttl: Duration,
    upstream_calls: HashMap<&'static str, AtomicU64>,
    metrics: Arc<Metrics>,
}

impl ModelRegistry {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> ModelRegistry {
        let p = &config.providers;
        let mut upstream = HashMap::new();
        if p.verify_model_lists {
            for (provider, base) in [
                ("openai", &p.openai_base_url),
                ("gemini", &p.gemini_base_url),
                ("mistral", &p.mistral_base_url),
            ] {
                if let Some(key) = config.system_key(provider) {
                    upstream.insert(
                        provider,
                        Upstream {
                            base_url: base.trim_end_matches('/').to_string(),
                            key: key.to_string(),
                        },
                    );
                }
            }
        }
        ModelRegistry {
            entries: RwLock::new(HashMap::new()),
            refresh: PROVIDERS
                .iter()
                .map(|p| (*p, tokio::sync::Mutex::new(())))
                .collect(),
            upstream,
            ttl: Duration::from_secs(config.cache.model_registry_ttl_secs),
            verified_ttl: Duration::from_secs(config.cache.model_registry_verified_ttl_secs),
            failure_ttl: Duration::from_millis(config.cache.model_registry_failure_ttl_ms),
            upstream_calls: PROVIDERS.iter().map(|p| (*p, AtomicU64::new(0))).collect(),
            metrics,
        }
    }

    fn fresh(&self, provider: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .get(provider)
            .filter(|e| e.expires_at > Instant::now())
            .cloned()
    }

    /// The provider's list, refreshed (single-flight) when missing or expired.
    pub async fn provider(&self, http: &reqwest::Client, provider: &'static str) -> Arc<Entry> {
        if let Some(e) = self.fresh(provider) {
            self.metrics.model_registry_hits.inc();
            return e;
        }
        self.metrics.model_registry_misses.inc();
        let _guard = match self.refresh.get(provider) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        if let Some(e) = self.fresh(provider) {
            return e;
        }
        let entry = Arc::new(self.build(http, provider).await);
        self.entries.write().insert(provider, entry.clone());
        entry
    }

    async fn build(&self, http: &reqwest::Client, provider: &'static str) -> Entry {
        let statics = STATIC_MODELS.iter().filter(|m| m.provider == provider);
        // `None`: no check (no system key). `Some(None)`: the check failed or returned no ids.
        let checked: Option<Option<Vec<String>>> = match self.upstream.get(provider) {
            Some(up) => {
                self.upstream_calls[provider].fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .model_list_calls
                    .with_label_values(&[provider])
                    .inc();
                Some(match fetch_ids(http, provider, up).await {
                    Ok(ids) if !ids.is_empty() => Some(ids),
                    Ok(_) => {
                        tracing::warn!(
                            provider,
                            "model list check returned no ids; using the static list"
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!(provider, error = %e, "model list check failed; using the static list");
                        None
                    }
                })
            }
            None => None,
        };
        // A failed check is retried after the short failure TTL: a provider outage or a bad key
        // must not pin the unverified list for the whole unverified TTL.
        let ttl = match &checked {
            Some(Some(_)) => self.verified_ttl,
            Some(None) => self.failure_ttl.min(self.ttl),
            None => self.ttl,
        };
        let available = checked.flatten();
        let models = statics
            .map(|m| {
                let mut v = json!({
                    "id": m.id, "name": m.name, "provider": m.provider,
                    "contextWindow": m.context_window, "maxTokens": m.max_tokens,
                });
                if let Some(ids) = &available {
                    v["available"] = json!(ids.iter().any(|i| i == m.id));
                }
                v
            })
            .collect();
        Entry {
            models,
            expires_at: Instant::now() + ttl,
        }
    }

    /// The combined list for `providers` (in the given order) and the earliest expiry among them.
    pub async fn list(
        &self,
        http: &reqwest::Client,
        providers: &[&'static str],
    ) -> (Vec<Value>, Instant) {
        let mut models = Vec::new();
        let mut earliest = Instant::now() + self.ttl;
        for p in providers {
            let e = self.provider(http, p).await;
            earliest = earliest.min(e.expires_at);
            models.extend(e.models.iter().cloned());
        }
        (models, earliest)
    }

    /// Empties the cache; the next request rebuilds it.
    pub fn clear(&self) {
        self.entries.write().clear();
    }

    pub fn stats(&self) -> Value {
        // The registry's own counters (`metrics` belongs to this registry's `AppState`).
        let hits = self.metrics.model_registry_hits.get();
        let misses = self.metrics.model_registry_misses.get();
        let total = hits + misses;
        let calls: serde_json::Map<String, Value> = self
            .upstream_calls
            .iter()
            .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
            .map(|(p, n)| (p.to_string(), json!(n.load(Ordering::Relaxed))))
            .collect();
        json!({
            "entries": self.entries.read().len(),
            "hits": hits,
            "misses": misses,
            "hit_rate": if total == 0 { 0.0 } else { hits as f64 / total as f64 },
            "upstream_list_calls": calls,
        })
    }
}

/// Calls the provider's model list (10 s timeout, two retries on 429/5xx) and extracts ids.
async fn fetch_ids(
    http: &reqwest::Client,
    provider: &str,
    up: &Upstream,
) -> anyhow::Result<Vec<String>> {
    let url = format!("{}/models", up.base_url);
    let mut attempt = 0;
    let body: Value = loop {
        let req = http.get(&url).timeout(Duration::from_secs(10));
        let req = if provider == "gemini" {
            req.header("x-goog-api-key", &up.key)
        } else {
            req.bearer_auth(&up.key)
        };
        let resp = req.send().await?;
        let status = resp.status();
        if (status.as_u16() == 429 || status.is_server_error()) && attempt < 2 {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            continue;
        }
        if !status.is_success() {
            anyhow::bail!("{provider} model list answered {status}");
        }
        break resp.json().await?;
    };
    let ids = match provider {
        "gemini" => body["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                m["supportedGenerationMethods"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "generateContent"))
            })
            .filter_map(|m| m["name"].as_str())
            .map(|n| n.trim_start_matches("models/").to_string())
            .collect(),
        _ => body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .filter(|id| provider != "openai" || id.contains("gpt") || id.starts_with('o'))
            .map(str::to_string)
            .collect(),
    };
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_registry_has_35_models_in_provider_blocks() {
        assert_eq!(STATIC_MODELS.len(), 35);
        let count = |p| STATIC_MODELS.iter().filter(|m| m.provider == p).count();
        assert_eq!(
            (
                count("openai"),
                count("anthropic"),
                count("gemini"),
                count("mistral")
            ),
            (17, 6, 9, 3)
        );
    }
}
