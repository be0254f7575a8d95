//! The front's pass-through: HTTP/1.1 `GET`/`HEAD` requests for URLs the cache knows it cannot
//! store are forwarded to the origin here, beneath pingora's proxy state machine.
//!
//! Why: a `no-store` pass-through through pingora's path cost 38 µs of proxy CPU per request on
//! the bench VM, and pingora with no hooks at all 23 µs, against HAProxy's 11
//! (bench/results/profile-request-path.md). What pingora spends is per request (its session,
//! its cache state machine run for a request that bypasses the cache, its boxed futures, its
//! header copies); what is left here is reading two heads, writing two heads and relaying the
//! body.
//!
//! Which requests: what pingora's path would also pass by (the predictor, keyed by URL, says
//! the cache refused this URL's last response for a reason of the URL's own, e.g. `no-store`,
//! `private`); HTTP/1.1, no request body, no `Upgrade` or `Expect`, not `only-if-cached`. The
//! response is relayed as pingora's path relays a bypass (`X-Cache: BYPASS`,
//! `Cache-Status: …; fwd=bypass`, hop-by-hop fields removed, this proxy's own targeted fields
//! removed) with one difference: the origin's `Date` is kept (pingora writes its own). Its
//! cacheability is judged as pingora's path judges a bypassed response, so the predictor
//! re-learns a URL that became cacheable and the next request goes to pingora's cache path.
//! Interim responses (`103 Early Hints`…) are passed on unchanged as they arrive.
//!
//! The origin side: the origin is chosen as for pingora's path (the health-checked rotation),
//! connections are kept alive per worker thread ([`super::origin_pool`]), a pooled connection
//! the origin closed is retried once on a fresh one (the request is idempotent), a connection
//! refused moves on to the next origin when there are several, and the timeouts are
//! `timeouts.connect_ms`, `read_ms` (`read_secs` on long routes) and `write_secs`. Errors
//! before the response head was sent get the same `502`/`504` JSON answers as pingora's path;
//! after it, the client connection is closed.

use super::chunked::ChunkedScanner;
use super::front::connection_options;
use super::origin_pool::{self, OriginConn};
use crate::cache::hit;
use crate::cache::policy;
use crate::config::{Config, TimeoutConfig};
use crate::error::EdgeError;
use crate::metrics;
use crate::proxy::headers::{self, Timing, XCache};
use crate::proxy::{fast, forwarding_fields, FastHits};
use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, Method, Version};
use pingora_cache::key::HashBinary;
use pingora_cache::predictor::CacheablePredictor;
use pingora_core::protocols::http::date::get_cached_date;
use pingora_core::protocols::Stream;
use pingora_http::{RequestHeader, ResponseHeader};
use std::io::{self, ErrorKind};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Fields of an origin response head parsed at most; more is a bad response (502).
const MAX_RESPONSE_FIELDS: usize = 128;
/// A response head not complete within this many bytes is a bad response (502).
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
/// Interim (1xx) responses passed on before a final one at most; an origin that sends more is a
/// bad response (502).
const MAX_INTERIM_RESPONSES: usize = 16;
/// Bytes reserved for each read from the origin.
const READ_CHUNK: usize = 16 * 1024;

/// The forwarding fields, rewritten with this hop appended (the client's own values kept).
const FORWARDING: [&str; 2] = ["x-forwarded-for", "forwarded"];

/// See the module documentation.
pub struct Forwarder {
    pub(super) fast: Arc<FastHits>,
    timeouts: TimeoutConfig,
    /// This proxy's own targeted fields, removed from every response it sends.
    pub(super) own_fields: Vec<HeaderName>,
    /// Known-uncacheable URLs are forwarded here (`server.front_pass_through`).
    passes: bool,
    /// Plain misses of cold keys are fetched and stored here (`server.front_fill`, `super::fill`).
    pub(super) fills: Option<super::fill::FillSettings>,
}

/// The stamps of a relayed response: a bypass of a URL known uncacheable, or a miss whose
/// response the cache refused (`super::fill`), with the time its lookup took.
pub(super) enum Stamps {
    Bypass,
    Miss { lookup: Duration },
}

/// What [`Forwarder::exchange`] sends where.
struct Sending<'a> {
    addr: SocketAddr,
    request: &'a [u8],
    req: &'a RequestHeader,
    read_timeout: Duration,
    /// See [`Forwarder::fetch`].
    cased: bool,
}

/// How a forwarded request ended, for the front.
pub enum Forwarded {
    /// The response was sent whole; `true`: the client connection may carry another request.
    Sent(bool),
    /// The connection cannot be used any more (the client went away, or the response could not
    /// be completed).
    Broken,
}

