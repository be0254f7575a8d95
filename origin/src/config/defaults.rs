//! Built-in values of every setting, and the preset for tests and tools.

use std::net::SocketAddr;

use super::{
    AuthConfig, BusConfig, CacheConfig, Config, DatabaseConfig, HttpConfig, ProvidersConfig,
    RateLimitConfig,
};

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 3044)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            environment: "production".into(),
            log_level: "info".into(),
            static_dir: None,
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cache: CacheConfig::default(),
            providers: ProvidersConfig::default(),
            bus: BusConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            pool_min_idle: 10,
            pool_max_size: 20,
            pool_timeout_ms: 5_000,
            max_lifetime_secs: 3_600,
            idle_timeout_secs: 600,
            run_migrations_on_start: true,
            slow_query_threshold_ms: 100,
            health_timeout_ms: 1_000,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret_key: String::new(),
            jwt_secret_key: String::new(),
            encryption_key: String::new(),
            access_token_expires_minutes: 15,
            refresh_token_expires_days: 7,
            jwt_cookie_secure: false,
            allow_open_registration: false,
            registration_token: None,
            password_hash_log_n: 15,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_origins: vec![
                "http://localhost:3044".into(),
                "http://localhost:3000".into(),
            ],
            max_body_bytes: 1 << 20,
            slow_request_threshold_ms: 500,
            trusted_proxies: Vec::new(),
            shutdown_grace_ms: 5_000,
            body_read_timeout_ms: 10_000,
            handler_timeout_ms: 15_000,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            api: "60 per minute".into(),
            register: "5 per minute".into(),
            login: "10 per minute".into(),
            login_per_username: "20 per hour".into(),
            logout: "20 per minute".into(),
            refresh: "20 per minute".into(),
            max_keys: crate::ratelimit::DEFAULT_MAX_KEYS,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            cdn_per_user_max_age_secs: 300,
            model_registry_ttl_secs: 86_400,
            model_registry_verified_ttl_secs: 3_600,
            model_registry_failure_ttl_ms: 60_000,
            cache_max_entries: 1_000,
        }
    }
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            openai_api_key: None,
            anthropic_api_key: None,
            gemini_api_key: None,
            mistral_api_key: None,
            openai_base_url: "https://api.openai.com/v1".into(),
            anthropic_base_url: "https://api.anthropic.com".into(),
            gemini_base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
            mistral_base_url: "https://api.mistral.ai/v1".into(),
            gateway_base_url: None,
            gateway_api_key: None,
            llm_max_tokens: 1000,
            // About 6,000 tokens: with the 1,000 tokens of an answer it fits the smallest context
            // window of the registry (GPT-4, 8,192 tokens).
            chat_history_max_chars: 24_000,
            verify_model_lists: true,
            sse_keepalive_ms: 15_000,
            llm_read_timeout_ms: 30_000,
        }
    }
}

/// A Fernet key for development and tests only (base64url of 32 fixed bytes).
pub(super) const DEV_FERNET_KEY: &str = "ZGV2LW9ubHktZmVybmV0LWtleS1ub3QtZm9yLXByb2Q=";
/// The development secrets shipped in `config/origin.toml` and used by [`Config::for_database`].
pub(super) const DEV_SECRET_KEY: &str = "dev-only-secret-key";
pub(super) const DEV_JWT_SECRET_KEY: &str = "dev-only-jwt-secret-key-do-not-use-in-production";

impl Config {
    /// A configuration for tests and tools: the given database, dev-only secrets, a loopback
    /// listener on an ephemeral port, a small pool, cheap password hashing, no rate limits and no
    /// outbound model-list checks.
    pub fn for_database(url: &str) -> Config {
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            environment: "test".into(),
            ..Config::default()
        };
        config.database.url = url.to_string();
        config.database.pool_min_idle = 0;
        config.database.pool_max_size = 4;
        config.database.pool_timeout_ms = 2_000;
        config.auth.secret_key = DEV_SECRET_KEY.into();
        config.auth.jwt_secret_key = DEV_JWT_SECRET_KEY.into();
        config.auth.encryption_key = DEV_FERNET_KEY.into();
        config.auth.allow_open_registration = true;
        config.auth.password_hash_log_n = 4;
        config.rate_limit.enabled = false;
        config.providers.verify_model_lists = false;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_config_is_valid() {
        Config::for_database("postgres://postgres@127.0.0.1/x")
            .validate()
            .unwrap();
    }
}
