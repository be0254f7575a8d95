//! The admin listener: the console (`GET /`, see [`console`]), and behind
//! `Authorization: Bearer <token>`: `POST /purge`, `GET /stats`, `GET /purges`,
//! `GET|POST /explain`, `GET /metrics`, `GET /health`. Errors are JSON.
//!
//! The token is only ever read from the `Authorization` header (never a cookie or the URL), and
//! a state-changing request that a browser marks as cross-site (`Origin` of another host,
//! `Sec-Fetch-Site` other than `same-origin` / `none`) is refused: another page cannot make a
//! browser purge. Every answer carries a strict `Content-Security-Policy` and
//! `X-Frame-Options: DENY`.

mod console;

use crate::bus::{message, Bus};
use crate::cache::explain::{self, Question};
use crate::cache::hit::primary_only_key;
use crate::cache::key::{normalise_path_query, UrlKey};
use crate::cache::{Invalidator, Source};
use crate::cache::{Scope, Store};
use crate::live::Live;
use crate::metrics;
use crate::proxy::PREDICTOR_SHARDS;
use crate::stats::Stats;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_cache::predictor::{CacheablePredictor, Predictor};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// Largest accepted `POST /purge` body.
const MAX_BODY: usize = 1024 * 1024;

/// Admin failures, mapped to statuses in [`AdminError::status`].
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("admin token not configured")]
    NoToken,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("invalid purge request: {0}")]
    BadRequest(String),
    #[error("request body too large")]
    TooLarge,
    #[error("cross-site request refused: {0}")]
    CrossSite(&'static str),
    #[error("could not read request body")]
    Read,
    /// The purge was applied on this node, but the fleet could not be told.
    #[error("purged {purged} entries on this node, but not on the fleet: {reason}")]
    Bus { purged: usize, reason: String },
}