/// How the origin's response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Read until the origin closes (also what the client gets, with `Connection: close`).
    Close,
}

/// An origin response head.
pub(super) struct OriginHead {
    /// The head as the cache policy reads it: field names lower-case, values sharing one copy of
    /// the head's bytes (no case map: the client gets [`Self::wire`], not this). When fetched
    /// `cased` ([`Forwarder::fetch`]): built as pingora's HTTP/1 client builds it (the origin's
    /// version, reason phrase and field spelling kept), for a header that may be stored.
    pub(super) header: ResponseHeader,
    /// The status line and the fields relayed to the client, in the origin's order and spelling,
    /// without the blank line: the fields of this connection only (hop-by-hop, those its
    /// `Connection` names, `Connection` itself), this proxy's own targeted fields, and
    /// `Content-Length` beside chunked framing are left out. Empty for a `cased` head: a fill
    /// writes its client's head from the stored one, or from the header ([`relayed_head`]) when
    /// the cache refuses the response.
    pub(super) wire: Vec<u8>,
    pub(super) framing: Framing,
    /// The origin lets the connection be reused after this response.
    pub(super) keepalive: bool,
}

/// An origin response head that arrived, and what relaying its body needs.
pub(super) struct Exchange {
    pub(super) addr: SocketAddr,
    pub(super) conn: OriginConn,
    pub(super) head: OriginHead,
    /// Bytes read after the head.
    pub(super) buf: BytesMut,
    /// Time to the response head.
    pub(super) origin_time: Duration,
    pub(super) read_timeout: Duration,
    pub(super) long_route: bool,
}

/// Why an exchange with an origin failed before a response head arrived.
#[derive(Debug)]
enum Failure {
    /// No connection could be made: another origin may be tried.
    Connect,
    Timeout,
    /// The connection failed or the origin sent something unreadable.
    Broken,
}

impl Failure {
    fn edge_error(&self) -> EdgeError {
        match self {
            Failure::Timeout => EdgeError::OriginTimeout,
            Failure::Connect | Failure::Broken => EdgeError::OriginUnavailable,
        }
    }
}

impl Forwarder {
    /// `passes`: forward known-uncacheable URLs; `fills`: fetch and store plain misses.
    pub fn new(
        fast: Arc<FastHits>,
        timeouts: TimeoutConfig,
        own_fields: Vec<HeaderName>,
        passes: bool,
        fills: Option<super::fill::FillSettings>,
    ) -> Self {
        Forwarder {
            fast,
            timeouts,
            own_fields,
            passes,
            fills,
        }
    }

    /// Whether the front forwards `req` (its primary key `primary`, with `body` bytes of body)
    /// itself because its URL is known uncacheable (the predictor).
    pub fn takes(&self, req: &RequestHeader, primary: &HashBinary, body: Option<usize>) -> bool {
        self.passes
            && forwardable(req, body)
            && !self
                .fast
                .predictor
                .cacheable_prediction(&hit::primary_only_key(primary))
    }

    /// Whether the front forwards `req` itself because the cache refused the last response to
    /// this URL for these credentials (`cache::credential_pass`).
    pub fn takes_for_credential(
        &self,
        req: &RequestHeader,
        primary: &HashBinary,
        body: Option<usize>,
    ) -> bool {
        // nothing refused for any credential (the usual case) settles it first
        self.passes
            && self.fast.any_credential_refused()
            && forwardable(req, body)
            && !hit::has_directives(&req.headers)
            && self.fast.credential_refused(primary, req)
    }

    /// Forwards `req` (its target's primary key `primary`) and relays the response to `client`.
    /// `keepalive`: the client lets the connection stay open; `start`: when the request head was
    /// read.
    pub async fn forward(
        &self,
        client: &mut Stream,
        req: &RequestHeader,
        primary: &HashBinary,
        keepalive: bool,
        start: Instant,
    ) -> Forwarded {
        let Some(exchange) = self.fetch(client, req, false, start).await else {
            return Forwarded::Broken;
        };
        let status = exchange.head.header.status.as_u16();
        // counted before the client can see the response (whoever reads `/stats` after it sees
        // it counted), as pingora's `logging` counts a bypass
        self.fast.stats.record(XCache::Bypass);
        self.fast.stats.record_front_pass();
        self.learn(req, primary, &exchange.head.header);
        let relayed = self
            .relay(client, exchange, Stamps::Bypass, keepalive, start)
            .await;
        self.finished(req, XCache::Bypass, status, start, &relayed);
        match relayed {
            Ok(reusable) => Forwarded::Sent(reusable),
            Err(_) => Forwarded::Broken,
        }
    }

