//! The raw HTTP/1 front: plain fresh hits are written from bytes prepared at store time, and
//! every other request is handed to pingora's proxy application on the same connection.
//!
//! Profiles of 1 KiB hits (bench/results/profile-request-path.md) put a third of the proxy's
//! user-space CPU into pingora's per-request machinery for a hit whose answer was already known:
//! building a `Session`, copying the stored `ResponseHeader`, stamping it and serializing it again.
//! The front reads the request head itself (`httparse`, as pingora does), asks
//! [`FastHits::find`] (the same lookup as the `request_filter` fast path) and, for a hit, writes
//! the stored head serialized once at store time ([`HitView::wire`]) followed by the
//! per-response fields and the body. As a side effect such hits keep the stored `Date` (pingora
//! writes its own `Date` on every response it writes).
//!
//! Conditional requests: a fresh hit whose `If-None-Match` / `If-Modified-Since` matches is
//! answered `304 Not Modified` here too, by pingora's own evaluation and `304` form (and so keeps
//! the stored `Date` as well).
//!
//! Ranges: a `Range` on a fresh hit goes through the same range filter as pingora's hit path
//! (`cache::range::apply`, with `If-Range`); one range is written here as a `206` of that part of
//! the stored body, several as a `206` of `multipart/byteranges`, an unsatisfiable one as its
//! `416`.
//!
//! Cold keys: a request without a fresh hit whose key has a first fill under way
//! (`cache::first_fill`) waits for it here rather than on pingora's cache lock, and is then
//! answered from the committed entry or from the fill in progress as it arrives
//! ([`FastHits::join`]); a thousand such waiters then cost a front hit each instead of a pingora
//! request each.
//!
//! Pass-through: a `GET`/`HEAD` for a URL the cache knows it cannot store is forwarded to the
//! origin by [`Forwarder`] (`server::forward`) rather than by pingora's proxy state machine.
//!
//! Misses: a plain `GET` for a cold key nobody is fetching is fetched, stored and answered by
//! the front's fill (`server::fill`), which takes pingora's cache lock for the key first.
//!
//! Handing over: the buffered bytes become the new pingora session's pipelined prefix, so pingora
//! parses exactly what the client sent. After pingora's response the connection comes back to
//! the front when nothing could have been read past that request (it had no body and nothing
//! followed its head in the buffer); otherwise pingora keeps the connection, carrying any
//! pipelined bytes itself. HTTP/2 (ALPN or h2c prior knowledge) goes to pingora untouched.
//!
//! The header deadline and the connection cap stay in [`ClientGuard`](super::ClientGuard): the
//! stream the front reads is already a [`DeadlineStream`](super::deadline::DeadlineStream).