impl AdminError {
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized | AdminError::NoToken => StatusCode::UNAUTHORIZED,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::BadRequest(_) | AdminError::Read => StatusCode::BAD_REQUEST,
            AdminError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::CrossSite(_) => StatusCode::FORBIDDEN,
            AdminError::Bus { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn into_response(self) -> Response<Vec<u8>> {
        let status = self.status();
        let body = json!({"error": {"status": status.as_u16(), "message": self.to_string()}});
        let mut resp = json_response(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// `POST /purge` body: exactly one of `urls`, `prefix`, `groups`, `all`; `soft` marks stale.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub all: Option<bool>,
    #[serde(default)]
    pub soft: bool,
    /// Purge this node only (in a fleet, a purge is published to every node by default).
    #[serde(default)]
    pub local: bool,
}

impl PurgeRequest {
    /// The scopes to invalidate and the kind label.
    pub fn scopes(&self) -> Result<(&'static str, Vec<Scope>), AdminError> {
        let selectors = [
            self.urls.is_some(),
            self.prefix.is_some(),
            self.groups.is_some(),
            self.all.is_some(),
        ];
        if selectors.iter().filter(|s| **s).count() != 1 {
            return Err(AdminError::BadRequest(
                "name exactly one of urls, prefix, groups, all".into(),
            ));
        }
        if let Some(urls) = &self.urls {
            let scopes = urls
                .iter()
                .map(|u| {
                    if u.starts_with('/') {
                        Ok(Scope::Path(normalise_path_query(u)))
                    } else {
                        UrlKey::from_absolute(u)
                            .map(Scope::Url)
                            .ok_or_else(|| AdminError::BadRequest(format!("invalid url {u:?}")))
                    }
                })
                .collect::<Result<_, _>>()?;
            return Ok(("urls", scopes));
        }
        if let Some(prefix) = &self.prefix {
            if !prefix.starts_with('/') {
                return Err(AdminError::BadRequest("prefix must start with '/'".into()));
            }
            return Ok(("prefix", vec![Scope::Prefix(prefix.clone())]));
        }
        if let Some(groups) = &self.groups {
            let scopes = groups
                .iter()
                .map(|g| Scope::Group {
                    host: None,
                    name: g.clone(),
                })
                .collect();
            return Ok(("groups", scopes));
        }
        match self.all {
            Some(true) => Ok(("all", vec![Scope::All])),
            _ => Err(AdminError::BadRequest("\"all\" must be true".into())),
        }
    }
}

/// `POST /explain` body (the console's form; `GET /explain?url=…&header=Name:%20value` is the
/// same question in a URL).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// An absolute `http://host/path?query`, or a path (then on the `Host` among `headers`, else
    /// on the proxy's own listen address).
    pub url: String,
    /// Request header fields to simulate (e.g. `Authorization`, `Cookie`, `Accept-Language`).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// The admin application.
pub struct AdminApp {
    /// The admin token, the policy options and the origins (reloadable).
    pub live: Arc<Live>,
    /// The proxy's listen address: the host of an explained path.
    pub listen_addr: SocketAddr,
    pub predictor: &'static Predictor<PREDICTOR_SHARDS>,
    pub honour_request_directives: bool,
    pub store: &'static Store,
    pub stats: &'static Stats,
    pub invalidator: Invalidator,
    pub bus: Option<Arc<Bus>>,
}

impl AdminApp {
    fn authorize(&self, session: &ServerSession) -> Result<(), AdminError> {
        let token = self.live.admin_token();
        let Some(token) = token.as_deref().filter(|t| !t.is_empty()) else {
            return Err(AdminError::NoToken);
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AdminError::Unauthorized)?;
        if bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(AdminError::Unauthorized)
        }
    }

    async fn route(&self, session: &mut ServerSession) -> Result<Response<Vec<u8>>, AdminError> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        // The console's page and assets hold no data: they load without the token.
        if method == Method::GET {
            if let Some(resp) = console::asset(&path) {
                return Ok(resp);
            }
        }
        if method != Method::GET && method != Method::HEAD {
            console::same_origin(session.req_header())?;
        }
        self.authorize(session)?;
        match (path.as_str(), method) {
            ("/purge", Method::POST) => self.purge(session).await,
            ("/stats", Method::GET) => Ok(json_response(StatusCode::OK, &self.stats_json())),
            ("/purges", Method::GET) => Ok(json_response(
                StatusCode::OK,
                &json!({"purges": self.stats.recent_purges()}),
            )),
            ("/explain", Method::GET) => {
                let query = session.req_header().uri.query().unwrap_or("");
                let req = explain_query(query)?;
                Ok(json_response(StatusCode::OK, &self.explain(&req)?))
            }
            ("/explain", Method::POST) => {
                let body = read_body(session).await?;
                let req: ExplainRequest = serde_json::from_slice(&body)
                    .map_err(|e| AdminError::BadRequest(e.to_string()))?;
                Ok(json_response(StatusCode::OK, &self.explain(&req)?))
            }
            ("/metrics", Method::GET) => {
                self.publish_store_gauges();
                let mut resp = Response::new(metrics::render());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                Ok(resp)
            }
            ("/health", Method::GET) => Ok(json_response(StatusCode::OK, &self.health_json())),
            ("/purge" | "/stats" | "/purges" | "/explain" | "/metrics" | "/health", _) => {
                Err(AdminError::MethodNotAllowed)
            }
            _ => Err(AdminError::NotFound),
        }
    }

    /// What the store holds for a URL and what a request with the given headers would get.
    fn explain(&self, req: &ExplainRequest) -> Result<serde_json::Value, AdminError> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in &req.headers {
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| AdminError::BadRequest(format!("invalid header name {name:?}")))?;
            let value = http::HeaderValue::from_str(value.trim())
                .map_err(|_| AdminError::BadRequest(format!("invalid value for {name}")))?;
            headers.append(name, value);
        }
        let url = if req.url.starts_with('/') {
            let host = match headers.get(http::header::HOST) {
                Some(h) => h
                    .to_str()
                    .ok()
                    .filter(|h| crate::cache::key::valid_authority(h))
                    .ok_or_else(|| AdminError::BadRequest("invalid Host".into()))?
                    .to_string(),
                None => self.listen_addr.to_string(),
            };
            UrlKey::new(&host, &req.url)
        } else {
            UrlKey::from_absolute(&req.url).ok_or_else(|| {
                AdminError::BadRequest(format!(
                    "invalid url {:?} (an http:// URL or a path)",
                    req.url
                ))
            })?
        };
        let predicted_cacheable = self
            .predictor
            .cacheable_prediction(&primary_only_key(&url.primary_hash()));
        let policy = self.live.policy();
        Ok(explain::explain(
            self.store,
            &Question {
                url: &url,
                headers: &headers,
                policy: &policy,
                honour_request_directives: self.honour_request_directives,
                predicted_cacheable,
                bus_degraded: self.bus.as_ref().is_some_and(|b| b.state.degraded()),
                now: SystemTime::now(),
            },
        ))
    }

    async fn purge(&self, session: &mut ServerSession) -> Result<Response<Vec<u8>>, AdminError> {
        let body = read_body(session).await?;
        let req: PurgeRequest =
            serde_json::from_slice(&body).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        let (kind, scopes) = req.scopes()?;
        // This node first (the answer means it is done here), then the fleet through the bus.
        let affected = self.invalidator.apply(Source::Admin, &scopes, req.soft);
        let seq = match (&self.bus, req.local) {
            (Some(bus), false) => {
                let msg = message::from_scopes(&scopes, req.soft);
                let seq = bus.publish(&msg).await.map_err(|e| AdminError::Bus {
                    purged: affected,
                    reason: e.to_string(),
                })?;
                Some(seq)
            }
            _ => None,
        };
        tracing::info!(target: "admin", kind, soft = req.soft, affected, seq, "purge");
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "purged": affected,
                "kind": kind,
                "soft": req.soft,
                "fleet": seq.is_some(),
                "seq": seq,
            }),
        ))
    }

    fn publish_store_gauges(&self) {
        metrics::set_store(
            self.store.entries(),
            self.store.weight(),
            self.store.capacity(),
            self.store.unreported_evictions(),
        );
        if let Some(bus) = &self.bus {
            let snap = bus.snapshot();
            metrics::set_bus(snap.lag, bus.state.degraded());
        }
    }

    /// Liveness, plus what an operator must know at a glance: the bus and the origins.
    fn health_json(&self) -> serde_json::Value {
        let bus = self.bus.as_ref().map(|b| b.snapshot().state);
        let origins_down = self.live.upstreams().health().iter().all(|u| !u.healthy);
        let status = if origins_down || bus.is_some_and(|s| s != "connected") {
            "degraded"
        } else {
            "ok"
        };
        json!({"status": status, "bus": bus, "upstreams": self.live.upstreams().health()})
    }

    fn stats_json(&self) -> serde_json::Value {
        let s = self.stats.snapshot();
        json!({
            "entries": self.store.entries(),
            "bytes": self.store.weight(),
            "capacity": self.store.capacity(),
            "hits": s.hits,
            "fast_hits": s.fast_hits,
            "front_passes": s.front_passes,
            "front_fills": s.front_fills,
            "misses": s.misses,
            "stale": s.stale,
            "revalidated": s.revalidated,
            "pass": s.pass,
            "bypass": s.bypass,
            "errors": s.errors,
            "hit_ratio": s.hit_ratio,
            "evictions": self.store.evictions(),
            "inflight_fill_bytes": self.store.inflight_bytes(),
            "tombstone_bytes": self.store.tombstone_bytes(),
            "purges": s.purges,
            "purged_entries": s.purged_entries,
            "origin_fetches": s.origin_fetches,
            "origin_fetch_micros": s.origin_fetch_micros,
            "bus": self.bus.as_ref().map(|b| b.snapshot()),
            "upstreams": self.live.upstreams().health(),
        })
    }
}

