//! Configuration: a TOML file, then environment variables (the names of origin-api.md Appendix B),
//! then command-line flags, each layer overriding the one before. `Config::validate` reports every
//! problem at once.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::ratelimit::RateSpec;

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
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub rate_limit: RateLimitConfig,
    pub cache: CacheConfig,
    pub providers: ProvidersConfig,
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
    /// Check the static model list against the providers' model-list endpoints when a system key is
    /// configured (§5.2). Off means "static list only".
    pub verify_model_lists: bool,
    /// Interval of `: keep-alive` comments on the SSE endpoints (`SSE_KEEPALIVE_MS`).
    pub sse_keepalive_ms: u64,
    /// Longest wait for any byte of a provider reply in chat and compare calls (`LLM_READ_TIMEOUT_MS`).
    pub llm_read_timeout_ms: u64,
}

/// Settings given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub run_migrations_on_start: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 3044)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            environment: "production".into(),
            log_level: "info".into(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cache: CacheConfig::default(),
            providers: ProvidersConfig::default(),
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
            verify_model_lists: true,
            sse_keepalive_ms: 15_000,
            llm_read_timeout_ms: 30_000,
        }
    }
}

/// A Fernet key for development and tests only (base64url of 32 fixed bytes).
const DEV_FERNET_KEY: &str = "ZGV2LW9ubHktZmVybmV0LWtleS1ub3QtZm9yLXByb2Q=";
/// The development secrets shipped in `config/origin.toml` and used by [`Config::for_database`].
const DEV_SECRET_KEY: &str = "dev-only-secret-key";
const DEV_JWT_SECRET_KEY: &str = "dev-only-jwt-secret-key-do-not-use-in-production";

/// Every secret value that is public knowledge (shipped in this repository or a built-in default):
/// refused in production.
const KNOWN_DEV_SECRETS: &[&str] = &[DEV_SECRET_KEY, DEV_JWT_SECRET_KEY, DEV_FERNET_KEY, ""];

/// The shortest secret accepted in production, in bytes.
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

