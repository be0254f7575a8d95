//! The `[bus]` section, the same in the origin's and the proxy's configuration files. Each
//! service reads the settings it uses and ignores the other's (marked below).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The invalidation bus of a fleet (NATS JetStream). Without `url` the service is a single node
/// and nothing here is used.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `nats://host:port` (several comma-separated for a cluster); env `NATS_URL`.
    #[serde(serialize_with = "redact_url")]
    pub url: Option<String>,
    /// JetStream stream that carries the invalidations (created if missing).
    pub stream: String,
    /// Subject of the invalidation messages (the stream's only subject).
    pub subject: String,
    /// Messages older than this are dropped by the stream (a proxy away for longer misses them
    /// and purges everything softly). Used by whichever side creates the stream.
    pub stream_max_age_secs: u64,
    /// JetStream duplicate window for `Nats-Msg-Id` (the origin's outbox ids).
    pub duplicate_window_secs: u64,
    /// Proxy: after this long without contact with the bus, or this long behind the stream,
    /// entries that belong to a group are revalidated with the origin before being served.
    pub max_lag_ms: u64,
    /// Proxy: how often the node asks the stream for its last sequence (contact and lag).
    pub poll_interval_ms: u64,
    /// Proxy: lifetime of the read-your-writes cookie set on mutation responses.
    pub read_your_writes_secs: u64,
    /// Origin: fallback poll of the outbox relay (commits wake it at once).
    pub relay_poll_ms: u64,
    /// Origin: most outbox rows published per relay round.
    pub relay_batch: u32,
    /// Origin: how long the relay waits for the acknowledgement of one message.
    pub publish_timeout_ms: u64,
    /// Credentials: user and password, a token, an NKey seed, or a `.creds` file (env
    /// `NATS_USER`/`NATS_PASSWORD`, `NATS_TOKEN`, `NATS_NKEY_SEED`, `NATS_CREDS_FILE`).
    pub user: Option<String>,
    #[serde(serialize_with = "redact")]
    pub password: Option<String>,
    #[serde(serialize_with = "redact")]
    pub token: Option<String>,
    #[serde(serialize_with = "redact")]
    pub nkey_seed: Option<String>,
    pub credentials_file: Option<PathBuf>,
    /// Require TLS to the bus; `ca_file` adds a root certificate.
    pub tls_required: bool,
    pub ca_file: Option<PathBuf>,
}

/// Serializes a secret as `"<redacted>"` (printed configurations never show it).
pub fn redact<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

/// Serializes URLs with their userinfo (`user:password@`) redacted.
fn redact_url<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(urls) => {
            let shown: Vec<String> = urls
                .split(',')
                .map(|u| match u.split_once('@') {
                    Some((scheme_user, host)) => match scheme_user.split_once("://") {
                        Some((scheme, _)) => format!("{scheme}://<redacted>@{host}"),
                        None => format!("<redacted>@{host}"),
                    },
                    None => u.to_string(),
                })
                .collect();
            s.serialize_str(&shown.join(","))
        }
        None => s.serialize_none(),
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: None,
            stream: "EDGE_INVALIDATIONS".into(),
            subject: "edge.invalidations".into(),
            stream_max_age_secs: 24 * 3600,
            duplicate_window_secs: 120,
            max_lag_ms: 2_000,
            poll_interval_ms: 250,
            read_your_writes_secs: 60,
            relay_poll_ms: 1_000,
            relay_batch: 256,
            publish_timeout_ms: 2_000,
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            credentials_file: None,
            tls_required: false,
            ca_file: None,
        }
    }
}

