//! The pingora `ProxyHttp` implementation. Each hook stays thin and delegates to the cache,
//! key and header modules.

mod ctx;
pub(crate) mod fast;
pub(crate) mod headers;

use crate::bus::Bus;
use crate::cache::encoding::{self, CompressionOptions};
use crate::cache::entry::{FillInfo, HitView};
use crate::cache::invalidate::{response_groups, Invalidator, MutationScopes, Source};
use crate::cache::key::{self, UrlKey};
use crate::cache::policy;
use crate::cache::post_reuse::PostFill;
use crate::cache::range;
use crate::cache::storage::BodyHit;
use crate::cache::store::Store;
use crate::cache::vary;
use crate::config::{ClientsConfig, Config, TimeoutConfig};
use crate::error::EdgeError;
use crate::live::Live;
use crate::metrics;
use crate::server::Lifecycle;
use crate::stats::Stats;
use async_trait::async_trait;
use bytes::Bytes;
use ctx::Ctx;
pub use fast::FastHits;
use headers::{Outcome, Timing, XCache};
use http::Method;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::lock::CacheKeyLockImpl;
use pingora_cache::predictor::Predictor;
use pingora_cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, ForcedFreshness, HitHandler,
    RespCacheable,
};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Shard count of the uncacheable-URL predictor.
pub const PREDICTOR_SHARDS: usize = 16;

/// Everything the proxy service shares across requests.
pub struct EdgeProxy {
    pub store: &'static Store,
    pub lock: &'static CacheKeyLockImpl,
    pub predictor: &'static Predictor<PREDICTOR_SHARDS>,
    pub invalidator: Invalidator,
    pub stats: &'static Stats,
    /// The reloadable parts: policy options (auth cookies, default stale windows), origins.
    pub live: Arc<Live>,
    /// The invalidation bus of a fleet (none on a single node).
    pub bus: Option<Arc<Bus>>,
    pub timeouts: TimeoutConfig,
    pub clients: ClientsConfig,
    /// Connection and in-flight request counts, and the draining flag.
    pub lifecycle: Arc<Lifecycle>,
    pub lock_wait: Duration,
    pub honour_request_directives: bool,
    /// The targeted fields that are this proxy's own, removed from every response it sends.
    pub own_fields: Vec<http::HeaderName>,
    pub compression: CompressionOptions,
    /// The fresh-hit lookup, shared with the raw HTTP/1 front.
    pub fast: Arc<FastHits>,
}

/// Predictor filter: a refusal that depends on the request (its credentials, directives or
/// status) says nothing about the URL, so it must not bypass the cache for everybody.
pub fn predictor_skips(reason: &'static str) -> bool {
    reason == policy::reason::REQUEST_SPECIFIC
}

/// Whether a GET/HEAD request carries a body (never stored, never answered from the cache).
fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().iter().any(|b| *b != b'0'))
}

impl EdgeProxy {
    fn outcome(&self, session: &Session, ctx: &Ctx) -> Outcome {
        let phase = session.cache.phase();
        let ttl = session
            .cache
            .maybe_cache_meta()
            .map(|m| policy::seconds_until(m.fresh_until(), SystemTime::now()));
        Outcome {
            phase,
            collapsed: session.cache.lock_duration().is_some(),
            fwd_status: ctx.fwd_status,
            stored: ctx.cacheable
                && matches!(phase, CachePhase::Miss | CachePhase::Expired)
                && session.cache.enabled(),
            ttl,
            forced_by_request: ctx.forced_by_request,
            bypassed: ctx.bypassed,
        }
    }

    fn timing(&self, session: &Session, ctx: &Ctx) -> Timing {
        Timing {
            total: ctx.start.elapsed(),
            lookup: session.cache.lookup_duration(),
            lock: session.cache.lock_duration(),
            origin: ctx.upstream_time,
        }
    }

