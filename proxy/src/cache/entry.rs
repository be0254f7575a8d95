//! One stored response ([`Entry`]), the fill record the proxy attaches to it ([`FillInfo`]), and
//! its decoded view for the fast hit path ([`HitView`]), with the header as a hit serves it.

use super::key::UrlKey;
use super::vary::VaryFields;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue};
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use pingora_http::{HeaderNameVariant, ResponseHeader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Fixed per-entry weight for what the counted bytes miss: the index slots, the `Arc`, the map
/// slot, the struct itself, the decoded header's allocations, and the allocator's size classes
/// and fragmentation. Measured (`scripts/reliability.sh`, memory rows): with 512 a 32 MiB store of
/// 1–16 KiB objects cost about 45 MiB of RSS, about 4 KiB per entry more than it was charged.
pub const ENTRY_OVERHEAD: u64 = 4096;

/// Fill metadata the proxy attaches to a `CacheMeta`'s extensions in `response_cache_filter`;
/// the storage reads it when the fill commits.
#[derive(Debug, Clone)]
pub struct FillInfo {
    /// When the request that fetched this response arrived.
    pub started: Instant,
    pub url: UrlKey,
    /// The response's groups (`Cache-Groups` / `Surrogate-Key`).
    pub groups: Vec<String>,
    /// For a 304 refresh: the id of the stored entry that was revalidated. The refresh applies
    /// only if that very entry is still the one stored, so a late 304 never pairs one version's
    /// validators with another version's body.
    pub revalidates: Option<u64>,
}

/// The parts of a stored meta that a plain fresh hit needs, decoded once when the entry is
/// stored. `CacheMeta` is not `Clone`, so pingora's own lookup must deserialize the meta (msgpack
/// plus zstd-compressed header) on every hit; the fast hit path (`cache::hit`) reads this instead.
#[derive(Debug, Clone)]
pub struct HitView {
    /// The stored response header as pingora's hit path would serve it, before `Age` and our
    /// stamps (see `cache::hit::served_header`).
    pub header: ResponseHeader,
    pub fresh_until: SystemTime,
    /// Reference point of `Age` (pingora's `CacheMeta::epoch`).
    pub epoch: SystemTime,
    pub created: SystemTime,
    pub provenance: SystemTime,
    /// The `Vary` variance this entry was stored for.
    pub variance: Option<HashBinary>,
    /// The request fields this entry is keyed on (`Vary` plus implicit credentials).
    pub vary: VaryFields,
    /// `header` as HTTP/1.1 bytes (status line and fields, without the blank line), minus the
    /// fields written per response (see [`PER_RESPONSE_FIELDS`]): what the raw HTTP/1 front
    /// writes for a hit. `None` when the stored header has no `Date` or no valid
    /// `Content-Length`, or needs chunked framing; such hits are left to pingora.
    pub wire: Option<Bytes>,
    /// The stored `Content-Length`, when valid.
    pub content_length: Option<usize>,
}

/// Fields every served hit gets fresh values of: the stored copies are never replayed.
pub const PER_RESPONSE_FIELDS: [&str; 6] = [
    "age",
    "x-cache",
    "cache-status",
    "x-response-time",
    "server-timing",
    "connection",
];

impl HitView {
    /// The view of a stored (serialized) meta.
    pub fn decode(meta: &(Vec<u8>, Vec<u8>), fields: &TargetedFields) -> Option<HitView> {
        let m = CacheMeta::deserialize(&meta.0, &meta.1).ok()?;
        Some(Self::of(&m, fields))
    }

    /// The view of a live meta: the same as [`Self::decode`] of its serialization (pingora's
    /// meta format keeps whole `SystemTime`s, nanoseconds included; a unit test holds the two
    /// equal), without decompressing the header a fill has just compressed. A miss costs 6.4 %
    /// fewer instructions this way (callgrind, 2,000 misses).
    ///
    /// The header is copied name by name and value by value ([`detached`]): the live one may
    /// slice them out of the buffer pingora read the origin's response into, which the view
    /// would then keep alive as long as the entry is stored.
    pub fn of(m: &CacheMeta, fields: &TargetedFields) -> HitView {
        let stored = detached(m.response_header());
        let vary = VaryFields::of(&stored.headers, &fields.obeyed);
        Self::of_parts(stored, vary, m, &fields.own)
    }

    /// The view of a fill's meta whose header the caller took out of it (`stored`: names and
    /// values in allocations no larger than the response head, as the front's origin reader
    /// makes them, so nothing is detached) and whose `vary` fields it worked out already (to key
    /// the fill). The same view as [`Self::of`] of the meta with its header.
    pub fn of_parts(
        stored: ResponseHeader,
        vary: VaryFields,
        m: &CacheMeta,
        own: &[HeaderName],
    ) -> HitView {
        let header = served_header(stored, own);
        let content_length = header
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|v| v.parse::<usize>().ok());
        let wire = content_length.and_then(|_| wire_head_of(&header));
        HitView {
            wire,
            content_length,
            vary,
            header,
            fresh_until: m.fresh_until(),
            epoch: m.epoch(),
            created: m.created(),
            provenance: m.provenance(),
            variance: m.variance(),
        }
    }

    /// Approximate heap bytes of the decoded header and its wire form.
    fn weight(&self) -> usize {
        self.wire.as_ref().map_or(0, Bytes::len)
            + self
                .header
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 48)
                .sum::<usize>()
            + 128
    }
}

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    /// Unique per stored version (a 304 refresh stores a new one).
    pub id: u64,
    /// `CacheMeta::serialize()` output (internal, header).
    pub meta: (Vec<u8>, Vec<u8>),
    /// The same meta, decoded for the fast hit path (`None` if it failed to decode, in which
    /// case only pingora's path serves the entry).
    pub view: Option<Arc<HitView>>,
    pub body: Bytes,
    pub primary: HashBinary,
    pub url: UrlKey,
    pub groups: Vec<String>,
    /// Soft purge time in Unix milliseconds; 0 when not soft-purged.
    pub expired_at_ms: AtomicU64,
    /// [`Self::weight`], worked out once: the store asks for it on every insert and eviction
    /// (walking the header's fields each time was 1.8 % of a miss once the store was full,
    /// `perf`).
    charged: u64,
}