impl Config {
    /// Layers the file (when given), the process environment and `overrides`, then validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
                Config::from_toml(&text)
                    .map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?
            }
            None => Config::default(),
        };
        let mut errors = config.apply_env(|name| std::env::var(name).ok());
        config.apply_overrides(overrides);
        if let Err(ConfigErrors(more)) = config.validate() {
            errors.extend(more);
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses a TOML document (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

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

    /// Applies environment variables read through `var`; returns parse errors (for example a
    /// non-numeric `PORT`). Tests pass a closure over a map instead of touching the process
    /// environment.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut errors = Vec::new();
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        fn parse<T: std::str::FromStr>(name: &str, v: &str, errors: &mut Vec<String>) -> Option<T>
        where
            T::Err: std::fmt::Display,
        {
            match v.trim().parse() {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(format!("{name}={v:?}: {e}"));
                    None
                }
            }
        }
        fn parse_bool(name: &str, v: &str, errors: &mut Vec<String>) -> Option<bool> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => {
                    errors.push(format!("{name}={v:?}: not a boolean"));
                    None
                }
            }
        }
        macro_rules! num {
            ($name:literal, $field:expr) => {
                if let Some(v) = get($name) {
                    if let Some(n) = parse($name, &v, &mut errors) {
                        $field = n;
                    }
                }
            };
        }
        macro_rules! boolean {
            ($name:literal, $field:expr) => {
                if let Some(v) = get($name) {
                    if let Some(b) = parse_bool($name, &v, &mut errors) {
                        $field = b;
                    }
                }
            };
        }
        macro_rules! string {
            ($name:literal, $field:expr) => {
                if let Some(v) = get($name) {
                    $field = v;
                }
            };
        }
        macro_rules! opt_string {
            ($name:literal, $field:expr) => {
                if let Some(v) = get($name) {
                    $field = Some(v);
                }
            };
        }

        if let Some(v) = get("PORT") {
            if let Some(port) = parse::<u16>("PORT", &v, &mut errors) {
                self.listen.set_port(port);
            }
        }
        if let Some(v) = get("METRICS_LISTEN") {
            if let Some(addr) = parse("METRICS_LISTEN", &v, &mut errors) {
                self.metrics_listen = addr;
            }
        }
        if let Some(v) = get("APP_ENV").or_else(|| get("FLASK_ENV")) {
            self.environment = v;
        }
        string!("LOG_LEVEL", self.log_level);
        string!("DATABASE_URL", self.database.url);
        num!("DB_POOL_SIZE", self.database.pool_min_idle);
        if let Some(v) = get("DB_MAX_OVERFLOW") {
            if let Some(n) = parse::<u32>("DB_MAX_OVERFLOW", &v, &mut errors) {
                self.database.pool_max_size = self.database.pool_min_idle + n;
            }
        }
        if let Some(v) = get("DB_POOL_TIMEOUT") {
            if let Some(secs) = parse::<f64>("DB_POOL_TIMEOUT", &v, &mut errors) {
                self.database.pool_timeout_ms = (secs * 1000.0) as u64;
            }
        }
        boolean!(
            "RUN_MIGRATIONS_ON_START",
            self.database.run_migrations_on_start
        );
        num!(
            "SLOW_QUERY_THRESHOLD_MS",
            self.database.slow_query_threshold_ms
        );
        string!("SECRET_KEY", self.auth.secret_key);
        string!("JWT_SECRET_KEY", self.auth.jwt_secret_key);
        string!("ENCRYPTION_KEY", self.auth.encryption_key);
        num!(
            "ACCESS_TOKEN_EXPIRES_MINUTES",
            self.auth.access_token_expires_minutes
        );
        num!(
            "REFRESH_TOKEN_EXPIRES_DAYS",
            self.auth.refresh_token_expires_days
        );
        boolean!("JWT_COOKIE_SECURE", self.auth.jwt_cookie_secure);
        boolean!("ALLOW_OPEN_REGISTRATION", self.auth.allow_open_registration);
        opt_string!("REGISTRATION_TOKEN", self.auth.registration_token);
        num!("PASSWORD_HASH_LOG_N", self.auth.password_hash_log_n);
        if let Some(v) = get("CORS_ORIGINS") {
            self.http.cors_origins = split_list(&v);
        }
        num!("MAX_BODY_BYTES", self.http.max_body_bytes);
        num!(
            "SLOW_REQUEST_THRESHOLD_MS",
            self.http.slow_request_threshold_ms
        );
        if let Some(v) = get("TRUSTED_PROXY") {
            self.http.trusted_proxies = split_list(&v)
                .iter()
                .filter_map(|s| parse("TRUSTED_PROXY", s, &mut errors))
                .collect();
        }
        boolean!("RATE_LIMIT_ENABLED", self.rate_limit.enabled);
        string!("API_RATE_LIMIT", self.rate_limit.api);
        string!(
            "LOGIN_USERNAME_RATE_LIMIT",
            self.rate_limit.login_per_username
        );
        num!("RATE_LIMIT_MAX_KEYS", self.rate_limit.max_keys);
        num!(
            "CDN_PER_USER_MAX_AGE_SECS",
            self.cache.cdn_per_user_max_age_secs
        );
        num!(
            "MODEL_REGISTRY_TTL_SECS",
            self.cache.model_registry_ttl_secs
        );
        num!(
            "MODEL_REGISTRY_VERIFIED_TTL_SECS",
            self.cache.model_registry_verified_ttl_secs
        );
        num!("CACHE_MAX_ENTRIES", self.cache.cache_max_entries);
        opt_string!("OPENAI_API_KEY", self.providers.openai_api_key);
        opt_string!("ANTHROPIC_API_KEY", self.providers.anthropic_api_key);
        opt_string!("GOOGLE_API_KEY", self.providers.gemini_api_key);
        opt_string!("GEMINI_API_KEY", self.providers.gemini_api_key);
        opt_string!("MISTRAL_API_KEY", self.providers.mistral_api_key);
        string!("OPENAI_BASE_URL", self.providers.openai_base_url);
        string!("ANTHROPIC_BASE_URL", self.providers.anthropic_base_url);
        string!("GEMINI_BASE_URL", self.providers.gemini_base_url);
        string!("MISTRAL_BASE_URL", self.providers.mistral_base_url);
        opt_string!("LLM_GATEWAY_BASE_URL", self.providers.gateway_base_url);
        opt_string!("LLM_GATEWAY_API_KEY", self.providers.gateway_api_key);
        num!("LLM_MAX_TOKENS", self.providers.llm_max_tokens);
        num!("SSE_KEEPALIVE_MS", self.providers.sse_keepalive_ms);
        num!("LLM_READ_TIMEOUT_MS", self.providers.llm_read_timeout_ms);
        errors
    }

    /// Applies command-line flags (the top layer).
    pub fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(listen) = overrides.listen {
            self.listen = listen;
        }
        if let Some(listen) = overrides.metrics_listen {
            self.metrics_listen = listen;
        }
        if let Some(url) = &overrides.database_url {
            self.database.url = url.clone();
        }
        if let Some(run) = overrides.run_migrations_on_start {
            self.database.run_migrations_on_start = run;
        }
    }

    /// Checks the whole configuration and returns every problem found.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        if self.metrics_listen.port() != 0 && self.metrics_listen == self.listen {
            errors.push(format!(
                "metrics_listen ({}) must differ from listen: /metrics and the detailed /health \
                 are kept off the API port",
                self.metrics_listen
            ));
        }
        let d = &self.database;
        if d.url.trim().is_empty() {
            errors.push("database.url (DATABASE_URL) is required".to_string());
        } else if d.url.parse::<tokio_postgres::Config>().is_err() {
            errors.push("database.url (DATABASE_URL) is not a valid PostgreSQL URL".to_string());
        }
        if d.pool_max_size == 0 {
            errors.push("database.pool_max_size must be at least 1".to_string());
        }
        if d.pool_min_idle > d.pool_max_size {
            errors.push(format!(
                "database.pool_min_idle ({}) exceeds database.pool_max_size ({})",
                d.pool_min_idle, d.pool_max_size
            ));
        }
        if d.pool_timeout_ms == 0 {
            errors.push("database.pool_timeout_ms must be positive".to_string());
        }
        if d.health_timeout_ms == 0 {
            errors.push("database.health_timeout_ms must be positive".to_string());
        }
        let a = &self.auth;
        if a.secret_key.trim().is_empty() {
            errors.push("auth.secret_key (SECRET_KEY) is required".to_string());
        }
        if a.jwt_secret_key.trim().is_empty() {
            errors.push("auth.jwt_secret_key (JWT_SECRET_KEY) is required".to_string());
        }
        if a.encryption_key.trim().is_empty() {
            errors.push("auth.encryption_key (ENCRYPTION_KEY) is required".to_string());
        } else if fernet::Fernet::new(a.encryption_key.trim()).is_none() {
            errors.push(
                "auth.encryption_key (ENCRYPTION_KEY) is not a valid Fernet key (base64url of 32 bytes)"
                    .to_string(),
            );
        }
        if self.is_production() {
            errors.extend(production_secret_errors(a));
        }
        if a.access_token_expires_minutes <= 0 {
            errors.push("auth.access_token_expires_minutes must be positive".to_string());
        }
        if a.refresh_token_expires_days <= 0 {
            errors.push("auth.refresh_token_expires_days must be positive".to_string());
        }
        if !(1..=20).contains(&a.password_hash_log_n) {
            errors.push("auth.password_hash_log_n must be within 1..=20".to_string());
        }
        if self.http.max_body_bytes == 0 {
            errors.push("http.max_body_bytes must be positive".to_string());
        }
        for origin in &self.http.cors_origins {
            if url::Url::parse(origin).is_err() {
                errors.push(format!("http.cors_origins: {origin:?} is not a URL"));
            }
        }
        let r = &self.rate_limit;
        for (name, spec) in [
            ("api", &r.api),
            ("register", &r.register),
            ("login", &r.login),
            ("login_per_username", &r.login_per_username),
            ("logout", &r.logout),
            ("refresh", &r.refresh),
        ] {
            if let Err(e) = spec.parse::<RateSpec>() {
                errors.push(format!("rate_limit.{name}: {e}"));
            }
        }
        if r.max_keys == 0 {
            errors.push("rate_limit.max_keys must be at least 1".to_string());
        }
        if self.cache.model_registry_ttl_secs == 0
            || self.cache.model_registry_verified_ttl_secs == 0
        {
            errors.push("cache.model_registry_*_ttl_secs must be positive".to_string());
        }
        let p = &self.providers;
        for (name, base) in [
            ("openai_base_url", &p.openai_base_url),
            ("anthropic_base_url", &p.anthropic_base_url),
            ("gemini_base_url", &p.gemini_base_url),
            ("mistral_base_url", &p.mistral_base_url),
        ] {
            if url::Url::parse(base).is_err() {
                errors.push(format!("providers.{name}: {base:?} is not a URL"));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            errors.push(format!(
                "log_level: {:?} is not a valid filter",
                self.log_level
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

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

/// In production: each secret must not be a known development value and must be at least
/// [`MIN_PRODUCTION_SECRET_BYTES`] long. (An empty secret is already reported as missing.)
fn production_secret_errors(a: &AuthConfig) -> Vec<String> {
    let mut errors = Vec::new();
    for (field, env, value) in [
        ("secret_key", "SECRET_KEY", &a.secret_key),
        ("jwt_secret_key", "JWT_SECRET_KEY", &a.jwt_secret_key),
        ("encryption_key", "ENCRYPTION_KEY", &a.encryption_key),
    ] {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if KNOWN_DEV_SECRETS.contains(&value) {
            errors.push(format!(
                "auth.{field} ({env}) is a development value shipped with llmselect-origin; \
                 set a random secret in production"
            ));
        } else if value.len() < MIN_PRODUCTION_SECRET_BYTES {
            errors.push(format!(
                "auth.{field} ({env}) is {} bytes; production needs at least \
                 {MIN_PRODUCTION_SECRET_BYTES}",
                value.len()
            ));
        }
    }
    errors
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn validate_reports_every_error_at_once() {
        let mut config = Config::default();
        config.database.pool_min_idle = 30;
        config.rate_limit.api = "lots".into();
        let errors = config.validate().unwrap_err().0;
        let joined = errors.join("\n");
        for needle in [
            "DATABASE_URL",
            "JWT_SECRET_KEY",
            "ENCRYPTION_KEY",
            "SECRET_KEY",
            "pool_min_idle",
            "rate_limit.api",
        ] {
            assert!(joined.contains(needle), "{needle} missing from {joined}");
        }
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let mut config = Config::from_toml(
            "listen = \"127.0.0.1:1\"\n[database]\nurl = \"postgres://a@h/db\"\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = HashMap::from([
            ("PORT", "4000"),
            ("DATABASE_URL", "postgres://b@h/db"),
            ("DB_POOL_SIZE", "3"),
            ("DB_MAX_OVERFLOW", "2"),
            ("CORS_ORIGINS", "http://a.test, http://b.test"),
        ]);
        let errors = config.apply_env(|k| env.get(k).map(|v| v.to_string()));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.listen.port(), 4000);
        assert_eq!(config.database.url, "postgres://b@h/db");
        assert_eq!(
            (config.database.pool_min_idle, config.database.pool_max_size),
            (3, 5)
        );
        assert_eq!(
            config.http.cors_origins,
            vec!["http://a.test", "http://b.test"]
        );
        config.apply_overrides(&Overrides {
            database_url: Some("postgres://c@h/db".into()),
            ..Default::default()
        });
        assert_eq!(config.database.url, "postgres://c@h/db");
    }

    #[test]
    fn metrics_listener_is_loopback_by_default_and_set_by_env_or_flag() {
        let mut config = Config::default();
        assert_eq!(config.metrics_listen, "127.0.0.1:9464".parse().unwrap());
        let errors = config.apply_env(|k| (k == "METRICS_LISTEN").then(|| "10.0.0.5:9100".into()));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.metrics_listen, "10.0.0.5:9100".parse().unwrap());
        config.apply_overrides(&Overrides {
            metrics_listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..Default::default()
        });
        assert_eq!(config.metrics_listen.port(), 9999);
        config.metrics_listen = config.listen;
        let errors = config.validate().unwrap_err().0;
        assert!(
            errors.iter().any(|e| e.starts_with("metrics_listen")),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_env_values_are_reported() {
        let mut config = Config::default();
        let errors = config.apply_env(|k| (k == "PORT").then(|| "eighty".to_string()));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("PORT="));
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        assert!(Config::from_toml("[database]\nurll = \"x\"\n").is_err());
    }

    #[test]
    fn shipped_config_files_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/");
        let dev = Config::from_toml(&std::fs::read_to_string(format!("{dir}origin.toml")).unwrap())
            .unwrap();
        dev.validate().unwrap();
        Config::from_toml(
            &std::fs::read_to_string(format!("{dir}origin.production.example.toml")).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn production_refuses_dev_and_short_secrets_all_at_once() {
        let mut config = Config::for_database("postgres://postgres@127.0.0.1/x");
        config.environment = "Production".into();
        let errors = config.validate().unwrap_err().0;
        let dev: Vec<_> = errors
            .iter()
            .filter(|e| e.contains("development value"))
            .collect();
        assert_eq!(dev.len(), 3, "{errors:?}");
        for env in ["(SECRET_KEY)", "(JWT_SECRET_KEY)", "(ENCRYPTION_KEY)"] {
            assert!(dev.iter().any(|e| e.contains(env)), "{env}: {errors:?}");
        }

        config.auth.secret_key = "short".into();
        config.auth.jwt_secret_key = "x".repeat(31);
        config.auth.encryption_key = "bGxtc2VsZWN0LXRlc3QtZmVybmV0LWtleS0zMmJ5dGU=".into();
        let errors = config.validate().unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("(SECRET_KEY) is 5 bytes"), "{errors:?}");
        assert!(
            errors[1].contains("(JWT_SECRET_KEY) is 31 bytes"),
            "{errors:?}"
        );

        config.auth.secret_key = "s".repeat(32);
        config.auth.jwt_secret_key = "j".repeat(32);
        config.validate().unwrap();
        // Outside production the dev values stay usable.
        Config::for_database("postgres://postgres@127.0.0.1/x")
            .validate()
            .unwrap();
    }

    #[test]
    fn the_shipped_dev_config_is_refused_in_production() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/");
        let mut dev =
            Config::from_toml(&std::fs::read_to_string(format!("{dir}origin.toml")).unwrap())
                .unwrap();
        let env: HashMap<&str, &str> = HashMap::from([("APP_ENV", "production")]);
        assert!(dev
            .apply_env(|k| env.get(k).map(|v| v.to_string()))
            .is_empty());
        let errors = dev.validate().unwrap_err().0;
        assert_eq!(
            errors
                .iter()
                .filter(|e| e.contains("development value"))
                .count(),
            3,
            "{errors:?}"
        );
    }

    /// The proxy config shipped next to each origin config forwards to the origin's port, and the
    /// origin trusts `X-Forwarded-For` from the proxy's address.
    #[test]
    fn shipped_proxy_and_origin_configs_agree() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/");
        let read = |name: &str| std::fs::read_to_string(format!("{dir}{name}")).unwrap();
        for (origin_file, proxy_file) in [
            ("origin.toml", "proxy.toml"),
            (
                "origin.production.example.toml",
                "proxy.production.example.toml",
            ),
        ] {
            let origin = Config::from_toml(&read(origin_file)).unwrap();
            let proxy: toml::Value = toml::from_str(&read(proxy_file)).unwrap();
            let upstream = url::Url::parse(proxy["upstream"].as_str().unwrap()).unwrap();
            assert_eq!(
                upstream.port(),
                Some(origin.listen.port()),
                "{proxy_file} upstream vs {origin_file} listen"
            );
            // The proxy's own address: its admin listener's interface (its public listener may
            // be a wildcard).
            let admin: SocketAddr = proxy["admin_listen"].as_str().unwrap().parse().unwrap();
            assert!(
                origin.http.trusted_proxies.contains(&admin.ip()),
                "{origin_file} trusted_proxies {:?} lacks the proxy {}",
                origin.http.trusted_proxies,
                admin.ip()
            );
        }
    }

    #[test]
    fn test_config_is_valid() {
        Config::for_database("postgres://postgres@127.0.0.1/x")
            .validate()
            .unwrap();
    }
}