use super::fill::FillStart;
use super::forward::{Forwarded, Forwarder};
use super::timer::ReusedTimer;
use super::Lifecycle;
use crate::cache::entry::{self, HitView};
use crate::cache::hit;
use crate::cache::inflight::{InflightFill, InflightHit};
use crate::cache::key::UrlKey;
use crate::cache::policy;
use crate::cache::range;
use crate::proxy::fast::{FreshHit, Joined};
use crate::proxy::headers::{self, Timing};
use crate::proxy::{EdgeProxy, FastHits};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderName, HeaderValue, Method, Version};
use pingora_cache::key::HashBinary;
use pingora_cache::storage::HandleHit;
use pingora_core::apps::{HttpServerApp, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::conditional_filter::to_304;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{HttpProxy, RangeType};
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fields parsed per request head at most; a head with more goes to pingora.
const MAX_FIELDS: usize = 64;
/// A head not complete within this many bytes goes to pingora (which enforces its own limits).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bytes reserved for each read of a request head.
const READ_CHUNK: usize = 4096;
/// Bodies up to this size are copied behind the head, so a hit is one write.
const INLINE_BODY_BYTES: usize = 16 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// See the module documentation.
pub struct HitFront {
    app: Arc<HttpProxy<EdgeProxy>>,
    fast: Arc<FastHits>,
    lifecycle: Arc<Lifecycle>,
    /// How long a kept-alive connection may wait for its next request.
    keepalive: Duration,
    /// HTTP/2 with prior knowledge is accepted on cleartext connections.
    h2c: bool,
    /// The pass-through of known-uncacheable URLs and the fill of cold keys (`None`: both
    /// `server.front_pass_through` and `server.front_fill` are off).
    forward: Option<Forwarder>,
}

impl HitFront {
    pub fn new(
        app: HttpProxy<EdgeProxy>,
        fast: Arc<FastHits>,
        lifecycle: Arc<Lifecycle>,
        keepalive: Duration,
        h2c: bool,
        forward: Option<Forwarder>,
    ) -> Self {
        HitFront {
            app: Arc::new(app),
            fast,
            lifecycle,
            keepalive,
            h2c,
            forward,
        }
    }
}

/// A complete request head read by the front.
struct Head {
    /// The request header of a GET or HEAD (the only methods the front answers).
    req: Option<RequestHeader>,
    /// Bytes of the head in the buffer.
    len: usize,
    /// The client allows the connection to stay open after the response.
    keepalive: bool,
    /// Bytes of the request body when its framing is a single valid `Content-Length` (0 when
    /// there is none); `None` for chunked or unclear framing.
    body: Option<usize>,
}

impl Head {
    /// Bytes of the whole request (head and body), when its framing is plain.
    fn request_len(&self) -> Option<usize> {
        self.body.map(|b| self.len + b)
    }
}

// Moved once per request; boxing the head would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
enum Read {
    Head(Head),
    /// Not for the front (another method, a malformed or unusual head): pingora decides.
    Pingora,
    Closed,
}

#[async_trait]
impl ServerApp for HitFront {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let h2 = match stream.selected_alpn_proto() {
            Some(ALPN::H2) | Some(ALPN::Custom(_)) => true,
            _ if self.h2c && stream.get_ssl_digest().is_none() => {
                let mut preface = [0u8; H2_PREFACE.len()];
                // `try_peek` waits for the bytes; a failure here is a closed connection
                let peeked = stream.try_peek(&mut preface).await.ok()?;
                peeked && preface == H2_PREFACE
            }
            _ => false,
        };
        if h2 {
            return Box::pin(self.app.process_new(stream, shutdown)).await;
        }
        self.serve_http1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.app.as_ref()).await
    }
}

