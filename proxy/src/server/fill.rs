//! The front's fill: a plain HTTP/1.1 `GET` for a cold key is fetched, stored and answered by
//! the raw front, beneath pingora's proxy state machine.
//!
//! Why: a miss through pingora cost 263 k instructions against HAProxy's 41 k (callgrind,
//! bench/results/profile-request-path.md), about half of it pingora's cache state machine
//! (its session, lookup and lock phases, the miss handler plumbing, the header served again
//! from the stored meta). What is left here is what a miss must do: read the request, forward
//! it, judge the response, store it, relay it.
//!
//! Which requests (decided before the origin is asked, [`Forwarder::fill_start`]): HTTP/1.1
//! `GET` without body, `Upgrade`, `Expect`, preconditions, `Range` or request directives
//! (`Cache-Control`, `Pragma`); the URL predicted cacheable; nothing stored under its primary
//! key (a stale response is pingora's to revalidate, another variant is pingora's to add) and
//! no fill of it under way; `cache.stream_fills` on. The front takes pingora's own cache lock for
//! the key, so pingora's requests for it wait for this fill as they wait for one of pingora's,
//! and registers the key's first fill (`cache::first_fill`), so the front's requests wait in the
//! front and then read the fill as it arrives. When either is held by another request, pingora
//! answers.
//!
//! What happens to the response is what pingora's miss path does with its hooks
//! (`proxy::EdgeProxy`), step for step: the response head built as pingora's HTTP/1 client builds
//! it; hop-by-hop fields stripped (`policy::strip_forwarded_hop_by_hop`); compression planned
//! (`encoding::prepare`); cacheability judged (`FastHits::judge`, with its refusal records and
//! per-credential passes); the variance keyed (`vary::variance`); the fill started through the
//! store's own miss handler (`Store::begin_miss`: the in-flight budget, the size limit, readers
//! joining, the commit through the purge tombstones), after which the lock is released as
//! pingora releases it for a streamed fill. The client gets the head pingora's path sends: the
//! stored head as a hit serves it, the fields the store withheld given back, `X-Cache: MISS`,
//! `Cache-Status: …; fwd=uri-miss; fwd-status=…; stored; ttl=…`, the timings. A refused response
//! is relayed as pingora relays it (`fwd=uri-miss; fwd-status=…`, not stored), and the predictor
//! learns the refusal. Differences a client can see: the origin's `Date` is kept (pingora writes
//! its own), and a client that goes away does not abort the fill (the fill goes on for the
//! requests reading it and for the store).

use super::chunked::ChunkedScanner;
use super::forward::{
    forwardable, push_field, push_head, relayed_head, Exchange, Forwarded, Forwarder, Framing,
    Stamps,
};
use super::origin_pool;
use crate::cache::encoding::{self, CompressionOptions, Encoder};
use crate::cache::entry::{self, FillInfo};
use crate::cache::first_fill::FirstFillGuard;
use crate::cache::hit;
use crate::cache::invalidate::response_groups;
use crate::cache::key::UrlKey;
use crate::cache::meta_wire;
use crate::cache::policy;
use crate::cache::vary::VaryFields;
use crate::metrics;
use crate::proxy::headers::{self, Outcome, Timing, XCache};
use bytes::{Buf, Bytes, BytesMut};
use http::{header, Method};
use pingora_cache::key::HashBinary;
use pingora_cache::lock::{CacheKeyLockImpl, LockStatus, Locked, WritePermit};
use pingora_cache::predictor::CacheablePredictor;
use pingora_cache::storage::MissHandler;
use pingora_cache::{CacheKey, CachePhase};
use pingora_core::protocols::http::date::get_cached_date;
use pingora_core::protocols::Stream;
use pingora_http::{RequestHeader, ResponseHeader};
use std::io::{self, ErrorKind};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;

/// Bytes reserved for each read from the origin.
const READ_CHUNK: usize = 16 * 1024;