/// The request body, at most [`MAX_BODY`] bytes.
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, AdminError> {
    let mut body = Vec::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|_| AdminError::Read)?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(AdminError::TooLarge);
        }
    }
    Ok(body)
}

/// `url=…&header=Name: value&header=…` of `GET /explain`.
fn explain_query(query: &str) -> Result<ExplainRequest, AdminError> {
    let mut url = None;
    let mut headers = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "url" => url = Some(v.into_owned()),
            "header" => {
                let (name, value) = v.split_once(':').ok_or_else(|| {
                    AdminError::BadRequest(format!("header {v:?}: expected \"Name: value\""))
                })?;
                headers.push((name.to_string(), value.to_string()));
            }
            other => {
                return Err(AdminError::BadRequest(format!(
                    "unknown parameter {other:?} (url, header)"
                )))
            }
        }
    }
    let url = url.ok_or_else(|| AdminError::BadRequest("url is required".into()))?;
    Ok(ExplainRequest { url, headers })
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    let bytes = body.to_string().into_bytes();
    let mut resp = Response::new(bytes);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut resp = match self.route(session).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        let len = resp.body().len();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        console::protect(resp.headers_mut());
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(&'static str, Vec<Scope>), AdminError> {
        let req: PurgeRequest =
            serde_json::from_str(s).map_err(|e| AdminError::BadRequest(e.to_string()))?;
        req.scopes()
    }

    #[test]
    fn purge_bodies() {
        let (k, s) = parse(r#"{"urls": ["/a?b&a", "http://h:1/x"]}"#).unwrap();
        assert_eq!(k, "urls");
        assert_eq!(s[0], Scope::Path("/a?a&b".into()));
        assert_eq!(s[1], Scope::Url(UrlKey::new("h:1", "/x")));
        assert_eq!(parse(r#"{"prefix": "/api/"}"#).unwrap().0, "prefix");
        assert_eq!(
            parse(r#"{"groups": ["g"], "soft": true}"#).unwrap().0,
            "groups"
        );
        assert_eq!(parse(r#"{"all": true}"#).unwrap().1, vec![Scope::All]);
        assert!(parse(r#"{"all": false}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
        assert!(parse(r#"{"urls": [], "prefix": "/"}"#).is_err());
        assert!(parse(r#"{"prefix": "api"}"#).is_err());
        assert!(parse(r#"{"bogus": 1}"#).is_err());
    }
}