impl HitFront {
    async fn serve_http1(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut idle = false;
        let mut keepalive_timer = ReusedTimer::default();
        loop {
            let read = self.read_head(&mut stream, &mut buf, idle, &mut keepalive_timer);
            let head = match read.await {
                Read::Head(head) => head,
                Read::Pingora => {
                    if let Some(reused) = self.pingora_once(stream, buf, shutdown).await {
                        self.pingora_rest(reused, shutdown).await;
                    }
                    return;
                }
                Read::Closed => return,
            };
            let start = Instant::now();
            if let Some(req) = head.req.as_ref() {
                // a graceful shutdown waits for this request, its wait for a fill included
                let inflight = self.lifecycle.request();
                let keepalive =
                    || head.keepalive && !self.lifecycle.draining() && !*shutdown.borrow();
                let forwarded = match self.route(req, head.body).await {
                    Route::Answer(answer) => {
                        let keepalive = keepalive();
                        self.fast.count_served_hit();
                        let Ok(status) = self
                            .write_answer(&mut stream, req, answer, start, keepalive)
                            .await
                        else {
                            return;
                        };
                        drop(inflight);
                        self.fast.log_served_hit(req, status, start.elapsed());
                        let _ = buf.split_to(head.len);
                        if !keepalive {
                            let _ = AsyncWriteExt::shutdown(&mut stream).await;
                            return;
                        }
                        idle = true;
                        continue;
                    }
                    // whether the connection stays open is decided when the response head is
                    // written (a graceful shutdown may have begun meanwhile)
                    Route::Fill(fill) => match self.forward.as_ref() {
                        Some(forward) => Some(
                            forward
                                .fill(&mut stream, req, fill, &keepalive, start)
                                .await,
                        ),
                        None => return,
                    },
                    Route::Forward(primary) => match self.forward.as_ref() {
                        Some(forward) => Some(
                            forward
                                .forward(&mut stream, req, &primary, keepalive(), start)
                                .await,
                        ),
                        None => return,
                    },
                    Route::Pingora => None,
                };
                if let Some(forwarded) = forwarded {
                    match forwarded {
                        Forwarded::Sent(true) => {}
                        Forwarded::Sent(false) => {
                            let _ = AsyncWriteExt::shutdown(&mut stream).await;
                            return;
                        }
                        Forwarded::Broken => return,
                    }
                    drop(inflight);
                    let _ = buf.split_to(head.len);
                    idle = true;
                    continue;
                }
            }
            // The whole request and nothing more is in the buffer, so pingora reads nothing
            // from the socket and nothing past the request: the connection comes back.
            let returns = head.request_len() == Some(buf.len());
            let Some(reused) = self.pingora_once(stream, buf, shutdown).await else {
                return;
            };
            if !returns {
                self.pingora_rest(reused, shutdown).await;
                return;
            }
            // the settings pingora carries over are the front's own (keep-alive, pipelining)
            (stream, _) = reused.consume();
            buf = BytesMut::with_capacity(READ_CHUNK);
            idle = true;
        }
    }

    /// Reads until `buf` holds a complete request head. `idle`: a response was sent on this
    /// connection, so the wait for the next request's first byte is the keep-alive timeout.
    ///
    /// The head is parsed when the bytes first arrive (a malformed start goes to pingora at once)
    /// and then only once a blank line has arrived: re-parsing a head trickled one byte per read
    /// from its start on every read would cost CPU quadratic in its length.
    /// `keepalive_timer`: the connection's, for the keep-alive timeout.
    async fn read_head(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        idle: bool,
        keepalive_timer: &mut ReusedTimer,
    ) -> Read {
        // bytes of `buf` already searched for the blank line
        let mut scanned: usize = 0;
        loop {
            if !buf.is_empty() {
                let ended = scanned == 0 || has_blank_line(&buf[scanned.saturating_sub(3)..]);
                scanned = buf.len();
                let parsed = if ended {
                    parse_head(buf)
                } else {
                    Parsed::Partial
                };
                match parsed {
                    Parsed::Complete(head) => return Read::Head(head),
                    Parsed::Partial if buf.len() <= MAX_HEAD_BYTES => {}
                    Parsed::Partial | Parsed::Other => return Read::Pingora,
                }
            }
            buf.reserve(READ_CHUNK);
            let read = if idle && buf.is_empty() {
                match keepalive_timer
                    .limit(self.keepalive, stream.read_buf(buf))
                    .await
                {
                    Some(read) => read,
                    None => return Read::Closed,
                }
            } else {
                stream.read_buf(buf).await
            };
            match read {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(_) => {}
            }
        }
    }

