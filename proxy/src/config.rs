//! Proxy configuration: the TOML file, flag overrides, the `PROXY_ADMIN_TOKEN` environment
//! variable, and validation that reports every problem at once.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use llmselect_bus::BusConfig;

/// Environment variable that supplies (or overrides) the admin bearer token.
pub const ADMIN_TOKEN_ENV: &str = "PROXY_ADMIN_TOKEN";
/// LLMSelect's access-token cookie: the default authentication cookie.
pub const DEFAULT_AUTH_COOKIE: &str = "access_token_cookie";
/// The targeted cache-control field (RFC 9213) addressed to this proxy alone.
pub const OWN_TARGETED_FIELD: &str = "llmselect-cache-control";

/// The complete proxy configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on, e.g. `0.0.0.0:8080`.
    pub listen: String,
    /// Origin base URL (`http://host:port`); only plain HTTP is supported.
    pub upstream: String,
    /// Several origin base URLs, balanced round-robin with active health checks; when set it
    /// replaces `upstream`.
    pub upstreams: Vec<String>,
    /// Address of the admin listener (purge, stats, metrics, health).
    pub admin_listen: String,
    /// Bearer token required by every admin endpoint. Mandatory on a non-loopback admin address;
    /// on a loopback one, a token is generated at start-up when none is set (see `state_dir`).
    #[serde(serialize_with = "llmselect_bus::redact")]
    pub admin_token: Option<String>,
    /// Where the proxy keeps its state: the generated admin token (`admin-token`, mode 0600).
    /// Default: `$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/llmselect-proxy`, else
    /// `~/.local/state/llmselect-proxy`.
    pub state_dir: Option<PathBuf>,
    /// Log filter (`info`, `warn`, `llmselect_proxy=debug,info`...; `RUST_LOG` wins over it).
    /// Reloaded on SIGHUP.
    pub log_level: String,
    pub cache: CacheConfig,
    pub limits: LimitsConfig,
    pub health_check: HealthCheckConfig,
    pub bus: BusConfig,
    pub timeouts: TimeoutConfig,
    pub server: ServerConfig,
    pub compression: CompressionConfig,
    pub tls: TlsConfig,
    pub clients: ClientsConfig,
}