impl Entry {
    pub fn new(
        id: u64,
        meta: (Vec<u8>, Vec<u8>),
        view: Option<Arc<HitView>>,
        body: Bytes,
        primary: HashBinary,
        url: UrlKey,
        groups: Vec<String>,
    ) -> Entry {
        let grouped: usize = groups.iter().map(|g| g.len() * 2 + 32).sum();
        let charged = (body.len()
            + meta.0.len()
            + meta.1.len()
            + url.host.len()
            + url.path.len() * 2
            + grouped
            + view.as_ref().map_or(0, |v| v.weight())) as u64
            + ENTRY_OVERHEAD;
        Entry {
            id,
            meta,
            view,
            body,
            primary,
            url,
            groups,
            expired_at_ms: AtomicU64::new(0),
            charged,
        }
    }

    /// Bytes this entry is charged in the store.
    pub fn weight(&self) -> u64 {
        self.charged
    }

    /// Soft-purged (marked stale by an invalidation).
    pub fn is_soft_expired(&self) -> bool {
        self.expired_at_ms.load(Ordering::Relaxed) != 0
    }

    /// Marks the entry soft-purged at `at_ms` (Unix ms) unless it already is.
    pub fn mark_soft_expired(&self, at_ms: u64) {
        let _ = self
            .expired_at_ms
            .compare_exchange(0, at_ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn soft_expiry(&self) -> Option<SystemTime> {
        match self.expired_at_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

/// The header in `slot`, given up: an empty header (no allocation) is left in its place.
pub fn take_header(slot: &mut ResponseHeader) -> ResponseHeader {
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    std::mem::replace(slot, empty)
}

/// The HTTP/1.1 form of a served header for the raw front: status line and fields as pingora
/// would write them (its own serializer, so names keep the case the origin sent), minus the
/// per-response fields, which the front appends. The stored `Date` is kept (pingora rewrites it
/// on every response it writes itself).
pub fn wire_head(head: ResponseHeader) -> Option<Bytes> {
    wire_head_of(&head)
}

/// [`wire_head`] of a borrowed header: copied only when it holds a per-response field to leave
/// out (a header copy was a tenth of preparing a stored view).
pub fn wire_head_of(head: &ResponseHeader) -> Option<Bytes> {
    if !head.headers.contains_key(header::DATE)
        || head.headers.contains_key(header::TRANSFER_ENCODING)
        || head.version != http::Version::HTTP_11
    {
        return None;
    }
    if super::policy::has_any(&head.headers, &PER_RESPONSE_FIELDS) {
        let mut head = head.clone();
        for name in PER_RESPONSE_FIELDS {
            head.remove_header(name);
        }
        return Some(head_bytes(&head));
    }
    Some(head_bytes(head))
}

/// The status line and fields of `head` as pingora's serializer writes them.
fn head_bytes(head: &ResponseHeader) -> Bytes {
    let mut buf = bytes::BytesMut::with_capacity(512);
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(head.status.as_str().as_bytes());
    buf.extend_from_slice(b" ");
    if let Some(reason) = head.get_reason_phrase() {
        buf.extend_from_slice(reason.as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    head.header_to_h1_wire(&mut buf);
    buf.freeze()
}

/// The targeted fields as the decoded views need them.
#[derive(Debug, Clone)]
pub struct TargetedFields {
    /// Obeyed, highest priority first.
    pub obeyed: Vec<HeaderName>,
    /// This proxy's own: removed from what it serves.
    pub own: Vec<HeaderName>,
}

/// `h` with every name and value in an allocation of its own. pingora's HTTP/1 client slices
/// the names and values of an origin's response head out of its read buffer (4 KiB or more);
/// a stored view holding such slices kept that whole buffer alive per entry: RSS over 50,000
/// stored 1 KiB objects grew 7.1 KB per entry instead of 4.1 KB (`HitView::of` from 1a3eedb
/// until this copy). `None` from pingora's own checks cannot happen for a header it built;
/// should it, the shared header is kept (correct, only larger).
pub fn detached(h: &ResponseHeader) -> ResponseHeader {
    let copy = || -> pingora_error::Result<ResponseHeader> {
        let size = Some(h.headers.len());
        let mut out = if h.has_case() {
            ResponseHeader::build(h.status, size)?
        } else {
            ResponseHeader::build_no_case(h.status, size)?
        };
        out.set_version(h.version);
        out.set_reason_phrase(h.get_reason_phrase())?;
        h.map(|name, value| {
            let mut owned = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                pingora_error::Error::new(pingora_error::ErrorType::InvalidHTTPHeader)
            })?;
            owned.set_sensitive(value.is_sensitive());
            match name {
                HeaderNameVariant::Case(case) => {
                    out.append_header(Bytes::copy_from_slice(case.as_slice()), owned)?
                }
                HeaderNameVariant::Titled(name) => out.append_header(name.to_string(), owned)?,
            };
            Ok(())
        })?;
        Ok(out)
    };
    copy().unwrap_or_else(|_| h.clone())
}

/// The per-entry part of what pingora's hit path does to a stored header (`cache_hit_header`
/// and `range_header_filter` in pingora-proxy's `proxy_cache.rs`), applied once at store time:
/// HTTP/1.1, chunked framing when there is no `Content-Length`, and `Accept-Ranges: bytes` on a
/// 200 with a valid `Content-Length` (the store can serve ranges). `Age` is per request. `own`
/// are the targeted fields addressed to this proxy alone, which never leave it.
pub fn served_header(mut header: ResponseHeader, own: &[HeaderName]) -> ResponseHeader {
    header.set_version(http::Version::HTTP_11);
    for name in own {
        header.remove_header(name);
    }
    let status = header.status;
    let length = header
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| std::str::from_utf8(v.as_bytes()).map(|s| s.parse::<usize>().is_ok()));
    if !matches!(status.as_u16(), 204 | 304) && !status.is_informational() && length.is_none() {
        let _ = header.insert_header(header::TRANSFER_ENCODING, "chunked");
    }
    if status == http::StatusCode::OK && length == Some(Ok(true)) {
        let _ = header.insert_header(header::ACCEPT_RANGES, "bytes");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::response;

    #[test]
    fn a_detached_header_shares_no_byte_with_the_buffer_it_was_parsed_from() {
        // as pingora's client builds a response head: names and values sliced out of one
        // read buffer
        let buffer = Bytes::from(
            b"X-Mixed-Case: 1\r\ncache-control: max-age=60\r\nSet-Cookie: a\r\nset-cookie: b"
                .repeat(64),
        );
        let mut parsed = ResponseHeader::build(200, None).unwrap();
        let slice = |at: usize, len: usize| buffer.slice(at..at + len);
        parsed
            .append_header(
                slice(0, 12),
                HeaderValue::from_maybe_shared(slice(14, 1)).unwrap(),
            )
            .unwrap();
        parsed
            .append_header(
                slice(17, 13),
                HeaderValue::from_maybe_shared(slice(32, 10)).unwrap(),
            )
            .unwrap();
        parsed
            .append_header(
                slice(44, 10),
                HeaderValue::from_maybe_shared(slice(56, 1)).unwrap(),
            )
            .unwrap();
        parsed
            .append_header(
                slice(59, 10),
                HeaderValue::from_maybe_shared(slice(71, 1)).unwrap(),
            )
            .unwrap();
        parsed.set_reason_phrase(Some("Fine")).unwrap();
        let copy = detached(&parsed);
        let inside = |p: &[u8]| buffer.as_ptr_range().contains(&p.as_ptr());
        let mut fields = Vec::new();
        copy.map(|name, value| {
            let HeaderNameVariant::Case(name) = name else {
                panic!("the case map is kept");
            };
            assert!(!inside(name.as_slice()) && !inside(value.as_bytes()));
            fields.push(format!(
                "{}: {}",
                String::from_utf8_lossy(name.as_slice()),
                value.to_str().unwrap()
            ));
            Ok(())
        })
        .unwrap();
        // the same fields in the same spelling and order, the same status line
        assert_eq!(
            fields,
            [
                "X-Mixed-Case: 1",
                "cache-control: max-age=60",
                "Set-Cookie: a",
                "set-cookie: b"
            ]
        );
        assert_eq!(copy.get_reason_phrase(), Some("Fine"));
        assert_eq!((copy.status, copy.version), (parsed.status, parsed.version));
        let mut a = Vec::new();
        let mut b = Vec::new();
        parsed.header_to_h1_wire(&mut a);
        copy.header_to_h1_wire(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn the_view_of_a_live_meta_is_the_view_of_its_serialization() {
        let fields = TargetedFields {
            obeyed: vec![HeaderName::from_static("llmselect-cache-control")],
            own: vec![HeaderName::from_static("llmselect-cache-control")],
        };
        let header = response(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("content-length", "5"),
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("ETag", "\"v1\""),
                ("llmselect-cache-control", "max-age=60"),
                ("vary", "Accept-Language"),
            ],
        );
        // sub-second times, as a fill's are
        let now = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let mut meta = CacheMeta::new(now + Duration::from_millis(60_500), now, 5, 7, header);
        meta.set_epoch_override(now - Duration::from_millis(1_250));
        meta.set_variance_key([7u8; 16]);
        let live = HitView::of(&meta, &fields);
        let decoded = HitView::decode(&meta.serialize().unwrap(), &fields).unwrap();
        assert_eq!(live.wire, decoded.wire);
        assert!(live.wire.is_some());
        assert_eq!(
            (live.fresh_until, live.epoch, live.created, live.provenance),
            (
                decoded.fresh_until,
                decoded.epoch,
                decoded.created,
                decoded.provenance
            )
        );
        assert_eq!(live.fresh_until, now + Duration::from_millis(60_500));
        assert_eq!(
            (live.variance, live.content_length),
            (decoded.variance, decoded.content_length)
        );
        assert_eq!(live.vary, decoded.vary);
        assert_eq!(
            format!("{:?}", live.header.headers),
            format!("{:?}", decoded.header.headers)
        );
        // the front's fill builds it from the header it took out of the meta and the fields it
        // keyed the variance with: the same view
        let stored = meta.response_header().clone();
        let vary = VaryFields::of(&stored.headers, &fields.obeyed);
        let parts = HitView::of_parts(stored, vary, &meta, &fields.own);
        assert_eq!(format!("{parts:?}"), format!("{live:?}"));
    }
}