    /// Who answers `req` (`body`: its body length, when plainly framed): the front from a fresh
    /// stored response, or, when its key's first fill is under way or arriving, from that fill
    /// once it moved on ([`FastHits::join`]); the front's pass-through for a URL known
    /// uncacheable; else pingora.
    async fn route(&self, req: &RequestHeader, body: Option<usize>) -> Route {
        // limits and a missing `Host` (the arrival address names it) are pingora's to answer
        if self.fast.limit_error(req).is_some() || !req.headers.contains_key(header::HOST) {
            return Route::Pingora;
        }
        let Some(url) = UrlKey::from_request_or(req, None) else {
            return Route::Pingora;
        };
        let bus = self.fast.bus_revalidation(req);
        let start = Instant::now();
        let primary = url.primary_hash();
        let Some(primary) = self.fast.candidate(req, primary, bus, true) else {
            return match &self.forward {
                Some(forward) if forward.takes(req, &primary, body) => Route::Forward(primary),
                _ => Route::Pingora,
            };
        };
        let entry = |found: FreshHit, waited| {
            if !writable(&found) {
                return Route::Pingora;
            }
            match reshaped(req, &found) {
                Reshaped::Whole => Route::Answer(Answer::Entry(found, waited)),
                Reshaped::Part(header, body) => Route::Answer(Answer::Part(found, header, body)),
                Reshaped::Pingora => Route::Pingora,
            }
        };
        if let Some(found) = self.fast.lookup(req, &primary, bus, start) {
            return entry(found, None);
        }
        if let Some(forward) = &self.forward {
            if forward.takes_for_credential(req, &primary, body) {
                return Route::Forward(primary);
            }
        }
        let Some(collapsed) = self.fast.join(req, primary, bus).await else {
            // a cold key nobody fetches: the front's fill, when it takes the request
            return match &self.forward {
                Some(forward) => forward
                    .fill_start(req, &url, &primary, body, start.elapsed())
                    .map_or(Route::Pingora, Route::Fill),
                None => Route::Pingora,
            };
        };
        match collapsed.joined {
            Joined::Entry(found) => entry(found, collapsed.waited),
            Joined::Fill { fill, reader, now } => Route::Answer(Answer::Fill {
                fill,
                reader,
                now,
                waited: collapsed.waited,
            }),
        }
    }

    /// Writes `answer`; returns the status sent. An error leaves the connection unusable.
    async fn write_answer(
        &self,
        stream: &mut Stream,
        req: &RequestHeader,
        answer: Answer,
        start: Instant,
        keepalive: bool,
    ) -> std::io::Result<u16> {
        match answer {
            Answer::Entry(found, waited) => {
                let view = found.entry.view.as_ref().ok_or(ErrorKind::InvalidData)?;
                let timing = store_timing(start, Some(found.lookup), waited);
                let wire = view.wire.as_deref().ok_or(ErrorKind::InvalidData)?;
                let head = Prepared::new(wire, view, found.now, &timing, keepalive);
                self.write_entry(stream, req, &found.entry.body, head)
                    .await?;
                Ok(view.header.status.as_u16())
            }
            Answer::Part(found, header, body) => {
                let view = found.entry.view.as_ref().ok_or(ErrorKind::InvalidData)?;
                let timing = store_timing(start, Some(found.lookup), None);
                let status = header.status.as_u16();
                let wire = entry::wire_head(*header).ok_or(ErrorKind::InvalidData)?;
                let head = Prepared::new(&wire, view, found.now, &timing, keepalive);
                let body = body.unwrap_or_default();
                self.write_entry(stream, req, &body, head).await?;
                Ok(status)
            }
            Answer::Fill {
                fill,
                reader,
                now,
                waited,
            } => {
                let view = fill.view.as_ref().ok_or(ErrorKind::InvalidData)?;
                let timing = store_timing(start, None, waited);
                let wire = view.wire.as_deref().ok_or(ErrorKind::InvalidData)?;
                let head = Prepared::new(wire, view, now, &timing, keepalive);
                let length = view.content_length.ok_or(ErrorKind::InvalidData)?;
                write_fill(stream, req, reader, length, head).await?;
                Ok(view.header.status.as_u16())
            }
        }
    }

    async fn write_entry(
        &self,
        stream: &mut Stream,
        req: &RequestHeader,
        body: &Bytes,
        head: Prepared<'_>,
    ) -> std::io::Result<()> {
        let send_body = req.method != Method::HEAD && !body.is_empty();
        let inline = send_body && body.len() <= INLINE_BODY_BYTES;
        let mut out = head.bytes(if inline { body.len() } else { 0 });
        if inline {
            out.extend_from_slice(body);
        }
        stream.write_all(&out).await?;
        if send_body && !inline {
            stream.write_all(body).await?;
        }
        stream.flush().await
    }