    /// Records a request the front forwarded once its response was relayed (or failed).
    pub(super) fn finished(
        &self,
        req: &RequestHeader,
        x: XCache,
        status: u16,
        start: Instant,
        relayed: &io::Result<bool>,
    ) {
        let elapsed = start.elapsed();
        metrics::record_request(x, false, elapsed.as_secs_f64());
        let error = relayed.as_ref().err().map(|e| e.to_string());
        fast::log_access(req, status, x, false, Some(status), elapsed, error);
    }

    /// Sends `req` to an origin and reads its response head (`cased`: the policy's header keeps
    /// the origin's spelling, as pingora's client builds it, for a header that may be stored).
    /// On a failure the client gets pingora's `502`/`504` answer and `None` is returned.
    pub(super) async fn fetch(
        &self,
        client: &mut Stream,
        req: &RequestHeader,
        cased: bool,
        start: Instant,
    ) -> Option<Exchange> {
        let long_route = Config::is_long_route(&self.timeouts.long_routes, req.uri.path());
        let read_timeout = if long_route {
            Duration::from_secs(self.timeouts.read_secs)
        } else {
            Duration::from_millis(self.timeouts.read_ms)
        };
        let request = self.request_bytes(req, client);
        let upstream_start = Instant::now();
        let mut failed: Vec<SocketAddr> = Vec::new();
        let exchanged = loop {
            let upstreams = self.fast.live.upstreams();
            let Some(addr) = upstreams.select(&failed) else {
                break Err((None, Failure::Connect));
            };
            let sending = Sending {
                addr,
                request: &request,
                req,
                read_timeout,
                cased,
            };
            match self.exchange(client, sending).await {
                Ok((conn, head, buf)) => break Ok((addr, conn, head, buf)),
                Err(Failure::Connect) if upstreams.several() => failed.push(addr),
                Err(failure) => break Err((Some(addr), failure)),
            }
        };
        let (addr, conn, head, buf) = match exchanged {
            Ok(exchanged) => exchanged,
            Err((addr, failure)) => {
                if let (Some(addr), Failure::Timeout) = (addr, &failure) {
                    metrics::record_origin_timeout(long_route);
                    // as pingora's path: out of the rotation until its health checks pass
                    self.fast.live.upstreams().mark_down(addr);
                }
                self.respond_error(client, req, failure.edge_error(), start)
                    .await;
                return None;
            }
        };
        let origin_time = upstream_start.elapsed();
        metrics::record_origin_fetch(origin_time.as_secs_f64());
        self.fast.stats.record_origin_fetch(origin_time);
        Some(Exchange {
            addr,
            conn,
            head,
            buf,
            origin_time,
            read_timeout,
            long_route,
        })
    }