    /// Writes a response the proxy generates itself, with the standard headers.
    async fn respond_error(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        err: EdgeError,
    ) -> Result<()> {
        let status = err.status();
        if status == 0 {
            return Ok(());
        }
        let body = err.body();
        // A stored response was found (a lookup hit) but not used: stale, and its revalidation
        // failed.
        let stale_entry = ctx.hit_entry.is_some();
        let mut resp = ResponseHeader::build(status, Some(6))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        let timing = self.timing(session, ctx);
        headers::stamp(
            &mut resp,
            XCache::Error,
            &headers::error_cache_status(err.code(), stale_entry),
            &timing,
        );
        ctx.x_cache = Some(XCache::Error);
        session.set_keepalive(None);
        session.write_response_header(Box::new(resp), false).await?;
        let is_head = session.req_header().method == Method::HEAD;
        session
            .write_response_body(if is_head { None } else { Some(body) }, true)
            .await
    }

    /// Writes a fresh stored response the way pingora's hit path would (the header was prepared
    /// at store time by `hit::served_header`; `Age` is added here), with our stamps.
    async fn serve_fresh_hit(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        view: &HitView,
        body: &Bytes,
        now: SystemTime,
        lookup: Duration,
    ) -> Result<()> {
        let mut resp = view.header.clone();
        let age = now.duration_since(view.epoch).unwrap_or_default().as_secs();
        resp.insert_header(http::header::AGE, age)?;
        let ttl = policy::seconds_until(view.fresh_until, now);
        let timing = Timing {
            total: ctx.start.elapsed(),
            lookup: Some(lookup),
            lock: None,
            origin: None,
        };
        headers::stamp(
            &mut resp,
            XCache::Hit,
            &headers::hit_cache_status(ttl),
            &timing,
        );
        ctx.x_cache = Some(XCache::Hit);
        self.stats.record_fast_hit();
        let header_only = session.req_header().method == Method::HEAD || body.is_empty();
        session
            .write_response_header(Box::new(resp), header_only)
            .await?;
        if !header_only {
            session
                .write_response_body(Some(body.clone()), true)
                .await?;
        }
        Ok(())
    }

    /// Writes an interim response (other than `100` and `101`, which pingora handles) to an
    /// HTTP/1 client at once, and has pingora skip its own copy.
    ///
    /// Why: pingora filters the upstream tasks of one read as a batch and, when the final header
    /// in that batch turns the response into a streamed cache fill, sends none of the batch to
    /// the client: a `103` that arrived in the same read as the final `200` was dropped (the
    /// public HTTP cache test suite's `interim-*` tests failed about one run in three).
    async fn pass_on_interim(&self, session: &mut Session, resp: &ResponseHeader) -> Result<()> {
        let status = resp.status.as_u16();
        if status == 100 || status == 101 || session.as_downstream().is_http2() {
            return Ok(());
        }
        let downstream = session.as_downstream_mut();
        downstream.set_ignore_info_resp(false);
        let written = downstream
            .write_response_header(Box::new(resp.clone()))
            .await;
        downstream.set_ignore_info_resp(true);
        written
    }

    /// Per-request settings of the client connection: the idle keep-alive timeout (none while
    /// draining), the pause allowed between two request body reads, and pipelining: requests
    /// a client sent before reading the previous response are answered in order (RFC 9112
    /// §9.3.2) instead of being dropped.
    fn client_connection_settings(&self, session: &mut Session) {
        // pingora keeps an HTTP/1.1 connection alive without any idle limit; bound it, but never
        // revive one the client (`Connection: close`, HTTP/1.0) or pingora already closed.
        let keepalive = session
            .get_keepalive()
            .filter(|_| !self.lifecycle.draining())
            .map(|_| self.clients.keepalive_secs);
        session.set_keepalive(keepalive);
        session.set_read_timeout(Some(Duration::from_millis(
            self.clients.body_read_timeout_ms,
        )));
        session.set_pipelining_enabled(true);
    }