    /// Lets pingora answer one request whose bytes (and any that follow) are in `prefix`.
    async fn pingora_once(
        &self,
        stream: Stream,
        prefix: BytesMut,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let mut session = ServerSession::new_http1(stream);
        // pingora's own default; `request_filter` sets the configured one per request
        session.set_keepalive((!*shutdown.borrow()).then_some(60));
        if !prefix.is_empty() {
            session.set_pipelined_prefix(prefix);
        }
        // boxed: pingora's request future is tens of KiB, and inline it would make every
        // connection's task that large while the front waits for a request head
        Box::pin(self.app.process_new_http(session, shutdown)).await
    }

    /// pingora keeps the connection to its end (what it read past a request is its own).
    async fn pingora_rest(&self, reused: ReusedHttpStream, shutdown: &ShutdownWatch) {
        let mut next = Some(reused);
        while let Some((stream, settings)) = next.map(ReusedHttpStream::consume) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            next = Box::pin(self.app.process_new_http(session, shutdown)).await;
        }
    }
}

/// Who answers a request the front read.
#[allow(clippy::large_enum_variant)]
enum Route {
    Answer(Answer),
    /// Forwarded by the front's pass-through (the target's primary key).
    Forward(HashBinary),
    /// Fetched, stored and answered by the front's fill.
    Fill(FillStart),
    Pingora,
}

/// What the front answers a request with.
enum Answer {
    /// A stored response; `Some` wait when the request waited for the key's first fill.
    Entry(FreshHit, Option<Duration>),
    /// A stored response reshaped by the request's preconditions or range ([`reshaped`]): its
    /// header (`304`, `206` or `416`) and its body (`None`: no body).
    Part(FreshHit, Box<ResponseHeader>, Option<Bytes>),
    /// A fill in progress, read as it arrives.
    Fill {
        fill: Arc<InflightFill>,
        reader: InflightHit,
        now: SystemTime,
        waited: Option<Duration>,
    },
}

/// How a stored response answers a request's preconditions and `Range`.
enum Reshaped {
    /// The stored response as it is: no precondition or range applies (a stale `If-Range`, a
    /// range pingora's filter does not cut).
    Whole,
    /// The header of a `304` (body `None`), a `206` (its body: one range's bytes, or the
    /// `multipart/byteranges` of several) or a `416` (`None`).
    Part(Box<ResponseHeader>, Option<Bytes>),
    /// What the front does not cut (a range beyond the stored body): pingora's to answer.
    Pingora,
}

/// What `found` answers to `req`'s [`hit::CONDITIONAL_FIELDS`], as pingora's hit path gives it:
/// a matching `If-None-Match` / `If-Modified-Since` first (`304`, pingora's `to_304`), then the
/// same range filter (`cache::range::apply`) on the stored header.
fn reshaped(req: &RequestHeader, found: &FreshHit) -> Reshaped {
    let Some(view) = found.entry.view.as_ref() else {
        return Reshaped::Pingora;
    };
    if !hit::is_conditional(&req.headers) {
        return Reshaped::Whole;
    }
    let mut header = Box::new(view.header.clone());
    if hit::not_modified(req, &view.header) {
        to_304(&mut header);
        return Reshaped::Part(header, None);
    }
    if !req.headers.contains_key(header::RANGE) {
        return Reshaped::Whole;
    }
    let body = &found.entry.body;
    match range::apply(req, &mut header) {
        RangeType::None => Reshaped::Whole,
        RangeType::Single(r) if r.end <= body.len() => Reshaped::Part(header, Some(body.slice(r))),
        RangeType::Invalid => Reshaped::Part(header, None),
        RangeType::Multi(parts) => match range::multipart_body(&parts, body) {
            Some(parts) => Reshaped::Part(header, Some(parts)),
            None => Reshaped::Pingora,
        },
        RangeType::Single(_) => Reshaped::Pingora,
    }
}

