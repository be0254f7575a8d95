//! Validation: `Config::validate` checks the whole configuration and reports every problem at once.

use super::defaults::{DEV_FERNET_KEY, DEV_JWT_SECRET_KEY, DEV_SECRET_KEY};
use super::{AuthConfig, Config, ConfigErrors};
use crate::ratelimit::RateSpec;

/// Every secret value that is public knowledge (shipped in this repository or a built-in default):
/// refused in production.
const KNOWN_DEV_SECRETS: &[&str] = &[DEV_SECRET_KEY, DEV_JWT_SECRET_KEY, DEV_FERNET_KEY, ""];

/// The shortest secret accepted in production, in bytes.
const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

impl Config {
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
        if self.http.body_read_timeout_ms == 0 || self.http.handler_timeout_ms == 0 {
            errors.push(
                "http.body_read_timeout_ms and http.handler_timeout_ms must be positive"
                    .to_string(),
            );
        }
        if let Some(dir) = &self.static_dir {
            if !dir.join("index.html").is_file() {
                errors.push(format!(
                    "static_dir (STATIC_DIR) {}: not a directory holding index.html",
                    dir.display()
                ));
            }
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
        if self.cache.model_registry_failure_ttl_ms == 0 {
            errors.push("cache.model_registry_failure_ttl_ms must be positive".to_string());
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
        self.bus.validate(&mut errors);
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
    fn bus_is_checked_only_when_configured_and_hides_its_secrets() {
        let mut config = Config::for_database("postgres://postgres@127.0.0.1/x");
        config.bus.stream = "bad stream".into();
        config.validate().unwrap();
        config.bus.url = Some("http://nats:4222".into());
        config.bus.subject = "edge.*".into();
        config.bus.relay_batch = 0;
        config.bus.token = Some("tok-secret".into());
        config.bus.user = Some("u".into());
        let errors = config.validate().unwrap_err().0.join("\n");
        for needle in [
            "bus.url",
            "bus.stream",
            "bus.subject",
            "bus.relay_batch",
            "only one of",
            "bus.user and bus.password",
        ] {
            assert!(errors.contains(needle), "{needle} missing from {errors}");
        }
        let mut env = HashMap::from([
            ("NATS_URL", "nats://127.0.0.1:4222"),
            ("NATS_TOKEN", "env-token-secret"),
        ]);
        env.insert("NATS_CREDS_FILE", "/etc/nats/origin.creds");
        let mut config = Config::for_database("postgres://postgres@127.0.0.1/x");
        assert!(config
            .apply_env(|k| env.get(k).map(|v| v.to_string()))
            .is_empty());
        assert!(config.bus.enabled());
        assert_eq!(
            config.validate().unwrap_err().0,
            vec!["bus: set only one of user/password, token, nkey_seed, credentials_file"]
        );
        config.bus.credentials_file = None;
        config.validate().unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("env-token-secret"), "{debug}");
        assert!(debug.contains("token: Some(\"<set>\")"), "{debug}");
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
}