    /// Whether the fetched response is stored, and how (`response_cache_filter`).
    fn cacheability(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        // After a 304, the stored header with the 304's fields overlaid (pingora's own merge
        // copies only a few fields; ours excludes what must not be merged, see `overlay_304`).
        // (`raw_304` is only kept while a stored meta exists.)
        let raw_304 = ctx.raw_304.take();
        let revalidated = raw_304.is_some();
        // Borrowed unless a 304 is overlaid: pingora calls this for every response while the
        // cache is enabled or bypassed (the predictor re-learns from it), pass-through included.
        let overlaid;
        let header: &ResponseHeader = match (raw_304, session.cache.maybe_cache_meta()) {
            (Some(not_modified), Some(stored)) => {
                overlaid = policy::overlay_304(stored.response_header(), &not_modified);
                &overlaid
            }
            _ => resp,
        };
        let Some(url) = ctx.url.clone() else {
            return Ok(RespCacheable::Uncacheable(
                pingora_cache::NoCacheReason::NeverEnabled,
            ));
        };
        let primary = url.primary_hash();
        match self
            .fast
            .judge(session.req_header(), header, &primary, !revalidated)
        {
            Ok(decided) => {
                let mut meta = decided.meta;
                let groups = response_groups(&header.headers);
                meta.extensions_mut().insert(FillInfo {
                    started: ctx.start,
                    url,
                    groups,
                    revalidates: ctx.hit_entry,
                });
                ctx.cacheable = true;
                if !revalidated {
                    // (`header` is `resp` itself here)
                    ctx.withheld = decided.withheld;
                }
                Ok(RespCacheable::Cacheable(meta))
            }
            Err(reason) => Ok(RespCacheable::Uncacheable(reason)),
        }
    }

    fn is_mutation(req: &RequestHeader) -> bool {
        !req.method.is_safe()
    }

    /// Compression of a response the cache is about to store (see `cache::encoding`): only a
    /// fill is compressed, so the stored variant is the encoded one and hits never compress.
    fn plan_compression(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if !session.cache.enabled() {
            return Ok(());
        }
        let req = session.req_header();
        let (_, encoder) = encoding::prepare(&self.compression, req, resp, &self.live.policy())?;
        ctx.encoder = encoder;
        Ok(())
    }
}

/// A timeout talking to the origin (not a slow client).
fn is_origin_timeout(e: &Error) -> bool {
    use pingora_error::ErrorType::{ConnectTimedout, ReadTimedout};
    e.esource() == &ErrorSource::Upstream && matches!(e.etype(), ConnectTimedout | ReadTimedout)
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .as_downstream()
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// What the bus requires of a request's cache hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BusRevalidation {
    #[default]
    None,
    /// The node may be missing invalidations: group-tagged entries are revalidated first.
    Grouped,
    /// The client wrote something this node has not applied yet: every hit is revalidated.
    All,
}

/// The outbox position of the client's last write: the read-your-writes cookie, or the
/// `LLMSelect-Invalidation-Id` request header that API clients echo from a mutation response.
pub(crate) fn written_position(req: &RequestHeader) -> Option<u64> {
    let header = req
        .headers
        .get(INVALIDATION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let cookie = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == policy::RYW_COOKIE)
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .max();
    header.max(cookie)
}

/// The origin's field naming the outbox id of a mutation's invalidation.
pub const INVALIDATION_ID: &str = "llmselect-invalidation-id";

/// On a mutation response that carries its outbox id, a cookie that makes every node of the
/// fleet revalidate this client's reads until it has applied that invalidation.
fn read_your_writes_cookie(resp: &mut ResponseHeader, bus: &Bus) -> Result<()> {
    let Some(id) = resp
        .headers
        .get(INVALIDATION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return Ok(());
    };
    let cookie = format!(
        "{}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        policy::RYW_COOKIE,
        bus.read_your_writes().as_secs()
    );
    resp.append_header(http::header::SET_COOKIE, cookie)?;
    Ok(())
}