/// The timings of a response the front writes from the store.
fn store_timing(start: Instant, lookup: Option<Duration>, lock: Option<Duration>) -> Timing {
    Timing {
        total: start.elapsed(),
        lookup,
        lock,
        origin: None,
    }
}

/// Whether the front can write this stored response: its head was prepared at store time and
/// its stored length frames the body held.
fn writable(found: &FreshHit) -> bool {
    found.entry.view.as_ref().is_some_and(|view| {
        view.wire.is_some() && view.content_length == Some(found.entry.body.len())
    })
}

/// The response head of a hit: the stored head prepared at store time and this response's
/// fields (`Age`, the stamps, `Connection`).
struct Prepared<'a> {
    wire: &'a [u8],
    age: u64,
    ttl: i64,
    timing: &'a Timing,
    keepalive: bool,
}

impl<'a> Prepared<'a> {
    /// `wire`: the stored head as prepared for this response (`view.wire`, or its `304` form).
    fn new(
        wire: &'a [u8],
        view: &HitView,
        now: SystemTime,
        timing: &'a Timing,
        keepalive: bool,
    ) -> Self {
        Prepared {
            wire,
            age: now.duration_since(view.epoch).unwrap_or_default().as_secs(),
            ttl: policy::seconds_until(view.fresh_until, now),
            timing,
            keepalive,
        }
    }

    /// The head's bytes, with room for `extra` more.
    fn bytes(&self, extra: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire.len() + 320 + extra);
        out.extend_from_slice(self.wire);
        headers::write_hit_fields(&mut out, self.age, self.ttl, self.timing, self.keepalive);
        out
    }
}