/// What the front's fill needs besides the forwarder.
pub struct FillSettings {
    /// pingora's cache lock (the one its proxy application uses).
    pub lock: &'static CacheKeyLockImpl,
    pub compression: CompressionOptions,
}

/// A cold key whose fill the front took on, with its locks held.
pub struct FillStart {
    url: UrlKey,
    primary: HashBinary,
    lock: FillLock,
    /// The key's first-fill registration: the front's requests for the key wait for it.
    first: Option<FirstFillGuard>,
    /// How long the request's lookup took.
    lookup: Duration,
}

/// pingora's cache lock for a key, held as its writer; released `TransientError` when dropped
/// without an outcome (the origin failed), so pingora's waiters compete for it again.
struct FillLock {
    lock: &'static CacheKeyLockImpl,
    key: CacheKey,
    permit: Option<WritePermit>,
}

impl FillLock {
    fn release(&mut self, status: LockStatus) {
        if let Some(permit) = self.permit.take() {
            self.lock.release(&self.key, permit, status);
        }
    }
}

impl Drop for FillLock {
    fn drop(&mut self) {
        self.release(LockStatus::TransientError);
    }
}

/// How the client's copy of the body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientFraming {
    Length,
    Chunked,
}

/// Reads the origin's body, decoded from its framing, as it arrives.
struct OriginBody {
    exchange: Exchange,
    /// Body bytes of a `Content-Length` body still to come.
    left: u64,
    chunks: ChunkedScanner,
    ended: bool,
}

impl OriginBody {
    fn new(exchange: Exchange) -> Self {
        let left = match exchange.head.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let ended = exchange.head.framing == Framing::Empty;
        OriginBody {
            exchange,
            left,
            chunks: ChunkedScanner::default(),
            ended,
        }
    }

    /// The body bytes held, decoded (empty when none is); sets `ended` at the body's end.
    fn take(&mut self) -> io::Result<Bytes> {
        let buf = &mut self.exchange.buf;
        if self.ended || buf.is_empty() {
            return Ok(Bytes::new());
        }
        match self.exchange.head.framing {
            Framing::Empty => Ok(Bytes::new()),
            Framing::Length(_) => {
                let n = self.left.min(buf.len() as u64) as usize;
                self.left -= n as u64;
                self.ended = self.left == 0;
                Ok(buf.split_to(n).freeze())
            }
            Framing::Close => Ok(buf.split().freeze()),
            Framing::Chunked => {
                let mut data = BytesMut::new();
                let used = self
                    .chunks
                    .scan_data(buf, |range| data.extend_from_slice(&buf[range]))
                    .map_err(|_| {
                        io::Error::new(ErrorKind::InvalidData, "malformed chunked body")
                    })?;
                buf.advance(used);
                self.ended = self.chunks.done();
                Ok(data.freeze())
            }
        }
    }

    /// Reads more of the body from the origin; at its end (a close ends a close-delimited body)
    /// sets `ended`.
    async fn read(&mut self) -> io::Result<()> {
        let e = &mut self.exchange;
        e.buf.reserve(READ_CHUNK);
        let read = match e.conn.read(e.read_timeout, &mut e.buf).await {
            Some(read) => read?,
            None => {
                metrics::record_origin_timeout(e.long_route);
                return Err(ErrorKind::TimedOut.into());
            }
        };
        if read == 0 {
            if e.head.framing != Framing::Close {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.ended = true;
        }
        Ok(())
    }

    /// Returns the origin connection to the pool when its response ended cleanly and nothing
    /// followed it.
    fn park(self) {
        let e = self.exchange;
        if self.ended && e.head.keepalive && e.head.framing != Framing::Close && e.buf.is_empty() {
            origin_pool::put(e.addr, e.conn);
        }
    }
}

impl Forwarder {
    /// The fill of `req` (for `url`, its primary key `primary`, with `body` bytes of body) when
    /// the front takes it on (see the module documentation), its locks taken. `lookup`: how long
    /// the request's lookup took.
    pub fn fill_start(
        &self,
        req: &RequestHeader,
        url: &UrlKey,
        primary: &HashBinary,
        body: Option<usize>,
        lookup: Duration,
    ) -> Option<FillStart> {
        let settings = self.fills.as_ref()?;
        let store = self.fast.store;
        if req.method != Method::GET
            || !store.streams_fills()
            || !forwardable(req, body)
            || hit::is_conditional(&req.headers)
            || hit::has_directives(&req.headers)
        {
            return None;
        }
        // a stored response (stale: pingora revalidates it; another variant: pingora adds
        // this one) or a fill under way is pingora's
        if store.holds(primary) || store.filling(primary) {
            return None;
        }
        let first = store.first_fills().begin(*primary)?;
        let mut key = url.cache_key();
        key.set_primary_bin_override(*primary);
        let permit = match settings.lock.lock(&key, false) {
            Locked::Write(permit) => permit,
            Locked::Read(_) => return None,
        };
        Some(FillStart {
            url: url.clone(),
            primary: *primary,
            lock: FillLock {
                lock: settings.lock,
                key,
                permit: Some(permit),
            },
            first: Some(first),
            lookup,
        })
    }