/// Appends to `X-Forwarded-For` and `Forwarded` (RFC 7239); `tls`: the client came over TLS.
fn add_forwarding(req: &mut RequestHeader, ip: IpAddr, tls: bool) -> Result<()> {
    let (xff, forwarded) = forwarding_fields(&req.headers, ip, tls);
    req.insert_header("x-forwarded-for", xff)?;
    req.insert_header("forwarded", forwarded)
}

/// The `X-Forwarded-For` and `Forwarded` (RFC 7239) values a request forwarded for client `ip`
/// carries: the client's own values with this hop appended. `tls`: the client came over TLS.
pub(crate) fn forwarding_fields(
    headers: &http::HeaderMap,
    ip: IpAddr,
    tls: bool,
) -> (String, String) {
    const XFF: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
    let ip_text = ip_text(ip);
    // names, not strings: a `&str` name is parsed again on every lookup
    let previous = |name: &http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|prev| !prev.trim().is_empty())
    };
    let xff = match previous(&XFF) {
        Some(prev) => [prev, ", ", &ip_text].concat(),
        None => ip_text.to_string(),
    };
    let mut element = String::with_capacity(64);
    element.push_str("for=");
    match ip {
        IpAddr::V4(_) => element.push_str(&ip_text),
        IpAddr::V6(_) => {
            element.push_str("\"[");
            element.push_str(&ip_text);
            element.push_str("]\"");
        }
    }
    element.push_str(if tls { ";proto=https" } else { ";proto=http" });
    if let Some(host) = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        // Only a valid authority (no quote, backslash, `;` or `,`), always quoted: a client
        // cannot add `for=` elements or parameters through its Host.
        if key::valid_authority(host) {
            element.push_str(";host=\"");
            element.push_str(host);
            element.push('"');
        }
    }
    let forwarded = match previous(&http::header::FORWARDED) {
        Some(prev) => [prev, ", ", &element].concat(),
        None => element,
    };
    (xff, forwarded)
}