/// Writes a fill in progress as its chunks arrive. The stored `Content-Length` frames the body:
/// a fill that fails, or ends short or long of it, is an error (the connection closes, so the
/// client never takes a cut body for a whole one).
async fn write_fill(
    stream: &mut Stream,
    req: &RequestHeader,
    mut reader: InflightHit,
    length: usize,
    head: Prepared<'_>,
) -> std::io::Result<()> {
    // every write is flushed: the stream buffers small writes, and a client must get the bytes
    // the origin has sent while the origin still holds the rest
    stream.write_all(&head.bytes(0)).await?;
    stream.flush().await?;
    if req.method == Method::HEAD {
        return Ok(());
    }
    let mut sent = 0;
    while let Some(chunk) = reader
        .read_body()
        .await
        .map_err(|_| ErrorKind::BrokenPipe)?
    {
        sent += chunk.len();
        if sent > length {
            return Err(ErrorKind::InvalidData.into());
        }
        stream.write_all(&chunk).await?;
        stream.flush().await?;
    }
    if sent != length {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Reads the `close` and `keep-alive` options of a `Connection` field value into the flags.
pub(super) fn connection_options(value: &[u8], close: &mut bool, keep_alive: &mut bool) {
    for token in value.split(|b| *b == b',') {
        let token = token.trim_ascii();
        *close |= token.eq_ignore_ascii_case(b"close");
        *keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
    }
}

/// Whether `bytes` hold the empty line that ends a head (CRLF or bare LF line ends).
fn has_blank_line(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w == b"\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n")
}

#[allow(clippy::large_enum_variant)]
enum Parsed {
    Complete(Head),
    Partial,
    Other,
}

/// Parses the request head at the start of `buf`. Only the heads of GET and HEAD requests are
/// built into a request header; of the others only the framing is read.
fn parse_head(buf: &[u8]) -> Parsed {
    // uninitialised: zeroing the whole array on every parse costs more than parsing a short head
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Parsed::Other;
    };
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let method = match method {
        "GET" => Some(Method::GET),
        "HEAD" => Some(Method::HEAD),
        _ => None,
    };
    let mut map = http::HeaderMap::new();
    if method.is_some() {
        map.reserve(parsed.headers.len());
    }
    let (mut close, mut keep_alive) = (false, false);
    let mut body = Some(0);
    let mut lengths = 0;
    for field in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Parsed::Other;
        };
        if name == header::CONNECTION {
            connection_options(field.value, &mut close, &mut keep_alive);
        } else if name == header::TRANSFER_ENCODING {
            body = None;
        } else if name == header::CONTENT_LENGTH {
            lengths += 1;
            let n = std::str::from_utf8(field.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            body = body.and(n).filter(|_| lengths == 1);
        }
        if method.is_some() {
            let Ok(value) = HeaderValue::from_bytes(field.value) else {
                return Parsed::Other;
            };
            // straight into a map: pingora's `append_header` would copy the name into a titled
            // spelling for a case map this header does not have, and parse it back
            if map.try_append(name, value).is_err() {
                return Parsed::Other;
            }
        }
    }
    let req = match method {
        Some(m) => {
            let (mut parts, ()) = http::Request::new(()).into_parts();
            parts.method = m;
            parts.version = version;
            parts.headers = map;
            let mut req = RequestHeader::from(parts);
            // the target as sent (pingora keeps the raw bytes where they differ from the URI)
            if req.set_raw_path(path.as_bytes()).is_err() {
                return Parsed::Other;
            }
            Some(req)
        }
        None => None,
    };
    let keepalive = match version {
        Version::HTTP_11 => !close,
        _ => keep_alive && !close,
    };
    Parsed::Complete(Head {
        req,
        len,
        keepalive,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &str) -> Head {
        match parse_head(raw.as_bytes()) {
            Parsed::Complete(head) => head,
            Parsed::Partial => panic!("partial: {raw:?}"),
            Parsed::Other => panic!("other: {raw:?}"),
        }
    }

    #[test]
    fn heads_of_gets_and_heads_are_parsed_with_their_connection_semantics() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        let h = complete(&format!("{raw}GET /next"));
        let req = h.req.as_ref().unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.raw_path(), b"/a?b=1");
        assert_eq!(req.headers.get("host").unwrap(), "x");
        assert_eq!((h.len, h.request_len()), (raw.len(), Some(raw.len())));
        assert!(h.keepalive);
        assert!(!complete("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keepalive);
        assert!(!complete("HEAD / HTTP/1.0\r\nHost: x\r\n\r\n").keepalive);
        assert!(complete("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keepalive);
        assert_eq!(
            complete("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").body,
            Some(0)
        );
        assert_eq!(
            complete("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body,
            None
        );
    }

    #[test]
    fn other_methods_keep_only_their_framing() {
        let post = complete("POST /m HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        assert!(post.req.is_none());
        assert_eq!(post.body, Some(3));
        assert_eq!(post.request_len(), Some(post.len + 3));
        let twice = "PUT /m HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(complete(twice).body, None);
        assert_eq!(
            complete("PUT /m HTTP/1.1\r\nContent-Length: +3\r\n\r\n").body,
            None
        );
    }

    #[test]
    fn a_blank_line_is_found_with_either_line_end() {
        assert!(has_blank_line(b"Host: x\r\n\r\n"));
        assert!(has_blank_line(b"Host: x\n\n"));
        // what the caller searches when the end is split across reads: the last three old
        // bytes ("\r\n\r") and the new "\n"
        assert!(has_blank_line(b"\r\n\r\n"));
        assert!(!has_blank_line(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }

    #[test]
    fn everything_else_is_left_to_pingora() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nBad Field: x\r\n\r\n"),
            Parsed::Other
        ));
        assert!(matches!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n"),
            Parsed::Other
        ));
    }
}