    /// The request as sent to the origin: its own head without the per-connection fields, the
    /// forwarding fields added as pingora's path adds them.
    fn request_bytes(&self, req: &RequestHeader, client: &Stream) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(req.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(req.raw_path());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let named = policy::connection_named(&req.headers);
        for (name, value) in req.headers.iter() {
            let n = name.as_str();
            // the fields of one connection only (RFC 9110 §7.6.1), and those rewritten below
            if policy::HOP_BY_HOP.contains(&n)
                || FORWARDING.contains(&n)
                || named.iter().any(|c| c.eq_ignore_ascii_case(n))
            {
                continue;
            }
            push_field(&mut out, n.as_bytes(), value.as_bytes());
        }
        let ip = client
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        match ip {
            Some(ip) => self.push_forwarding(&mut out, req, ip, client),
            None => {
                // no client address (a Unix socket): the fields are passed on as they came
                for name in FORWARDING {
                    for value in req.headers.get_all(name) {
                        push_field(&mut out, name.as_bytes(), value.as_bytes());
                    }
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn push_forwarding(&self, out: &mut Vec<u8>, req: &RequestHeader, ip: IpAddr, client: &Stream) {
        let tls = client.get_ssl_digest().is_some();
        let (xff, forwarded) = forwarding_fields(&req.headers, ip, tls);
        push_field(out, b"x-forwarded-for", xff.as_bytes());
        push_field(out, b"forwarded", forwarded.as_bytes());
    }

    /// Sends `request` to `addr` and reads the response head (1xx responses are passed on to
    /// `client` as they arrive, RFC 9110 §15.2). A pooled
    /// connection that fails before any response byte arrived is replaced by a fresh one once.
    async fn exchange(
        &self,
        client: &mut Stream,
        sending: Sending<'_>,
    ) -> Result<(OriginConn, OriginHead, BytesMut), Failure> {
        let Sending {
            addr,
            request,
            req,
            read_timeout,
            cased,
        } = sending;
        let idle = Duration::from_secs(self.timeouts.idle_secs);
        let write_timeout = Duration::from_secs(self.timeouts.write_secs);
        let mut pooled = origin_pool::take(addr, idle);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => self.connect(addr).await?,
            };
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let sent = match timeout(write_timeout, conn.stream.write_all(request)).await {
                Err(_) => return Err(Failure::Timeout),
                Ok(sent) => sent,
            };
            let head = match sent {
                Ok(()) => {
                    let origin = Origin {
                        conn: &mut conn,
                        read_timeout,
                        own_fields: &self.own_fields,
                        cased,
                    };
                    read_head(origin, &mut buf, req, client).await
                }
                Err(_) => Err(Failure::Broken),
            };
            match head {
                Ok(head) => return Ok((conn, head, buf)),
                // the origin closed the idle connection as the request went out
                Err(Failure::Broken) if reused && buf.is_empty() => continue,
                Err(failure) => return Err(failure),
            }
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<OriginConn, Failure> {
        let limit = Duration::from_millis(self.timeouts.connect_ms);
        match timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(_)) => Err(Failure::Connect),
            Ok(Ok(conn)) => {
                let _ = conn.set_nodelay(true);
                Ok(OriginConn::new(conn))
            }
        }
    }

    /// Writes the response head and relays the body; returns whether the client connection may
    /// carry another request. The origin connection is parked again when its response ended
    /// cleanly and nothing followed it.
    pub(super) async fn relay(
        &self,
        client: &mut Stream,
        exchange: Exchange,
        stamps: Stamps,
        keepalive: bool,
        start: Instant,
    ) -> io::Result<bool> {
        let Exchange {
            addr,
            mut conn,
            head,
            mut buf,
            origin_time,
            read_timeout,
            long_route,
        } = exchange;
        let OriginHead {
            header: resp,
            wire,
            framing,
            keepalive: origin_keepalive,
        } = head;
        let client_keepalive = keepalive && framing != Framing::Close;
        let (x, lookup) = match stamps {
            Stamps::Bypass => (XCache::Bypass, None),
            Stamps::Miss { lookup } => (XCache::Miss, Some(lookup)),
        };
        let timing = Timing {
            total: start.elapsed(),
            lookup,
            lock: None,
            origin: Some(origin_time),
        };
        let mut out = Vec::with_capacity(wire.len() + 512 + buf.len());
        out.extend_from_slice(&wire);
        if !resp.headers.contains_key(header::DATE) {
            push_field(&mut out, b"date", get_cached_date().as_bytes());
        }
        headers::write_pass_fields(&mut out, x, resp.status.as_u16(), &timing, client_keepalive);

        // the body bytes that arrived with the head go out with it
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut chunks = ChunkedScanner::default();
        let mut ended = take_body(&mut buf, framing, &mut left, &mut chunks, &mut out)?;
        client.write_all(&out).await?;
        while !ended {
            buf.reserve(READ_CHUNK);
            let read = match conn.read(read_timeout, &mut buf).await {
                Some(read) => read?,
                None => {
                    metrics::record_origin_timeout(long_route);
                    return Err(ErrorKind::TimedOut.into());
                }
            };
            if read == 0 {
                if framing == Framing::Close {
                    break;
                }
                return Err(ErrorKind::UnexpectedEof.into());
            }
            out.clear();
            ended = take_body(&mut buf, framing, &mut left, &mut chunks, &mut out)?;
            client.write_all(&out).await?;
        }
        client.flush().await?;
        if origin_keepalive && framing != Framing::Close && buf.is_empty() {
            origin_pool::put(addr, conn);
        }
        Ok(client_keepalive)
    }

    /// What pingora's path learns from a bypassed response: a URL whose response became
    /// storable goes back to the cache path, and a refusal keeps it bypassed.
    fn learn(&self, req: &RequestHeader, primary: &HashBinary, resp: &ResponseHeader) {
        let key = hit::primary_only_key(primary);
        // whether it would be stored, not its stored form
        let policy = self.fast.live.policy();
        match self.fast.assess(req, resp, primary, true, &policy) {
            Ok(_) => {
                self.fast.predictor.mark_cacheable(&key);
            }
            Err(reason) => {
                self.fast.predictor.mark_uncacheable(&key, reason);
            }
        }
    }

    /// Answers an error before anything of a response was sent, as pingora's path answers it
    /// (`respond_error`), and closes the connection.
    async fn respond_error(
        &self,
        client: &mut Stream,
        req: &RequestHeader,
        err: EdgeError,
        start: Instant,
    ) {
        let body = err.body();
        let timing = Timing {
            total: start.elapsed(),
            ..Timing::default()
        };
        let mut resp = match ResponseHeader::build(err.status(), Some(8)) {
            Ok(resp) => resp,
            Err(_) => return,
        };
        let _ = resp.insert_header(header::CONTENT_TYPE, "application/json");
        let _ = resp.insert_header(header::CONTENT_LENGTH, body.len());
        let _ = resp.insert_header(header::CACHE_CONTROL, "no-store");
        headers::stamp(
            &mut resp,
            XCache::Error,
            &headers::error_cache_status(err.code(), false),
            &timing,
        );
        let _ = resp.insert_header(header::DATE, get_cached_date());
        let _ = resp.insert_header(header::CONNECTION, "close");
        let mut out = Vec::with_capacity(512 + body.len());
        push_head(&mut out, &resp);
        out.extend_from_slice(b"\r\n");
        if req.method != Method::HEAD {
            out.extend_from_slice(&body);
        }
        self.fast.stats.record(XCache::Error);
        let _ = client.write_all(&out).await;
        let _ = client.flush().await;
        let _ = AsyncWriteExt::shutdown(client).await;
        metrics::record_request(XCache::Error, false, start.elapsed().as_secs_f64());
        fast::log_access(
            req,
            err.status(),
            XCache::Error,
            false,
            None,
            start.elapsed(),
            Some(err.code().to_string()),
        );
    }
}

/// What any request the front forwards must be: HTTP/1.1, no body, no `Upgrade` or `Expect`, not
/// `only-if-cached`.
pub(super) fn forwardable(req: &RequestHeader, body: Option<usize>) -> bool {
    req.version == Version::HTTP_11
        && body == Some(0)
        && !req.headers.contains_key(header::UPGRADE)
        && !req.headers.contains_key(header::EXPECT)
        && !policy::only_if_cached(&req.headers)
}

/// Moves the body bytes at the start of `buf` (as far as the body goes) to `out`; returns
/// whether the body ended. What follows the body stays in `buf`.
pub(super) fn take_body(
    buf: &mut BytesMut,
    framing: Framing,
    left: &mut u64,
    chunks: &mut ChunkedScanner,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let n = match framing {
        Framing::Empty => 0,
        Framing::Length(_) => (*left).min(buf.len() as u64) as usize,
        Framing::Chunked => chunks
            .scan(buf)
            .map_err(|_| io::Error::new(ErrorKind::InvalidData, "malformed chunked body"))?,
        Framing::Close => buf.len(),
    };
    out.extend_from_slice(&buf[..n]);
    buf.advance(n);
    Ok(match framing {
        Framing::Empty => true,
        Framing::Length(_) => {
            *left -= n as u64;
            *left == 0
        }
        Framing::Chunked => chunks.done(),
        Framing::Close => false,
    })
}

/// The status line and fields of `resp` (not the blank line that ends them).
pub(super) fn push_head(out: &mut Vec<u8>, resp: &ResponseHeader) {
    push_status_line(out, resp.status);
    resp.header_to_h1_wire(out);
}

pub(super) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A response head built as pingora's HTTP/1 client builds it (pingora-core 0.9.1
/// `read_response`): the origin's version and reason phrase, every field in order with the
/// origin's spelling in the case map, and no `Content-Length` beside `Transfer-Encoding`.
fn pingora_header(
    status: http::StatusCode,
    minor: u8,
    reason: Option<&str>,
    fields: &[httparse::Header<'_>],
    shared: &dyn Fn(&[u8]) -> Bytes,
    chunked: bool,
) -> Result<ResponseHeader, Failure> {
    let mut header =
        ResponseHeader::build(status, Some(fields.len())).map_err(|_| Failure::Broken)?;
    header.set_version(if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    });
    header
        .set_reason_phrase(reason)
        .map_err(|_| Failure::Broken)?;
    for field in fields {
        let value =
            HeaderValue::from_maybe_shared(shared(field.value)).map_err(|_| Failure::Broken)?;
        header
            .append_header(shared(field.name.as_bytes()), value)
            .map_err(|_| Failure::Broken)?;
    }
    if chunked {
        header.remove_header(&header::CONTENT_LENGTH);
    }
    Ok(header)
}

/// The origin connection a response head is read from, and what reading it needs.
struct Origin<'a> {
    conn: &'a mut OriginConn,
    read_timeout: Duration,
    /// This proxy's own targeted fields, never relayed.
    own_fields: &'a [HeaderName],
    /// See [`Forwarder::fetch`].
    cased: bool,
}

/// Reads an origin response head into `buf` and leaves the bytes after it there. Interim (1xx)
/// responses before it are written to `client` as they arrive.
async fn read_head(
    origin: Origin<'_>,
    buf: &mut BytesMut,
    req: &RequestHeader,
    client: &mut Stream,
) -> Result<OriginHead, Failure> {
    let mut interim = 0;
    loop {
        if !buf.is_empty() {
            match parse_head(buf, req, origin.own_fields, origin.cased)? {
                Some((len, Some(head))) => {
                    buf.advance(len);
                    return Ok(head);
                }
                Some((_, None)) if interim == MAX_INTERIM_RESPONSES => {
                    return Err(Failure::Broken);
                }
                Some((len, None)) => {
                    interim += 1;
                    // a client that went away fails on the final head's write
                    let _ = client.write_all(&buf[..len]).await;
                    let _ = client.flush().await;
                    buf.advance(len);
                    continue;
                }
                None if buf.len() > MAX_RESPONSE_HEAD_BYTES => return Err(Failure::Broken),
                None => {}
            }
        }
        buf.reserve(READ_CHUNK);
        match origin.conn.read(origin.read_timeout, buf).await {
            None => return Err(Failure::Timeout),
            Some(Ok(0)) | Some(Err(_)) => return Err(Failure::Broken),
            Some(Ok(_)) => {}
        }
    }
}

/// Parses the response head at the start of `buf`: `None` when incomplete; else its length and
/// the head (`None` for an interim 1xx response, which the caller passes on as it came).
/// `own_fields` are left out of what the client gets.
///
/// The head is parsed once and copied once: the policy's `ResponseHeader` takes its values as
/// slices of that copy and has no case map, and the client's head is written from the parsed
/// fields as the origin spelled them (a field per allocation and a case-preserving map cost
/// a sixth of a pass-through's instructions).
#[allow(clippy::type_complexity)]
fn parse_head(
    buf: &[u8],
    req: &RequestHeader,
    own_fields: &[HeaderName],
    cased: bool,
) -> Result<Option<(usize, Option<OriginHead>)>, Failure> {
    // uninitialised: zeroing the whole array was a tenth of this function's instructions
    let mut fields = [const { MaybeUninit::uninit() }; MAX_RESPONSE_FIELDS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Broken),
    };
    let (Some(code), Some(minor)) = (parsed.code, parsed.version) else {
        return Err(Failure::Broken);
    };
    // 101 cannot answer a request without `Upgrade`; other 1xx are interim
    if code == 101 {
        return Err(Failure::Broken);
    }
    if (100..200).contains(&code) {
        return Ok(Some((len, None)));
    }
    let status = http::StatusCode::from_u16(code).map_err(|_| Failure::Broken)?;
    let mut map = http::HeaderMap::with_capacity(if cased { 0 } else { parsed.headers.len() });
    let copy = Bytes::copy_from_slice(&buf[..len]);
    let shared = |part: &[u8]| {
        let at = part.as_ptr() as usize - buf.as_ptr() as usize;
        copy.slice(at..at + part.len())
    };
    let (mut close, mut keep_alive) = (false, false);
    let mut chunked = None;
    let mut length: Option<u64> = None;
    let mut names = Vec::with_capacity(if cased { 0 } else { parsed.headers.len() });
    for field in parsed.headers.iter() {
        // the framing fields found by their bytes: a `cased` head's names are parsed once, by
        // pingora's `append_header` below
        let raw = field.name.as_bytes();
        if raw.eq_ignore_ascii_case(b"connection") {
            connection_options(field.value, &mut close, &mut keep_alive);
        } else if raw.eq_ignore_ascii_case(b"transfer-encoding") {
            // the final coding decides (RFC 9112 §6.3)
            let last = field
                .value
                .rsplit(|b| *b == b',')
                .next()
                .unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if raw.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(field.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(Failure::Broken)?;
            if length.is_some_and(|l| l != n) {
                return Err(Failure::Broken);
            }
            length = Some(n);
        }
        // straight into a map: pingora's `append_header` would copy the name into a titled
        // spelling for a case map this header does not have, and parse it back (a `cased` head
        // is built below instead)
        if !cased {
            let name = HeaderName::from_bytes(raw).map_err(|_| Failure::Broken)?;
            let value =
                HeaderValue::from_maybe_shared(shared(field.value)).map_err(|_| Failure::Broken)?;
            map.try_append(name.clone(), value)
                .map_err(|_| Failure::Broken)?;
            names.push(name);
        }
    }
    let no_body = req.method == Method::HEAD || matches!(code, 204 | 304);
    let framing = match (no_body, chunked, length) {
        (true, _, _) => Framing::Empty,
        (false, Some(true), _) => Framing::Chunked,
        (false, Some(false), _) => Framing::Close,
        (false, None, Some(0)) => Framing::Empty,
        (false, None, Some(n)) => Framing::Length(n),
        (false, None, None) => Framing::Close,
    };
    if chunked.is_some() {
        // the length is the chunked framing's to give (RFC 9112 §6.3)
        map.remove(header::CONTENT_LENGTH);
    }
    let header = if cased {
        pingora_header(
            status,
            minor,
            parsed.reason,
            parsed.headers,
            &shared,
            chunked.is_some(),
        )?
    } else {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.headers = map;
        ResponseHeader::from(parts)
    };
    let keepalive = if minor == 1 {
        !close
    } else {
        keep_alive && !close
    };
    // a `cased` head is the fill's: stored, its client head written from the stored one (the
    // wire of a refused one is `relayed_head`'s)
    let wire = if cased {
        Vec::new()
    } else {
        relayed_wire(
            &header.headers,
            status,
            parsed.headers,
            &names,
            chunked.is_some(),
            own_fields,
        )
    };
    Ok(Some((
        len,
        Some(OriginHead {
            header,
            wire,
            framing,
            keepalive,
        }),
    )))
}

/// The head relayed to the client from an origin's parsed `fields` (`names`: theirs, parsed) in
/// the origin's order and spelling: what pingora's path strips from a forwarded response (the
/// same rule, and the `Connection` field), `Content-Length` beside chunked framing, and this
/// proxy's own fields left out.
fn relayed_wire(
    headers: &http::HeaderMap,
    status: http::StatusCode,
    fields: &[httparse::Header<'_>],
    names: &[HeaderName],
    chunked: bool,
    own_fields: &[HeaderName],
) -> Vec<u8> {
    let named = policy::connection_named(headers);
    let relayed = |name: &HeaderName| {
        !(name == header::CONNECTION
            || policy::forwarded_hop_by_hop(name.as_str(), &named)
            || (chunked && name == header::CONTENT_LENGTH)
            || own_fields.contains(name))
    };
    let mut wire = Vec::with_capacity(512);
    push_status_line(&mut wire, status);
    for (field, name) in fields.iter().zip(names) {
        if relayed(name) {
            push_field(&mut wire, field.name.as_bytes(), field.value);
        }
    }
    wire
}

/// The head relayed to the client for `resp`, a fetched `cased` head the cache did not take
/// (the fields its `Connection` names stripped already, `policy::strip_forwarded_hop_by_hop`):
/// its fields as the case map spells them, without `Connection` (the client's own is written
/// after this) and this proxy's own fields. Field order is pingora's map order (a name's values
/// together), as pingora's path writes the same response.
pub(super) fn relayed_head(resp: &ResponseHeader, own_fields: &[HeaderName]) -> Vec<u8> {
    let relayed = |name: &HeaderName| name != header::CONNECTION && !own_fields.contains(name);
    let mut wire = Vec::with_capacity(512);
    push_status_line(&mut wire, resp.status);
    if resp.has_case() {
        for ((name, _), (spelled, value)) in resp.headers.iter().zip(resp.case_header_iter()) {
            if relayed(name) {
                push_field(&mut wire, spelled.as_slice(), value.as_bytes());
            }
        }
    } else {
        for (name, value) in resp.headers.iter() {
            if relayed(name) {
                push_field(&mut wire, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    wire
}

fn push_status_line(out: &mut Vec<u8>, status: http::StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> RequestHeader {
        RequestHeader::build("GET", b"/", None).unwrap()
    }

    fn head_of(raw: &str, req: &RequestHeader) -> OriginHead {
        match parse_head(raw.as_bytes(), req, &[], false) {
            Ok(Some((_, Some(head)))) => head,
            _ => panic!("not a final head: {raw:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let req = get();
        let f = |raw: &str| head_of(raw, &req).framing;
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Framing::Empty
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Framing::Close
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n"), Framing::Close);
        assert_eq!(
            f("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
            Framing::Empty
        );
        let head = RequestHeader::build("HEAD", b"/", None).unwrap();
        assert_eq!(
            head_of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &head).framing,
            Framing::Empty
        );
        // differing lengths: a bad response
        assert!(parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            &req,
            &[],
            false
        )
        .is_err());
    }

    #[test]
    fn interim_responses_are_skipped_and_connection_semantics_kept() {
        let req = get();
        assert!(matches!(
            parse_head(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
                &req,
                &[],
                false
            ),
            Ok(Some((25, None)))
        ));
        assert!(
            !head_of(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                &req
            )
            .keepalive
        );
        assert!(!head_of("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &req).keepalive);
        assert!(
            head_of(
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                &req
            )
            .keepalive
        );
        // field names keep the origin's case
        let head = head_of(
            "HTTP/1.1 200 OK\r\nX-Mixed-Case: 1\r\nContent-Length: 0\r\n\r\n",
            &req,
        );
        assert!(String::from_utf8_lossy(&head.wire).contains("X-Mixed-Case: 1"));
    }

    #[test]
    fn the_client_gets_the_origin_fields_of_no_other_hop() {
        let req = get();
        let own = [HeaderName::from_static("edge-cache-control")];
        let raw = "HTTP/1.0 404 Whatever\r\nX-A: 1\r\nConnection: keep-alive, X-Hop, Content-Length\r\n\
                   Keep-Alive: timeout=5\r\nX-Hop: secret\r\nSet-Cookie: a=1\r\nProxy-Connection: x\r\n\
                   Edge-Cache-Control: max-age=9\r\nContent-Length: 3\r\nset-cookie: b=2\r\n\r\nabc";
        let Ok(Some((len, Some(head)))) = parse_head(raw.as_bytes(), &req, &own, false) else {
            panic!("not a final head");
        };
        assert_eq!(&raw[len..], "abc");
        // the origin's order and spelling; the status line of this hop (HTTP/1.1, the
        // canonical reason)
        assert_eq!(
            String::from_utf8_lossy(&head.wire),
            "HTTP/1.1 404 Not Found\r\nX-A: 1\r\nSet-Cookie: a=1\r\nContent-Length: 3\r\n\
             set-cookie: b=2\r\n"
        );
        assert_eq!(head.framing, Framing::Length(3));
        assert!(head.keepalive);
        // the policy sees every field of the origin
        let h = &head.header.headers;
        assert_eq!(h.get("x-hop").unwrap(), "secret");
        assert_eq!(h.get("edge-cache-control").unwrap(), "max-age=9");
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
        // beside chunked framing the length is dropped for both
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = head_of(raw, &req);
        assert_eq!(
            String::from_utf8_lossy(&head.wire),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        );
        assert!(!head.header.headers.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn a_refused_fills_head_is_relayed_as_the_parsed_one_would_be() {
        let raw = "HTTP/1.1 200 OK\r\nX-Mixed-Case: 1\r\nConnection: keep-alive, x-hop\r\n\
                   X-Hop: h\r\nKeep-Alive: timeout=5\r\nLLMSelect-Cache-Control: max-age=5\r\n\
                   Cache-Control: private\r\nContent-Length: 2\r\n\r\n";
        let own = [HeaderName::from_static("llmselect-cache-control")];
        let req = get();
        let parsed = |cased| match parse_head(raw.as_bytes(), &req, &own, cased) {
            Ok(Some((_, Some(head)))) => head,
            _ => panic!("not a final head"),
        };
        // what the front's pass-through relays of it
        let relayed = parsed(false).wire;
        // what the fill relays once the cache refused it: its header stripped as the fill strips
        // it, then written
        let mut header = parsed(true).header;
        policy::strip_forwarded_hop_by_hop(&mut header);
        assert_eq!(
            String::from_utf8_lossy(&relayed_head(&header, &own)),
            String::from_utf8_lossy(&relayed)
        );
        assert_eq!(
            String::from_utf8_lossy(&relayed),
            "HTTP/1.1 200 OK\r\nX-Mixed-Case: 1\r\nCache-Control: private\r\nContent-Length: 2\r\n"
        );
    }

    #[test]
    fn body_bytes_are_taken_up_to_the_end_of_the_message() {
        let mut out = Vec::new();
        let mut chunks = ChunkedScanner::default();
        let mut buf = BytesMut::from(&b"helloNEXT"[..]);
        let mut left = 5;
        assert!(take_body(
            &mut buf,
            Framing::Length(5),
            &mut left,
            &mut chunks,
            &mut out
        )
        .unwrap());
        assert_eq!((&out[..], &buf[..]), (&b"hello"[..], &b"NEXT"[..]));
        out.clear();
        let mut buf = BytesMut::from(&b"2\r\nab\r\n0\r\n\r\nNEXT"[..]);
        assert!(take_body(&mut buf, Framing::Chunked, &mut 0, &mut chunks, &mut out).unwrap());
        assert_eq!(&buf[..], b"NEXT");
    }
}
