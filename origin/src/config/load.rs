//! Loading: the TOML file, then the environment, then the command-line flags.

use std::path::Path;

use super::{Config, ConfigErrors, Overrides};

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
        if let Some(v) = get("STATIC_DIR") {
            self.static_dir = Some(v.into());
        }
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
        num!("BODY_READ_TIMEOUT_MS", self.http.body_read_timeout_ms);
        num!("HANDLER_TIMEOUT_MS", self.http.handler_timeout_ms);
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
        num!(
            "MODEL_REGISTRY_FAILURE_TTL_MS",
            self.cache.model_registry_failure_ttl_ms
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
        num!(
            "CHAT_HISTORY_MAX_CHARS",
            self.providers.chat_history_max_chars
        );
        num!("SSE_KEEPALIVE_MS", self.providers.sse_keepalive_ms);
        num!("LLM_READ_TIMEOUT_MS", self.providers.llm_read_timeout_ms);
        self.bus.apply_env(get);
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
        if let Some(dir) = &overrides.static_dir {
            self.static_dir = Some(dir.clone());
        }
    }
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
    use std::net::SocketAddr;

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
    fn static_dir_budgets_and_failure_ttl_from_env_and_flag() {
        let mut config = Config::for_database("postgres://postgres@127.0.0.1/x");
        assert_eq!(config.static_dir, None);
        assert_eq!(
            (
                config.http.body_read_timeout_ms,
                config.http.handler_timeout_ms,
                config.cache.model_registry_failure_ttl_ms
            ),
            (10_000, 15_000, 60_000)
        );
        let env: HashMap<&str, &str> = HashMap::from([
            ("STATIC_DIR", "/srv/web"),
            ("BODY_READ_TIMEOUT_MS", "2000"),
            ("HANDLER_TIMEOUT_MS", "3000"),
            ("MODEL_REGISTRY_FAILURE_TTL_MS", "500"),
        ]);
        let errors = config.apply_env(|k| env.get(k).map(|v| v.to_string()));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.static_dir, Some("/srv/web".into()));
        assert_eq!(
            (
                config.http.body_read_timeout_ms,
                config.http.handler_timeout_ms,
                config.cache.model_registry_failure_ttl_ms
            ),
            (2000, 3000, 500)
        );
        // The directory must hold index.html.
        let errors = config.validate().unwrap_err().0;
        assert!(errors[0].starts_with("static_dir"), "{errors:?}");
        config.apply_overrides(&Overrides {
            static_dir: Some(std::env::temp_dir().join("no-such-llmselect-ui")),
            ..Default::default()
        });
        assert!(config.static_dir.unwrap().ends_with("no-such-llmselect-ui"));
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
}