/// `ip` as text. The last address formatted on this thread is kept: the requests of one
/// connection (and of one client's connections) come from one address, and formatting it was a
/// tenth of a pass-through request's instructions.
fn ip_text(ip: IpAddr) -> std::rc::Rc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, std::rc::Rc<str>)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((seen, text)) if *seen == ip => text.clone(),
            _ => {
                let text: std::rc::Rc<str> = ip.to_string().into();
                *last = Some((ip, text.clone()));
                text
            }
        }
    })
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        let mut ctx = Ctx::new();
        ctx.inflight = Some(self.lifecycle.request());
        ctx
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.client_connection_settings(session);
        ctx.long_route =
            Config::is_long_route(&self.timeouts.long_routes, session.req_header().uri.path());
        if let Some(err) = self.fast.limit_error(session.req_header()) {
            self.respond_error(session, ctx, err).await?;
            return Ok(true);
        }
        // The arrival address only names the host of an HTTP/1.0 request without `Host`.
        let local = if session
            .req_header()
            .headers
            .contains_key(http::header::HOST)
        {
            None
        } else {
            session
                .as_downstream()
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.to_string())
        };
        ctx.url = UrlKey::from_request_or(session.req_header(), local.as_deref());
        let Some(url) = &ctx.url else {
            self.respond_error(session, ctx, EdgeError::BadRequest)
                .await?;
            return Ok(true);
        };
        ctx.bus_revalidation = self.fast.bus_revalidation(session.req_header());
        let Some(found) = self
            .fast
            .find(session.req_header(), url, ctx.bus_revalidation)
        else {
            return Ok(false);
        };
        // `find` only returns entries with a decoded view
        let Some(view) = found.entry.view.as_ref() else {
            return Ok(false);
        };
        let (body, now, lookup) = (&found.entry.body, found.now, found.lookup);
        self.serve_fresh_hit(session, ctx, view, body, now, lookup)
            .await?;
        Ok(true)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let req = session.req_header();
        let cacheable_method = req.method == Method::GET || req.method == Method::HEAD;
        let upgrade = req.headers.contains_key(http::header::UPGRADE);
        if cacheable_method && !upgrade && !has_body(req) && ctx.url.is_some() {
            let mut overrides = CacheOptionOverrides::default();
            overrides.wait_timeout = Some(self.lock_wait);
            session.cache.enable(
                self.store,
                None,
                Some(self.predictor),
                Some(self.lock),
                Some(overrides),
            );
            if !self.store.streams_fills() {
                // pingora's own size check aborts the fill; with streamed fills every client
                // reads from the fill, so the store turns an oversize fill into a pass-through
                // instead (`cache::inflight`), and known lengths are refused below
                session
                    .cache
                    .set_max_file_size_bytes(self.store.max_object_bytes());
            }
        }
        Ok(())
    }

    fn cache_key_callback(&self, _session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        match &ctx.url {
            Some(u) => Ok(u.cache_key()),
            None => Error::e_explain(pingora_error::ErrorType::InternalError, "no cache key"),
        }
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        hit: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<ForcedFreshness>> {
        let served = hit.as_any().downcast_ref::<BodyHit>().map(BodyHit::entry);
        ctx.hit_entry = served.map(|e| e.id);
        // soft-purged by an admin or bus invalidation: never served stale on `max-stale`
        let soft_purged = served.is_some_and(|e| e.is_soft_expired());
        // group-tagged: revalidated while the bus cannot vouch for it
        let grouped = served.is_some_and(|e| !e.groups.is_empty());
        match ctx.bus_revalidation {
            BusRevalidation::All => return Ok(Some(ForcedFreshness::ForceExpired)),
            BusRevalidation::Grouped if grouped => return Ok(Some(ForcedFreshness::ForceExpired)),
            _ => {}
        }
        if !self.honour_request_directives {
            return Ok(None);
        }
        let now = SystemTime::now();
        let age = now.duration_since(meta.epoch()).unwrap_or_default();
        let fresh_for = policy::seconds_until(meta.fresh_until(), now);
        let forced = policy::request_freshness(
            &session.req_header().headers,
            age,
            fresh_for,
            soft_purged
                || policy::forbids_stale(meta.headers(), &self.live.policy().targeted_fields),
        );
        if forced == Some(ForcedFreshness::ForceExpired) {
            ctx.forced_by_request = true;
        }
        Ok(forced)
    }

    fn cache_not_modified_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<bool> {
        Ok(crate::cache::hit::not_modified(session.req_header(), resp))
    }

    fn range_header_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> pingora_proxy::RangeType {
        range::apply(session.req_header(), resp)
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        let opts = self.live.policy();
        vary::variance(
            meta.headers(),
            &req.headers,
            &opts.auth_cookies,
            &opts.targeted_fields,
        )
    }

    fn should_serve_stale(
        &self,
        session: &mut Session,
        _ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        // Only called inside the stored response's SWR / SIE window.
        match error {
            None => true,
            Some(e) if e.esource() == &ErrorSource::Downstream => false,
            Some(_) => {
                // pingora does not reuse the client connection after serving stale on an error;
                // say so in the response (`Connection: close`) so clients do not reuse it either.
                session.set_keepalive(None);
                true
            }
        }
    }

    async fn proxy_upstream_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.bypassed = session.cache.bypassing();
        if policy::only_if_cached(&session.req_header().headers) {
            self.respond_error(session, ctx, EdgeError::NotCached)
                .await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(addr) = self.live.upstreams().select(&ctx.failed_upstreams) else {
            return Error::e_explain(
                pingora_error::ErrorType::ConnectNoRoute,
                "no origin left to try",
            );
        };
        ctx.upstream_addr = Some(addr);
        let mut peer = HttpPeer::new(addr, false, String::new());
        let t = &self.timeouts;
        peer.options.connection_timeout = Some(Duration::from_millis(t.connect_ms));
        peer.options.total_connection_timeout = Some(Duration::from_millis(t.connect_ms * 2));
        // Time to the response header and between body reads: short for ordinary routes, the
        // long idle window only for the LLM routes and their streams.
        peer.options.read_timeout = Some(if ctx.long_route {
            Duration::from_secs(t.read_secs)
        } else {
            Duration::from_millis(t.read_ms)
        });
        peer.options.write_timeout = Some(Duration::from_secs(t.write_secs));
        peer.options.idle_timeout = Some(Duration::from_secs(t.idle_secs));
        Ok(Box::new(peer))
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if !end_of_stream
            && ctx.start.elapsed() > Duration::from_millis(self.clients.body_timeout_ms)
        {
            metrics::record_client_timeout("body");
            return Err(Error::explain(
                pingora_error::ErrorType::ReadTimedout,
                "request body deadline",
            )
            .into_down());
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_start = Some(std::time::Instant::now());
        if let Some(ip) = client_ip(session) {
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            add_forwarding(req, ip, tls)?;
        }
        if let Some(stored) = session.cache.maybe_cache_meta() {
            encoding::origin_if_none_match(req, stored.response_header());
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(start) = ctx.upstream_start {
            let d = start.elapsed();
            ctx.upstream_time = Some(d);
            metrics::record_origin_fetch(d.as_secs_f64());
            self.stats.record_origin_fetch(d);
        }
        ctx.fwd_status = Some(resp.status.as_u16());
        policy::strip_forwarded_hop_by_hop(resp);
        if resp.status == http::StatusCode::NOT_MODIFIED {
            if let Some(stored) = session.cache.maybe_cache_meta() {
                encoding::suffix_304_etag(resp, stored.response_header());
                ctx.raw_304 = Some(resp.clone());
            }
        }
        self.plan_compression(session, resp, ctx)?;
        let req = session.req_header();
        let success = resp.status.is_success() || resp.status.is_redirection();
        if Self::is_mutation(req) && success {
            if let Some(bus) = &self.bus {
                read_your_writes_cookie(resp, bus)?;
            }
            if let Some(url) = &ctx.url {
                // Before the client sees the response: read-your-writes through this proxy.
                let scopes = MutationScopes::of(url, &resp.headers);
                self.invalidator
                    .apply(Source::Mutation, &scopes.all(), false);
                ctx.pending_groups = scopes.groups;
                // after the invalidation: what arrives from here on is newer than it
                ctx.post_fill = PostFill::plan(req, resp, url, &self.live.policy(), self.store);
            }
        }
        Ok(())
    }

    /// The fetcher of a cold key's first fill: requests arriving while it runs wait for it in
    /// the front (`cache::first_fill`).
    fn cache_miss(&self, session: &mut Session, ctx: &mut Ctx) {
        session.cache.cache_miss();
        if session.cache.enabled()
            && session.cache.is_cache_lock_writer()
            && session.cache.cache_key().variance_bin().is_none()
        {
            let primary = session.cache.cache_key().primary_bin();
            ctx.first_fill = self.store.first_fills().begin(primary);
        }
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        let decision = self.cacheability(session, resp, ctx);
        if !matches!(decision, Ok(RespCacheable::Cacheable(_))) {
            // nothing will be stored: whoever waits for this fill goes its own way now
            ctx.first_fill = None;
        }
        decision
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(encoder) = ctx.encoder.as_mut() {
            let input = body.as_deref().unwrap_or_default();
            let out = encoder.encode(input, end_of_stream).map_err(|e| {
                Error::because(pingora_error::ErrorType::InternalError, "compression", e)
            })?;
            // An empty chunk would end a chunked response early: send nothing instead.
            *body = (!out.is_empty()).then_some(out);
            if end_of_stream {
                let (coding, bytes_in, bytes_out) = encoder.totals();
                metrics::record_compression(coding.token(), bytes_in, bytes_out);
            }
        }
        if let Some(fill) = ctx.post_fill.as_mut() {
            if !fill.push(body.as_deref().unwrap_or_default()) {
                ctx.post_fill = None;
            }
        }
        if end_of_stream {
            if let Some(fill) = ctx.post_fill.take() {
                fill.commit();
            }
        }
        if end_of_stream && !ctx.pending_groups.is_empty() {
            // A streamed mutation commits its last write just before the body ends.
            let scopes = std::mem::take(&mut ctx.pending_groups);
            self.invalidator.apply(Source::Mutation, &scopes, false);
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // a streamed fill serves its fetching client from the stored header: give back what was
        // not stored (present already when the upstream header is served directly)
        for (name, value) in std::mem::take(&mut ctx.withheld) {
            if !resp.headers.contains_key(&name) {
                resp.append_header(name, value)?;
            }
        }
        for name in &self.own_fields {
            resp.remove_header(name);
        }
        if resp.status.is_informational() {
            // an interim response (`103 Early Hints`…) says nothing of the cache's outcome yet
            return self.pass_on_interim(session, resp).await;
        }
        if self.lifecycle.draining() {
            session.set_keepalive(None);
        }
        let outcome = self.outcome(session, ctx);
        let (x, cache_status) = headers::classify(&outcome);
        ctx.x_cache = Some(x);
        let timing = self.timing(session, ctx);
        headers::stamp(resp, x, &cache_status, &timing);
        Ok(())
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the origin: an idempotent request may try another one.
        if let Some(addr) = peer._address.as_inet() {
            ctx.failed_upstreams.push(*addr);
        }
        if self.live.upstreams().several() && session.req_header().method.is_idempotent() {
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let err = EdgeError::from_pingora(e);
        let mut code = err.status();
        if code > 0 && session.response_written().is_none() {
            if let Err(write_err) = self.respond_error(session, ctx, err).await {
                tracing::debug!(error = %write_err, "failed to send error response");
                code = 0;
            }
        } else {
            ctx.x_cache.get_or_insert(XCache::Error);
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if !ctx.pending_groups.is_empty() {
            // The stream ended without its end of body reaching us (the client went away, the
            // origin failed): apply its invalidation now rather than never.
            let scopes = std::mem::take(&mut ctx.pending_groups);
            self.invalidator.apply(Source::Mutation, &scopes, false);
        }
        if let Some(e) = e.filter(|e| is_origin_timeout(e)) {
            metrics::record_origin_timeout(ctx.long_route);
            if let Some(addr) = ctx.upstream_addr {
                // An origin that stopped answering: kept out of the rotation until its health
                // checks pass again.
                self.live.upstreams().mark_down(addr);
            }
            tracing::debug!(error = %e, "origin timed out");
        }
        let x = ctx.x_cache.unwrap_or(if e.is_some() {
            XCache::Error
        } else {
            XCache::Pass
        });
        let background = session.subrequest_ctx.is_some();
        let elapsed = ctx.start.elapsed();
        metrics::record_request(x, background, elapsed.as_secs_f64());
        if session.cache.lock_duration().is_some() {
            metrics::record_coalesced();
        }
        if !background {
            self.stats.record(x);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        fast::log_access(
            session.req_header(),
            status,
            x,
            background,
            ctx.fwd_status,
            elapsed,
            e.map(|e| e.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::header_map;

    #[test]
    fn forwarding_fields_append_this_hop() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let bare = header_map(&[("host", "example.test:8080")]);
        assert_eq!(
            forwarding_fields(&bare, v4, false),
            (
                "192.0.2.7".to_string(),
                "for=192.0.2.7;proto=http;host=\"example.test:8080\"".to_string()
            )
        );
        let chained = header_map(&[
            ("host", "bad\"host"),
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=198.51.100.1"),
        ]);
        assert_eq!(
            forwarding_fields(&chained, v6, true),
            (
                "198.51.100.1, 2001:db8::1".to_string(),
                "for=198.51.100.1, for=\"[2001:db8::1]\";proto=https".to_string()
            )
        );
        // the remembered address is not reused for another one
        assert_eq!(forwarding_fields(&bare, v4, false).0, "192.0.2.7");
        let blank = header_map(&[("x-forwarded-for", " ")]);
        assert_eq!(forwarding_fields(&blank, v6, false).0, "2001:db8::1");
    }
}