impl BusConfig {
    /// Whether a bus is configured (the service is part of a fleet).
    pub fn enabled(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// Environment variables (read through `get`) win over the file: `NATS_URL`, `NATS_USER`,
    /// `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_NKEY_SEED`, `NATS_CREDS_FILE`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        if let Some(v) = var("NATS_URL") {
            self.url = Some(v);
        }
        if let Some(v) = var("NATS_USER") {
            self.user = Some(v);
        }
        if let Some(v) = var("NATS_PASSWORD") {
            self.password = Some(v);
        }
        if let Some(v) = var("NATS_TOKEN") {
            self.token = Some(v);
        }
        if let Some(v) = var("NATS_NKEY_SEED") {
            self.nkey_seed = Some(v);
        }
        if let Some(v) = var("NATS_CREDS_FILE") {
            self.credentials_file = Some(PathBuf::from(v));
        }
    }

    /// Every problem of the section (checked only when a bus is configured).
    pub fn validate(&self, errors: &mut Vec<String>) {
        if !self.enabled() {
            return;
        }
        for u in self.url.as_deref().unwrap_or("").split(',') {
            let u = u.trim();
            let ok = url::Url::parse(u)
                .is_ok_and(|p| matches!(p.scheme(), "nats" | "tls") && p.host_str().is_some());
            if !ok {
                errors.push(format!(
                    "bus.url (NATS_URL) {u:?}: expected nats://host:port"
                ));
            }
        }
        let valid_token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        };
        if !valid_token(&self.stream) {
            errors.push(format!(
                "bus.stream {:?}: letters, digits, '-' and '_' only",
                self.stream
            ));
        }
        if self.subject.is_empty() || !self.subject.split('.').all(valid_token) {
            errors.push(format!(
                "bus.subject {:?}: dot-separated tokens without wildcards",
                self.subject
            ));
        }
        if self.stream_max_age_secs == 0 || self.duplicate_window_secs == 0 {
            errors.push(
                "bus.stream_max_age_secs and bus.duplicate_window_secs must be positive".into(),
            );
        }
        if self.max_lag_ms == 0 || self.poll_interval_ms == 0 {
            errors.push("bus.max_lag_ms and bus.poll_interval_ms must be positive".into());
        } else if self.poll_interval_ms >= self.max_lag_ms {
            errors.push("bus.poll_interval_ms must be below bus.max_lag_ms".into());
        }
        if self.relay_poll_ms == 0 || self.publish_timeout_ms == 0 {
            errors.push("bus.relay_poll_ms and bus.publish_timeout_ms must be positive".into());
        }
        if !(1..=10_000).contains(&self.relay_batch) {
            errors.push("bus.relay_batch must be within 1..=10000".into());
        }
        let methods = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.credentials_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            errors.push(
                "bus: set only one of user/password, token, nkey_seed, credentials_file".into(),
            );
        }
        if self.user.is_some() != self.password.is_some() {
            errors.push("bus.user and bus.password go together".into());
        }
    }
}

impl fmt::Debug for BusConfig {
    /// Secrets are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "<set>");
        f.debug_struct("BusConfig")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("stream_max_age_secs", &self.stream_max_age_secs)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .field("max_lag_ms", &self.max_lag_ms)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("read_your_writes_secs", &self.read_your_writes_secs)
            .field("relay_poll_ms", &self.relay_poll_ms)
            .field("relay_batch", &self.relay_batch)
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("nkey_seed", &hidden(&self.nkey_seed))
            .field("credentials_file", &self.credentials_file)
            .field("tls_required", &self.tls_required)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_only_when_configured_every_error_at_once_secrets_hidden() {
        let mut c = BusConfig {
            stream: "bad stream".into(),
            ..BusConfig::default()
        };
        let mut errors = Vec::new();
        c.validate(&mut errors);
        assert!(errors.is_empty(), "no url: nothing checked");
        c.url = Some("http://nats:4222".into());
        c.subject = "edge.*".into();
        c.relay_batch = 0;
        c.token = Some("tok-secret".into());
        c.user = Some("u".into());
        c.validate(&mut errors);
        for needle in [
            "bus.url",
            "bus.stream",
            "bus.subject",
            "relay_batch",
            "only one",
            "go together",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}: {errors:?}"
            );
        }
        assert!(!format!("{c:?}").contains("tok-secret"));
    }

    #[test]
    fn environment_wins_and_files_parse() {
        let mut c: BusConfig = toml::from_str("url = \"nats://a:1\"\nstream = \"S\"").unwrap();
        assert_eq!(c.stream, "S");
        c.apply_env(|k| (k == "NATS_URL").then(|| "nats://b:2".to_string()));
        assert_eq!(c.url.as_deref(), Some("nats://b:2"));
        let mut errors = Vec::new();
        c.validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(toml::from_str::<BusConfig>("unknown = 1").is_err());
    }
}