    /// Fetches, stores and relays the response to `req` (see the module documentation).
    /// `keepalive`: whether the connection may stay open (asked when the response head is
    /// written); `start`: when the request head was read.
    pub async fn fill(
        &self,
        client: &mut Stream,
        req: &RequestHeader,
        fill: FillStart,
        keepalive: &(dyn Fn() -> bool + Sync),
        start: Instant,
    ) -> Forwarded {
        // the locks go with `fill`: a failure releases them (`TransientError`)
        let Some(exchange) = self.fetch(client, req, true, start).await else {
            return Forwarded::Broken;
        };
        let status = exchange.head.header.status.as_u16();
        self.fast.stats.record_front_fill();
        let keepalive = keepalive();
        let relayed = self
            .store_and_relay(client, req, fill, exchange, keepalive, start)
            .await;
        self.finished(req, XCache::Miss, status, start, &relayed);
        match relayed {
            Ok(reusable) => Forwarded::Sent(reusable),
            Err(_) => Forwarded::Broken,
        }
    }

    async fn store_and_relay(
        &self,
        client: &mut Stream,
        req: &RequestHeader,
        mut fill: FillStart,
        mut exchange: Exchange,
        keepalive: bool,
        start: Instant,
    ) -> io::Result<bool> {
        let Some(settings) = self.fills.as_ref() else {
            return Err(ErrorKind::Unsupported.into());
        };
        let policy = self.fast.live.policy();
        let resp = &mut exchange.head.header;
        let status = resp.status.as_u16();
        policy::strip_forwarded_hop_by_hop(resp);
        let (touched, encoder) = encoding::prepare(&settings.compression, req, resp, &policy)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let timing = |lookup: Duration| Timing {
            total: start.elapsed(),
            lookup: Some(lookup),
            lock: None,
            origin: Some(exchange.origin_time),
        };
        let stored = match self.fast.assess(req, resp, &fill.primary, true, &policy) {
            Ok(stored) => stored,
            Err(reason) => {
                // as pingora's `response_became_uncacheable`: the predictor learns the refusal
                // (those of the request's own are filtered by `proxy::predictor_skips`)
                let key = hit::primary_only_key(&fill.primary);
                self.fast.predictor.mark_uncacheable(&key, reason);
                fill.lock.release(LockStatus::GiveUp);
                fill.first = None;
                // counted before the client can see the response
                self.fast.stats.record(XCache::Miss);
                let stamps = Stamps::Miss {
                    lookup: fill.lookup,
                };
                // pingora's path runs its range filter on a response fetched with the cache
                // on: a `200` with a valid length is marked `Accept-Ranges: bytes`
                let ranges = accepts_ranges(resp);
                if !touched && !ranges {
                    exchange.head.wire = relayed_head(resp, &self.own_fields);
                    return self.relay(client, exchange, stamps, keepalive, start).await;
                }
                // changed on its way (compression planned, then refused as too large; ranges
                // announced): relayed from the changed header, unstored
                let mut head = resp.clone();
                for name in &self.own_fields {
                    head.remove_header(name);
                }
                if ranges {
                    let _ = head.insert_header(header::ACCEPT_RANGES, "bytes");
                }
                let outcome = outcome(CachePhase::Disabled(reason), status, None);
                let timing = timing(fill.lookup);
                let head = client_head(head, &outcome, &timing);
                let body = OriginBody::new(exchange);
                return stream(client, body, None, encoder, head, keepalive).await;
            }
        };
        let groups = response_groups(&resp.headers);
        // the stored header is the fetched one itself, not a copy
        let policy::Decided {
            mut meta,
            shared,
            withheld,
        } = stored.apply(entry::take_header(&mut exchange.head.header), &policy);
        meta.extensions_mut().insert(FillInfo {
            started: start,
            url: fill.url.clone(),
            groups,
            revalidates: None,
        });
        // the variance keyed as `vary::key_fill` keys it, from fields worked out once for the
        // key and the view
        let fields = VaryFields::of_sharing(meta.headers(), shared);
        fields.key_fill(&mut meta, &req.headers, &policy.auth_cookies);
        let ttl = policy::seconds_until(meta.fresh_until(), SystemTime::now());
        let failed = |e: Box<pingora_error::Error>| io::Error::other(e.to_string());
        let serialized = meta_wire::serialize(&meta).map_err(failed)?;
        // the header is made of slices of one copy of the origin's head (`forward::parse_head`):
        // the view keeps it as it is
        let store = self.fast.store;
        let view = store.view_of_taken(&mut meta, fields);
        let (miss, inflight) = store
            .begin_miss(&fill.lock.key, &meta, serialized, Some(view))
            .map_err(failed)?;
        // readers may join the fill from here on, as after pingora's streamed `set_miss_handler`
        fill.lock.release(LockStatus::Done);
        fill.first = None;
        let view = inflight
            .as_ref()
            .and_then(|f| f.view.as_ref())
            .ok_or(ErrorKind::Unsupported)?;
        self.fast.stats.record(XCache::Miss);
        let timing = timing(fill.lookup);
        let body = OriginBody::new(exchange);
        if let Some(wire) = view.wire.as_deref().filter(|_| encoder.is_none()) {
            // the stored head as the front writes it for hits (prepared at store time, framed
            // by its `Content-Length`), what the store withheld, this response's fields
            let mut out = Vec::with_capacity(wire.len() + 512);
            out.extend_from_slice(wire);
            for (name, value) in &withheld {
                if !view.header.headers.contains_key(name) {
                    push_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
                }
            }
            headers::write_miss_fields(&mut out, status, ttl, &timing, keepalive);
            let framing = ClientFraming::Length;
            return pump(client, body, Some(miss), None, out, framing, keepalive).await;
        }
        let mut head = view.header.clone();
        // what the store withheld (`Set-Cookie`…), given back to this client as pingora's
        // `response_filter` gives it back
        for (name, value) in withheld {
            if !head.headers.contains_key(&name) {
                head.append_header(name, value)
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        let outcome = outcome(CachePhase::Miss, status, Some(ttl));
        let head = client_head(head, &outcome, &timing);
        stream(client, body, Some(miss), encoder, head, keepalive).await
    }
}

/// Whether pingora's range filter marks `resp` `Accept-Ranges: bytes` (pingora-proxy 0.9.1
/// `range_header_filter` on a request without `Range`): a `200` with a `Content-Length` that is
/// a number.
fn accepts_ranges(resp: &ResponseHeader) -> bool {
    resp.status == http::StatusCode::OK
        && resp
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .is_some_and(|v| v.parse::<usize>().is_ok())
}

/// The cache's outcome of a miss whose response arrived with `status` (`ttl`: stored, with this
/// freshness left).
fn outcome(phase: CachePhase, status: u16, ttl: Option<i64>) -> Outcome {
    Outcome {
        phase,
        collapsed: false,
        fwd_status: Some(status),
        stored: ttl.is_some(),
        ttl,
        forced_by_request: false,
        bypassed: false,
    }
}

/// The client's head: `head` stamped as [`headers::classify`] and [`headers::stamp`] stamp
/// `outcome` on pingora's path, with this connection's own framing. The origin's `Date` is kept
/// (added when it sent none).
fn client_head(mut head: ResponseHeader, outcome: &Outcome, timing: &Timing) -> ResponseHeader {
    let (x, cache_status) = headers::classify(outcome);
    headers::stamp(&mut head, x, &cache_status, timing);
    head.remove_header(&header::CONNECTION);
    if !head.headers.contains_key(header::DATE) {
        let _ = head.insert_header(header::DATE, get_cached_date());
    }
    head
}

/// How `head` frames the body for the client: its `Content-Length` when it has a valid one and
/// the body is not re-encoded, else chunked (the field set accordingly).
fn client_framing(head: &mut ResponseHeader, encoding: bool) -> ClientFraming {
    let length = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .is_some_and(|v| v.parse::<u64>().is_ok());
    if length && !encoding {
        head.remove_header(&header::TRANSFER_ENCODING);
        return ClientFraming::Length;
    }
    head.remove_header(&header::CONTENT_LENGTH);
    let _ = head.insert_header(header::TRANSFER_ENCODING, "chunked");
    ClientFraming::Chunked
}

/// Relays the origin's body to the client (head `head` first) and into `miss` (the store's
/// handler of the fill; `None`: not stored), through `encoder` when the body is compressed on
/// its way. Returns whether the client connection may carry another request.
///
/// The fill goes on when the client goes away (the requests reading the fill, and the store,
/// still get it); the client connection is then unusable. An origin failure drops the fill
/// unfinished (its readers get an error, nothing is stored) and closes the client connection.
async fn stream(
    client: &mut Stream,
    body: OriginBody,
    miss: Option<MissHandler>,
    encoder: Option<Encoder>,
    mut head: ResponseHeader,
    keepalive: bool,
) -> io::Result<bool> {
    let framing = client_framing(&mut head, encoder.is_some());
    let mut out = Vec::with_capacity(1024 + body.exchange.buf.len());
    push_head(&mut out, &head);
    push_field(
        &mut out,
        b"connection",
        if keepalive { b"keep-alive" } else { b"close" },
    );
    out.extend_from_slice(b"\r\n");
    pump(client, body, miss, encoder, out, framing, keepalive).await
}

/// [`stream`] with the client's head written into `out` already (framed as `framing` says).
async fn pump(
    client: &mut Stream,
    mut body: OriginBody,
    mut miss: Option<MissHandler>,
    mut encoder: Option<Encoder>,
    mut out: Vec<u8>,
    framing: ClientFraming,
    keepalive: bool,
) -> io::Result<bool> {
    let mut client_ok = true;
    loop {
        let piece = body.take()?;
        let ended = body.ended;
        let data = match encoder.as_mut() {
            Some(e) => e.encode(&piece, ended)?,
            None => piece,
        };
        if let Some(m) = miss.as_mut() {
            if !data.is_empty() || ended {
                m.write_body(data.clone(), ended)
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        if !data.is_empty() {
            match framing {
                ClientFraming::Length => out.extend_from_slice(&data),
                ClientFraming::Chunked => {
                    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        if ended && framing == ClientFraming::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if client_ok && !out.is_empty() {
            client_ok = client.write_all(&out).await.is_ok();
        }
        out.clear();
        if ended {
            break;
        }
        // `take` leaves bytes behind only after the body's end
        body.read().await?;
    }
    if let Some(e) = &encoder {
        let (coding, bytes_in, bytes_out) = e.totals();
        metrics::record_compression(coding.token(), bytes_in, bytes_out);
    }
    if let Some(m) = miss {
        m.finish()
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    body.park();
    if !client_ok || client.flush().await.is_err() {
        return Err(ErrorKind::BrokenPipe.into());
    }
    Ok(keepalive)
}
