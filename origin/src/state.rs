//! Shared application state, cloned into every connection and request.

use std::sync::Arc;

use crate::auth::jwt::JwtKeys;
use crate::config::Config;
use crate::crypto::KeyCipher;
use crate::db::{Pool, QueryObserver};
use crate::metrics::Metrics;
use crate::model_registry::ModelRegistry;
use crate::outbox::Outbox;
use crate::ratelimit::{RateLimiter, RateSpec};

/// Everything a handler may need. Cheap to clone (reference-counted parts).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub metrics: Arc<Metrics>,
    pub models: Arc<ModelRegistry>,
    pub limiter: Arc<RateLimiter>,
    pub rates: Arc<Rates>,
    pub cipher: Arc<KeyCipher>,
    pub jwt: Arc<JwtKeys>,
    /// Outbound HTTP (provider model lists; LLM calls).
    pub http: reqwest::Client,
    /// Provider calls of the chat and compare endpoints.
    pub llm: Arc<crate::llm::LlmService>,
    /// The outbox of fleet invalidations (writes nothing without a bus).
    pub outbox: Arc<Outbox>,
}

/// Parsed rate limits of the configuration.
#[derive(Debug, Clone)]
pub struct Rates {
    pub api: RateSpec,
    pub register: RateSpec,
    pub login: RateSpec,
    pub login_per_username: RateSpec,
    pub logout: RateSpec,
    pub refresh: RateSpec,
}

impl AppState {
    /// A fresh statement counter for one request or background task, with the configured
    /// slow-query threshold.
    pub fn query_observer(&self) -> QueryObserver {
        QueryObserver::new(
            self.metrics.clone(),
            std::time::Duration::from_millis(self.config.database.slow_query_threshold_ms),
        )
    }

    pub fn new(config: Config, pool: Pool, metrics: Arc<Metrics>) -> anyhow::Result<AppState> {
        let r = &config.rate_limit;
        let parse = |s: &str| s.parse::<RateSpec>().map_err(anyhow::Error::msg);
        let rates = Rates {
            api: parse(&r.api)?,
            register: parse(&r.register)?,
            login: parse(&r.login)?,
            login_per_username: parse(&r.login_per_username)?,
            logout: parse(&r.logout)?,
            refresh: parse(&r.refresh)?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(AppState {
            cipher: Arc::new(KeyCipher::new(&config.auth.encryption_key)?),
            llm: Arc::new(crate::llm::LlmService::from_config(
                &config,
                metrics.clone(),
            )?),
            jwt: Arc::new(JwtKeys::new(&config.auth.jwt_secret_key)),
            models: Arc::new(ModelRegistry::new(&config, metrics.clone())),
            limiter: Arc::new(RateLimiter::new(config.rate_limit.max_keys)),
            outbox: Arc::new(Outbox::new(config.bus.enabled())),
            rates: Arc::new(rates),
            config: Arc::new(config),
            pool,
            metrics,
            http,
        })
    }
}
