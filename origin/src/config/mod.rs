//! Configuration: a TOML file, then environment variables (the names of origin-api.md Appendix B),
//! then command-line flags, each layer overriding the one before. `Config::validate` reports every
//! problem at once.
//!
//! - this file: the [`Config`] type and its sections (the file's shape), [`Overrides`] and
//!   [`ConfigErrors`], and small accessors;
//! - `defaults`: the built-in values and the test preset [`Config::for_database`];
//! - `load`: reading the file, the environment (`Config::apply_env`) and the command-line flags;
//! - `validate`: `Config::validate`, every problem reported together.

mod defaults;
mod load;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Every configuration problem found, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

/// The origin's configuration (the file's shape: every section and key is optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP listener binds (`PORT` sets the port on 0.0.0.0).
    pub listen: SocketAddr,
    /// Address of the operations listener serving `/metrics` and the detailed `/health`
    /// (`METRICS_LISTEN`, `--metrics-listen`). Keep it off the public interface.
    pub metrics_listen: SocketAddr,
    /// Shown by `/health` (`APP_ENV`, falling back to `FLASK_ENV`).
    pub environment: String,
    /// `LOG_LEVEL`, or a full `tracing` filter.
    pub log_level: String,
    /// A built single-page app to serve (`STATIC_DIR`, `--static-dir`): `index.html` at `/` and
    /// for unknown non-API paths, hashed assets under `/static/`. Without it `GET /` answers a
    /// small page naming this server.
    pub static_dir: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub rate_limit: RateLimitConfig,
    pub cache: CacheConfig,
    pub providers: ProvidersConfig,
    pub bus: BusConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`.
    pub url: String,
    /// Idle connections kept open (`DB_POOL_SIZE`; bb8 `min_idle`).
    pub pool_min_idle: u32,
    /// Hard upper bound on connections (`DB_POOL_SIZE + DB_MAX_OVERFLOW`; bb8 `max_size`).
    pub pool_max_size: u32,
    /// How long a request waits for a connection before it gets a 503 (`DB_POOL_TIMEOUT`, seconds).
    pub pool_timeout_ms: u64,
    pub max_lifetime_secs: u64,
    pub idle_timeout_secs: u64,
    /// Runs the embedded migrations when the server starts (`RUN_MIGRATIONS_ON_START`).
    pub run_migrations_on_start: bool,
    /// Statements slower than this are logged at WARN (`SLOW_QUERY_THRESHOLD_MS`).
    pub slow_query_threshold_ms: u64,
    /// Timeout of the `/health` database round trip.
    pub health_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `SECRET_KEY`: unused by this origin, required for config compatibility with the original.
    pub secret_key: String,
    /// `JWT_SECRET_KEY` (HS256).
    pub jwt_secret_key: String,
    /// `ENCRYPTION_KEY`: Fernet key (base64url of 32 bytes) for provider keys at rest.
    pub encryption_key: String,
    pub access_token_expires_minutes: i64,
    pub refresh_token_expires_days: i64,
    /// Adds `Secure` to the auth cookies (`JWT_COOKIE_SECURE`).
    pub jwt_cookie_secure: bool,
    pub allow_open_registration: bool,
    pub registration_token: Option<String>,
    /// log2 of the scrypt cost N for new password hashes (15 = Werkzeug's 32768).
    pub password_hash_log_n: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Allowed CORS origins (`CORS_ORIGINS`, comma-separated in the environment).
    pub cors_origins: Vec<String>,
    /// Request body cap in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Requests slower than this are logged at WARN (`SLOW_REQUEST_THRESHOLD_MS`).
    pub slow_request_threshold_ms: u64,
    /// Peers whose `X-Forwarded-For` is trusted (`TRUSTED_PROXY`, comma-separated).
    pub trusted_proxies: Vec<IpAddr>,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace_ms: u64,
    /// Longest time to receive a whole request body (`BODY_READ_TIMEOUT_MS`); slower bodies get
    /// 408.
    pub body_read_timeout_ms: u64,
    /// Budget of one handler (`HANDLER_TIMEOUT_MS`); a handler that exceeds it gets 504. Chat,
    /// compare and their SSE streams are exempt (provider calls have their own timeouts).
    pub handler_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// `API_RATE_LIMIT`, e.g. `60 per minute`.
    pub api: String,
    pub register: String,
    /// Login attempts per client address.
    pub login: String,
    /// Login attempts per username, whatever the address (`LOGIN_USERNAME_RATE_LIMIT`): slows
    /// password guessing spread over many addresses.
    pub login_per_username: String,
    pub logout: String,
    pub refresh: String,
    /// Most (route, client) windows kept in memory (`RATE_LIMIT_MAX_KEYS`); beyond it the
    /// oldest windows are evicted.
    pub max_keys: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Upper bound of `LLMSelect-Cache-Control: max-age` on per-user GETs
    /// (`CDN_PER_USER_MAX_AGE_SECS`).
    pub cdn_per_user_max_age_secs: u64,
    pub model_registry_ttl_secs: u64,
    pub model_registry_verified_ttl_secs: u64,
    /// How long a failed provider model-list check is cached before it is retried
    /// (`MODEL_REGISTRY_FAILURE_TTL_MS`); a success keeps `model_registry_verified_ttl_secs`.
    pub model_registry_failure_ttl_ms: u64,
    /// Reported by `/admin/cache/stats` as the cache threshold (`CACHE_MAX_ENTRIES`).
    pub cache_max_entries: u64,
}

/// LLM provider settings. System keys come from the environment only in practice; the file may set
/// them for local experiments.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub openai_api_key: Option<String>,
    pub anthropic_api_key: Option<String>,
    /// `GEMINI_API_KEY` or `GOOGLE_API_KEY`.
    pub gemini_api_key: Option<String>,
    pub mistral_api_key: Option<String>,
    pub openai_base_url: String,
    pub anthropic_base_url: String,
    pub gemini_base_url: String,
    pub mistral_base_url: String,
    pub gateway_base_url: Option<String>,
    pub gateway_api_key: Option<String>,
    pub llm_max_tokens: u32,
    /// Budget of the conversation memory sent by `/chat` and `/chat/stream`, in characters of
    /// message content (`CHAT_HISTORY_MAX_CHARS`; about 4 characters per token): the oldest
    /// messages are dropped first, the newest message is always sent, even alone over budget.
    pub chat_history_max_chars: u32,
    /// Check the static model list against the providers' model-list endpoints when a system key is
    /// configured (§5.2). Off means "static list only".
    pub verify_model_lists: bool,
    /// Interval of `: keep-alive` comments on the SSE endpoints (`SSE_KEEPALIVE_MS`).
    pub sse_keepalive_ms: u64,
    /// Longest wait for any byte of a provider reply in chat and compare calls (`LLM_READ_TIMEOUT_MS`).
    pub llm_read_timeout_ms: u64,
}

/// The invalidation bus of a fleet (NATS JetStream): the transactional outbox and its relay.
/// Without `url` the origin is a single node: no outbox row is written and no relay runs. The
/// section is the proxy's own (crate `llmselect-bus`), so both are configured the same way.
pub use llmselect_bus::BusConfig;

/// Settings given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub run_migrations_on_start: Option<bool>,
    pub static_dir: Option<PathBuf>,
}

impl Config {
    /// `environment = "production"` (`APP_ENV`), case-insensitive: development secrets are refused.
    pub fn is_production(&self) -> bool {
        self.environment.trim().eq_ignore_ascii_case("production")
    }

    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.database.pool_timeout_ms)
    }

    /// The system key configured for `provider`, if non-blank.
    pub fn system_key(&self, provider: &str) -> Option<&str> {
        let p = &self.providers;
        let key = match provider {
            "openai" => &p.openai_api_key,
            "anthropic" => &p.anthropic_api_key,
            "gemini" => &p.gemini_api_key,
            "mistral" => &p.mistral_api_key,
            _ => &None,
        };
        key.as_deref().map(str::trim).filter(|k| !k.is_empty())
    }
}