/// The TLS listener (HTTP/2 by ALPN, HTTP/1.1 kept). Off while `listen` is empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener, e.g. `0.0.0.0:8443`; empty: no TLS listener.
    pub listen: String,
    /// PEM certificate chain (leaf first).
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`); `false`: HTTP/1.1 only.
    pub h2: bool,
    /// How often the certificate and key files are checked for a change (s); 0: only on
    /// `SIGHUP`.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            cert: String::new(),
            key: String::new(),
            h2: true,
            reload_interval_secs: 60,
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }
}

/// The content codings `compression.algorithms` may name.
pub const CODINGS: [&str; 3] = ["br", "gzip", "zstd"];

/// Compression of stored responses (once, when stored; see `cache::encoding`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    pub enabled: bool,
    /// Smallest `Content-Length` that is compressed (a chunked response of unknown length is).
    pub min_bytes: u64,
    /// Compressible media types: `type/subtype` or `type/*`. `text/event-stream` never is.
    pub types: Vec<String>,
    /// Codings produced, most preferred first: `br`, `gzip`, `zstd`.
    pub algorithms: Vec<String>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_bytes: 1024,
            types: [
                "application/json",
                "text/*",
                "application/javascript",
                "application/xml",
                "image/svg+xml",
                "application/manifest+json",
                "application/problem+json",
            ]
            .map(String::from)
            .to_vec(),
            algorithms: vec!["br".into(), "gzip".into()],
        }
    }
}

/// Client connections: how many, and how long a client may take (slow-client defences).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsConfig {
    /// Open client connections at most; beyond it a new connection gets a `503` and is closed.
    /// Also held below what the open-file limit allows (two descriptors per client).
    pub max_connections: usize,
    /// Deadline (ms) for a whole request header block, from accept (or from the first byte of a
    /// later request on a kept-alive connection); a client that has not finished its header by
    /// then gets a `408` and is disconnected, however steadily it trickles bytes.
    pub header_timeout_ms: u64,
    /// Deadline (ms) for a whole request body, from the end of its header (`408` when passed).
    pub body_timeout_ms: u64,
    /// Longest pause (ms) between two reads of a request body.
    pub body_read_timeout_ms: u64,
    /// Idle keep-alive timeout (s): how long a connection may wait for its next request.
    pub keepalive_secs: u64,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 60_000,
            body_read_timeout_ms: 10_000,
            keepalive_secs: 60,
        }
    }
}

/// Active health checks of the origins (only with several `upstreams`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path requested on every origin; any 2xx is healthy.
    pub path: String,
    pub interval_ms: u64,
    /// Connect and read timeout of one check.
    pub timeout_ms: u64,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval_ms: 1_000,
            timeout_ms: 1_000,
        }
    }
}

/// Bounds on what a client may send.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request header block (request line and fields) in bytes; larger → 431.
    pub max_request_header_bytes: usize,
    /// Longest request target in bytes; longer → 414.
    pub max_uri_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_header_bytes: 32 * 1024,
            max_uri_bytes: 8 * 1024,
        }
    }
}

/// Cache store and policy settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Upper bound of the store's weight in bytes (bodies, headers, metadata, keys).
    pub capacity_bytes: u64,
    /// Largest object that is stored; bigger responses are streamed through uncached.
    /// Must be at most 0.97 × capacity / shards (quick_cache drops heavier items silently).
    pub max_object_bytes: u64,
    /// Number of store shards (explicit, see `max_object_bytes`).
    pub shards: usize,
    /// A coalescing writer loses the cache lock after this long (ms).
    pub lock_age_timeout_ms: u64,
    /// A coalesced reader stops waiting for the writer after this long (ms).
    pub lock_wait_timeout_ms: u64,
    /// stale-while-revalidate window (s) when the origin names none.
    pub default_stale_while_revalidate_secs: u32,
    /// stale-if-error window (s) when the origin names none.
    pub default_stale_if_error_secs: u32,
    /// Cookies that identify a user. When a request carries at least one of them, `Cookie` is
    /// reduced to these before it keys a variant; otherwise the whole (normalised) `Cookie`
    /// header keys it (fail closed). An empty list always keys on the whole header.
    pub auth_cookies: Vec<String>,
    /// Targeted cache-control fields (RFC 9213) this proxy obeys instead of `Cache-Control`,
    /// highest priority first. Every field listed here except `CDN-Cache-Control` is this
    /// proxy's own and is removed from responses before they leave it.
    pub targeted_fields: Vec<String>,
    /// Budget in bytes for the bodies of fills in progress (all keys together); a fill that would
    /// exceed it is streamed to its clients without being stored.
    pub max_inflight_fill_bytes: u64,
    /// Budget in bytes for purge tombstones (the purge-vs-fill race records). When exceeded they
    /// are all dropped and every fill that started earlier is refused instead.
    pub tombstone_max_bytes: u64,
    /// Honour request `Cache-Control: no-cache` / `max-age` / `min-fresh` / `max-stale` / `Pragma`.
    pub honour_request_directives: bool,
    /// Responses with `Set-Cookie`: `strip` (default) stores them only when explicitly shared
    /// (`public` / `s-maxage`) and without their `Set-Cookie`; `refuse` never stores them.
    pub set_cookie: SetCookiePolicy,
    /// Stream a fill to the requests waiting on it (pingora's partial writes): waiters get each
    /// byte when the origin sends it instead of after the whole body; a fill that fails reaches
    /// them as an error. `false`: waiters get the response once it is stored whole.
    pub stream_fills: bool,
}

/// The rule for responses with `Set-Cookie` (a cookie is one client's state: it must never be
/// replayed to another client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetCookiePolicy {
    /// Store a response with `Set-Cookie` only when the origin explicitly shares it (`public` or
    /// `s-maxage`), and then without its `Set-Cookie` fields: the client that fetched it gets its
    /// cookie, hits never carry one. Responses not explicitly shared are not stored.
    #[default]
    Strip,
    /// Never store a response that carries `Set-Cookie`.
    Refuse,
}

/// Upstream timeouts, per route class: ordinary requests get short ones (a hung origin costs a
/// client `read_ms`, then stale-if-error or a `504`); the long routes (LLM calls and their SSE
/// streams) get the long idle window `read_secs`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    pub connect_ms: u64,
    /// Ordinary routes: time to the response header and longest pause between two body reads.
    pub read_ms: u64,
    /// Long routes: the same windows; at least 120 s so SSE streams survive quiet periods.
    pub read_secs: u64,
    /// Path prefixes of the long routes, matched on whole segments (`/api/v1/compare` matches
    /// `/api/v1/compare/stream`, not `/api/v1/comparisons`).
    pub long_routes: Vec<String>,
    pub write_secs: u64,
    /// Idle keep-alive timeout for pooled upstream connections.
    pub idle_secs: u64,
}

/// Process settings handed to pingora's `ServerConf`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads of the proxy service (0 = number of CPUs).
    pub threads: usize,
    /// Let worker threads steal each other's tasks (one multi-threaded tokio runtime). When
    /// `false`, each worker is a single-threaded runtime and connections are spread over them:
    /// cheaper per request, but one busy connection cannot be helped by an idle worker.
    pub work_stealing: bool,
    /// Pingora pid file; defaults to a per-instance path in the temp directory.
    pub pid_file: Option<PathBuf>,
    /// Pingora upgrade socket; defaults to a per-instance path in the temp directory.
    pub upgrade_sock: Option<PathBuf>,
    /// Longest a graceful shutdown waits for in-flight requests (it stops as soon as none is).
    pub grace_period_secs: u64,
    /// Accept HTTP/2 without TLS (prior knowledge, h2c) on `listen`, besides HTTP/1.1.
    pub h2c: bool,
    /// HTTP/1.1 `GET`/`HEAD` requests for URLs the cache knows it cannot store are forwarded by
    /// the raw front (`server::forward`) instead of pingora's proxy state machine; `false`:
    /// every pass-through goes through pingora.
    pub front_pass_through: bool,
    /// Plain HTTP/1.1 `GET` misses of cold keys are fetched, stored and answered by the raw
    /// front (`server::fill`) instead of pingora's proxy state machine; `false`: every miss goes
    /// through pingora. Needs `cache.stream_fills`.
    pub front_fill: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            upstream: "http://127.0.0.1:3044".into(),
            upstreams: Vec::new(),
            admin_listen: "127.0.0.1:9090".into(),
            admin_token: None,
            state_dir: None,
            log_level: "info".into(),
            cache: CacheConfig::default(),
            limits: LimitsConfig::default(),
            health_check: HealthCheckConfig::default(),
            bus: BusConfig::default(),
            timeouts: TimeoutConfig::default(),
            server: ServerConfig::default(),
            compression: CompressionConfig::default(),
            tls: TlsConfig::default(),
            clients: ClientsConfig::default(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity_bytes: 256 * 1024 * 1024,
            max_object_bytes: 8 * 1024 * 1024,
            shards: 16,
            lock_age_timeout_ms: 31_000,
            lock_wait_timeout_ms: 30_000,
            default_stale_while_revalidate_secs: 0,
            default_stale_if_error_secs: 0,
            auth_cookies: vec![DEFAULT_AUTH_COOKIE.into()],
            targeted_fields: vec![OWN_TARGETED_FIELD.into(), "cdn-cache-control".into()],
            max_inflight_fill_bytes: 64 * 1024 * 1024,
            tombstone_max_bytes: 4 * 1024 * 1024,
            honour_request_directives: true,
            set_cookie: Default::default(),
            stream_fills: true,
        }
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect_ms: 2_000,
            read_ms: 5_000,
            read_secs: 120,
            long_routes: vec!["/api/v1/chat".into(), "/api/v1/compare".into()],
            write_secs: 30,
            idle_secs: 60,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            pid_file: None,
            upgrade_sock: None,
            grace_period_secs: 5,
            work_stealing: true,
            h2c: false,
            front_pass_through: true,
            front_fill: true,
        }
    }
}

/// Command-line values that win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub admin_listen: Option<String>,
}

/// Every problem found while loading or validating, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        let plural = if n == 1 { "" } else { "s" };
        writeln!(f, "invalid proxy configuration ({n} error{plural}):")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A parsed `http://host:port` upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`, as pingora's peer wants it.
    pub address: String,
    pub host: String,
}

impl Config {
    /// Reads `path` (if any), applies the environment token and `overrides`, then validates.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigErrors> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigErrors(vec![format!("{}: {e}", p.display())]))?;
                Self::from_toml(&text)?
            }
            None => Config::default(),
        };
        if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV) {
            if !token.is_empty() {
                cfg.admin_token = Some(token);
            }
        }
        cfg.bus.apply_env(|name| std::env::var(name).ok());
        if let Some(v) = overrides.listen {
            cfg.listen = v;
        }
        if let Some(v) = overrides.upstream {
            // `--upstream a,b` names several origins
            let list: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect();
            if list.len() > 1 {
                cfg.upstreams = list;
            } else {
                cfg.upstream = v;
                cfg.upstreams.clear();
            }
        }
        if let Some(v) = overrides.admin_listen {
            cfg.admin_listen = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text without validating it.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        toml::from_str(text).map_err(|e| ConfigErrors(vec![format!("TOML: {e}")]))
    }

    /// A configuration for tests: ephemeral loopback ports, a small cache, the token
    /// `test-admin-token`, short lock timeouts and per-instance pid/upgrade paths.
    pub fn for_upstream(url: &str) -> Config {
        let [listen_port, admin_port] = free_ports();
        Config {
            listen: format!("127.0.0.1:{listen_port}"),
            upstream: url.to_string(),
            upstreams: Vec::new(),
            admin_listen: format!("127.0.0.1:{admin_port}"),
            admin_token: Some("test-admin-token".into()),
            state_dir: None,
            log_level: "info".into(),
            cache: CacheConfig {
                capacity_bytes: 16 * 1024 * 1024,
                max_object_bytes: 512 * 1024,
                shards: 8,
                lock_age_timeout_ms: 10_000,
                lock_wait_timeout_ms: 10_000,
                ..CacheConfig::default()
            },
            limits: LimitsConfig::default(),
            health_check: HealthCheckConfig {
                interval_ms: 200,
                ..HealthCheckConfig::default()
            },
            bus: BusConfig {
                max_lag_ms: 1_000,
                poll_interval_ms: 100,
                ..BusConfig::default()
            },
            timeouts: TimeoutConfig::default(),
            server: ServerConfig {
                threads: 2,
                grace_period_secs: 0,
                ..ServerConfig::default()
            },
            compression: CompressionConfig::default(),
            tls: TlsConfig::default(),
            clients: ClientsConfig::default(),
        }
    }

    /// Checks every setting and returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let listen = parse_addr("listen", &self.listen, &mut errors);
        let admin = parse_addr("admin_listen", &self.admin_listen, &mut errors);
        if let (Some(l), Some(a)) = (listen, admin) {
            if l == a {
                errors.push("listen and admin_listen must differ".into());
            }
        }
        if self.tls.enabled() {
            if let Some(t) = parse_addr("tls.listen", &self.tls.listen, &mut errors) {
                if Some(t) == listen || Some(t) == admin {
                    errors.push("tls.listen must differ from listen and admin_listen".into());
                }
            }
            if self.tls.cert.is_empty() || self.tls.key.is_empty() {
                errors.push("tls.cert and tls.key are required with tls.listen".into());
            } else if let Err(e) =
                crate::tls::Certificates::load(Path::new(&self.tls.cert), Path::new(&self.tls.key))
            {
                errors.push(e);
            }
        }
        if let Some(a) = admin {
            let token_missing = self.admin_token.as_deref().is_none_or(str::is_empty);
            if !a.ip().is_loopback() && token_missing {
                errors.push(format!(
                    "admin_listen {a} is not loopback: an admin token is required \
                     (admin_token or {ADMIN_TOKEN_ENV})"
                ));
            }
        }
        match self.upstreams() {
            Ok(list) => {
                let mut seen = std::collections::HashSet::new();
                for u in &list {
                    if !seen.insert(&u.address) {
                        errors.push(format!("upstreams: {} is listed twice", u.address));
                    }
                }
            }
            Err(e) => errors.extend(e),
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            errors.push(format!(
                "log_level {:?} is not a valid filter",
                self.log_level
            ));
        }
        let h = &self.health_check;
        if !h.path.starts_with('/') {
            errors.push("health_check.path must start with '/'".into());
        }
        if h.interval_ms == 0 || h.timeout_ms == 0 {
            errors.push("health_check.interval_ms and timeout_ms must be positive".into());
        }
        self.bus.validate(&mut errors);
        let c = &self.cache;
        if c.capacity_bytes < 64 * 1024 {
            errors.push("cache.capacity_bytes must be at least 65536".into());
        }
        if c.shards == 0 || !c.shards.is_power_of_two() {
            errors.push("cache.shards must be a power of two ≥ 1".into());
        }
        if c.max_object_bytes == 0 {
            errors.push("cache.max_object_bytes must be positive".into());
        } else if c.shards > 0 && c.max_object_bytes > max_object_for(c.capacity_bytes, c.shards) {
            errors.push(format!(
                "cache.max_object_bytes {} exceeds 0.97 × capacity / shards = {} \
                 (such objects would be dropped by the store)",
                c.max_object_bytes,
                max_object_for(c.capacity_bytes, c.shards)
            ));
        }
        if c.lock_wait_timeout_ms == 0 || c.lock_age_timeout_ms == 0 {
            errors.push("cache lock timeouts must be positive".into());
        }
        for name in &c.auth_cookies {
            if name.is_empty() || name.contains([';', '=', ' ', ',']) {
                errors.push(format!("cache.auth_cookies: invalid cookie name {name:?}"));
            }
        }
        for name in &c.targeted_fields {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(format!(
                    "cache.targeted_fields: invalid field name {name:?}"
                ));
            } else if name.eq_ignore_ascii_case("cache-control") {
                errors.push("cache.targeted_fields: list targeted fields only; Cache-Control is always the fallback".into());
            }
        }
        if c.max_inflight_fill_bytes < c.max_object_bytes {
            errors.push(format!(
                "cache.max_inflight_fill_bytes {} is smaller than cache.max_object_bytes {}",
                c.max_inflight_fill_bytes, c.max_object_bytes
            ));
        }
        if c.tombstone_max_bytes < 64 * 1024 {
            errors.push("cache.tombstone_max_bytes must be at least 65536".into());
        }
        let l = &self.limits;
        if l.max_request_header_bytes < 1024 || l.max_request_header_bytes > 1024 * 1024 {
            errors.push("limits.max_request_header_bytes must be between 1024 and 1048576 (pingora's own ceiling)".into());
        }
        if l.max_uri_bytes < 256 || l.max_uri_bytes > l.max_request_header_bytes {
            errors.push("limits.max_uri_bytes must be at least 256 and at most limits.max_request_header_bytes".into());
        }
        let t = &self.timeouts;
        if t.read_secs < 120 {
            errors.push("timeouts.read_secs must be at least 120 (SSE streams)".into());
        }
        if t.read_ms > t.read_secs * 1000 {
            errors.push("timeouts.read_ms must not exceed timeouts.read_secs".into());
        }
        if t.connect_ms == 0 || t.write_secs == 0 || t.read_ms == 0 {
            errors.push(
                "timeouts.connect_ms, timeouts.read_ms and timeouts.write_secs must be positive"
                    .into(),
            );
        }
        for prefix in &t.long_routes {
            if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
                errors.push(format!(
                    "timeouts.long_routes: {prefix:?} must start with '/' and not end with '/'"
                ));
            }
        }
        let k = &self.clients;
        if k.max_connections == 0 {
            errors.push("clients.max_connections must be positive".into());
        }
        if k.header_timeout_ms == 0 || k.body_timeout_ms == 0 || k.body_read_timeout_ms == 0 {
            errors.push("clients.header_timeout_ms, body_timeout_ms and body_read_timeout_ms must be positive".into());
        }
        if k.keepalive_secs == 0 {
            errors.push("clients.keepalive_secs must be positive (0 would wait forever)".into());
        }
        self.compression.validate(&mut errors);
        if let (Some(p), Some(u)) = (&self.server.pid_file, &self.server.upgrade_sock) {
            if p == u {
                errors.push("server.pid_file and server.upgrade_sock must differ".into());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The targeted cache-control fields, parsed (invalid names are reported by `validate`).
    pub fn targeted_fields(&self) -> Vec<http::HeaderName> {
        self.cache
            .targeted_fields
            .iter()
            .filter_map(|n| http::HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok())
            .collect()
    }

    /// The origins: `upstreams` when set, else `upstream`. Every unparsable one is reported.
    pub fn upstreams(&self) -> Result<Vec<Upstream>, Vec<String>> {
        let list: Vec<&String> = if self.upstreams.is_empty() {
            vec![&self.upstream]
        } else {
            self.upstreams.iter().collect()
        };
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for raw in list {
            match parse_upstream(raw) {
                Ok(u) => ok.push(u),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(ok)
        } else {
            Err(errors)
        }
    }

    /// The first origin (the only one without `upstreams`).
    pub fn upstream(&self) -> Result<Upstream, String> {
        self.upstreams()
            .map_err(|e| e.join("; "))?
            .into_iter()
            .next()
            .ok_or_else(|| "no upstream".to_string())
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listen.parse().ok()
    }

    /// The TLS listener's address, when TLS is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
            .enabled()
            .then(|| self.tls.listen.parse().ok())
            .flatten()
    }

    pub fn lock_age_timeout(&self) -> Duration {
        Duration::from_millis(self.cache.lock_age_timeout_ms)
    }

    pub fn lock_wait_timeout(&self) -> Duration {
        Duration::from_millis(self.cache.lock_wait_timeout_ms)
    }

    /// Whether `path` belongs to a long route (see `timeouts.long_routes`).
    pub fn is_long_route(long_routes: &[String], path: &str) -> bool {
        long_routes.iter().any(|p| {
            path.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
        })
    }

    /// How long purge tombstones must live: longer than any fill can take.
    pub fn tombstone_retention(&self) -> Duration {
        Duration::from_secs(self.timeouts.read_secs) + self.lock_age_timeout()
    }

    /// Pid and upgrade-socket paths, unique per instance unless configured.
    pub fn runtime_paths(&self) -> (PathBuf, PathBuf) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!(
            "llmselect-proxy-{}-{}-{n}",
            std::process::id(),
            self.listen.replace([':', '.', '[', ']'], "_")
        );
        let dir = std::env::temp_dir();
        let pid = self
            .server
            .pid_file
            .clone()
            .unwrap_or_else(|| dir.join(format!("{tag}.pid")));
        let sock = self
            .server
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| dir.join(format!("{tag}.upgrade.sock")));
        (pid, sock)
    }
}

impl CompressionConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        for a in &self.algorithms {
            if !CODINGS.iter().any(|c| c.eq_ignore_ascii_case(a.trim())) {
                errors.push(format!(
                    "compression.algorithms: unknown coding {a:?} (br, gzip, zstd)"
                ));
            }
        }
        if self.enabled && self.algorithms.is_empty() {
            errors.push("compression.algorithms must name at least one coding when enabled".into());
        }
        for t in &self.types {
            let valid = t
                .split_once('/')
                .is_some_and(|(m, sub)| !m.is_empty() && !sub.is_empty() && m != "*")
                && !t.contains([' ', ';', ',']);
            if !valid {
                errors.push(format!(
                    "compression.types: {t:?} is not a media type (type/subtype or type/*)"
                ));
            }
        }
    }
}

/// Parses one `http://host:port` origin URL.
fn parse_upstream(raw: &str) -> Result<Upstream, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("upstream {raw:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("upstream {raw:?}: only http:// is supported"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("upstream {raw:?}: no host"))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Upstream { address, host })
}

/// The largest object a store with this capacity and shard count can hold.
pub fn max_object_for(capacity: u64, shards: usize) -> u64 {
    (capacity as f64 * 0.97 / shards as f64) as u64
}

fn parse_addr(field: &str, value: &str, errors: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(format!("{field} {value:?}: {e} (expected ip:port)"));
            None
        }
    }
}

/// Reserves N distinct free loopback ports (bind, read, release). There is a small race until the
/// proxy binds them; `spawn_proxy` in the tests retries with fresh ports when it loses it.
fn free_ports<const N: usize>() -> [u16; N] {
    // All held at once, so the N ports differ from each other.
    let listeners: Vec<Option<TcpListener>> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").ok())
        .collect();
    std::array::from_fn(|i| {
        listeners[i]
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or(0, |a| a.port())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::for_upstream("http://127.0.0.1:1")
            .validate()
            .unwrap();
    }

    #[test]
    fn set_cookie_rule_is_one_of_two_names() {
        assert_eq!(Config::default().cache.set_cookie, SetCookiePolicy::Strip);
        let c = Config::from_toml("[cache]\nset_cookie = \"refuse\"\n").unwrap();
        assert_eq!(c.cache.set_cookie, SetCookiePolicy::Refuse);
        let err = Config::from_toml("[cache]\nset_cookie = \"allow\"\n").unwrap_err();
        assert!(err.to_string().contains("set_cookie"), "{err}");
    }

    #[test]
    fn all_errors_reported_at_once() {
        let cfg = Config::from_toml(
            r#"
            listen = "nope"
            upstream = "https://x"
            admin_listen = "0.0.0.0:9000"
            [cache]
            shards = 3
            [timeouts]
            read_secs = 5
            "#,
        )
        .unwrap();
        let errs = cfg.validate().unwrap_err().0;
        assert!(errs.len() >= 5, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("not loopback")));
        assert!(errs.iter().any(|e| e.contains("only http")));
    }

    #[test]
    fn tls_files_are_checked_at_start() {
        let cfg = Config::from_toml(
            r#"
            [tls]
            listen = "127.0.0.1:8443"
            cert = "/nonexistent/cert.pem"
            key = "/nonexistent/key.pem"
            "#,
        )
        .unwrap();
        let errs = cfg.validate().unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("/nonexistent/cert.pem"), "{errs:?}");
        let mut no_files = cfg.clone();
        no_files.tls.cert.clear();
        let errs = no_files.validate().unwrap_err().0;
        assert!(errs[0].contains("required"), "{errs:?}");
    }

    #[test]
    fn compression_settings_are_validated() {
        let cfg = Config::from_toml(
            r#"
            [compression]
            algorithms = ["br", "lzma"]
            types = ["application/json", "json"]
            "#,
        )
        .unwrap();
        let errs = cfg.validate().unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("lzma") && errs[1].contains("\"json\""),
            "{errs:?}"
        );
    }

    #[test]
    fn max_object_must_fit_a_shard() {
        let mut cfg = Config::default();
        cfg.cache.capacity_bytes = 1024 * 1024;
        cfg.cache.shards = 4;
        cfg.cache.max_object_bytes = 300 * 1024;
        let errs = cfg.validate().unwrap_err().0;
        assert!(errs[0].contains("exceeds"), "{errs:?}");
    }

    #[test]
    fn shipped_configs_parse_and_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for f in ["proxy.toml", "proxy.production.example.toml"] {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            let mut cfg = Config::from_toml(&text).unwrap();
            cfg.admin_token.get_or_insert_with(|| "t".into());
            cfg.validate().unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn long_routes_match_whole_segments() {
        let routes = TimeoutConfig::default().long_routes;
        assert!(Config::is_long_route(&routes, "/api/v1/chat"));
        assert!(Config::is_long_route(&routes, "/api/v1/chat/stream"));
        assert!(Config::is_long_route(&routes, "/api/v1/compare/analyze"));
        assert!(Config::is_long_route(&routes, "/api/v1/compare?x=1"));
        assert!(!Config::is_long_route(&routes, "/api/v1/comparisons"));
        assert!(!Config::is_long_route(&routes, "/api/v1/conversations"));
    }

    #[test]
    fn client_limits_are_validated() {
        let mut cfg = Config::default();
        cfg.clients.max_connections = 0;
        cfg.clients.keepalive_secs = 0;
        cfg.timeouts.long_routes = vec!["api/".into()];
        let errs = cfg.validate().unwrap_err().0;
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn upstream_parsing() {
        let cfg = Config {
            upstream: "http://localhost".into(),
            ..Config::default()
        };
        assert_eq!(cfg.upstream().unwrap().address, "localhost:80");
    }
}
