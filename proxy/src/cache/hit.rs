//! The fast path for plain fresh hits.
//!
//! pingora's cache state machine is the authority on every cache decision, but on a hit it pays
//! for work that a plain fresh hit does not need: it deserializes the stored meta (msgpack plus a
//! zstd-compressed header, about 4 µs) and boxes a hit handler for every request. Most traffic
//! is exactly that kind of hit, so `request_filter` first asks [`fresh_entry`] whether the store
//! holds a fresh response that pingora would serve unchanged, and serves it from the header that
//! was decoded once when the entry was stored ([`HitView`](super::entry::HitView)).
//!
//! The fast path only answers when the outcome is certain and identical to pingora's:
//! - the request is a GET or HEAD without a body, an `Upgrade`, `If-Match` or
//!   `If-Unmodified-Since`, and without `If-None-Match`, `If-Modified-Since`, `Range` and
//!   `If-Range` unless the caller evaluates them (the raw front does; see [`eligible`]), and its
//!   `Cache-Control` / `Pragma` (when request directives are honoured) ask for nothing more than
//!   a fresh response (`FastHits::lookup`);
//! - the entry is fresh and not soft-purged;
//! - the `Vary` check is pingora's own: the request's variance must equal the stored one, in the
//!   primary slot or in the secondary slot, whose entry must have been created after the primary
//!   slot's provenance (`cache_vary_lookup`'s `valid_after`).
//!
//! Anything else (stale, missing, conditional, ranged, uncertain) returns `None`, and pingora's
//! full path runs as if the fast path did not exist.

use super::entry::{Entry, HitView};
use super::store::Store;
use http::{header, HeaderMap, HeaderName, Method};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::CacheKey;
use pingora_http::{RequestHeader, ResponseHeader};
use std::sync::Arc;
use std::time::SystemTime;

/// Request fields whose handling (the preconditions below, upgrades) lives in pingora's path.
const FULL_PATH_FIELDS: [HeaderName; 4] = [
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
];

/// The preconditions a fresh hit may answer with `304 Not Modified` (RFC 9111 §4.3.2), and the
/// range fields (RFC 9110 §14). The raw front evaluates them itself, with the same functions as
/// pingora's hit path ([`not_modified`], `cache::range::apply`); `request_filter` leaves them to
/// pingora's hit path.
pub const CONDITIONAL_FIELDS: [HeaderName; 4] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

/// Whether a stored response answers the conditional request `req` with `304 Not Modified`:
/// pingora's evaluation (`If-None-Match` first, then `If-Modified-Since` against
/// `Last-Modified`), and, for a stored response without `Last-Modified`, `If-Modified-Since`
/// against its `Date` (RFC 9111 §4.3.2: the date the cache can vouch for). Used by the front and
/// by pingora's hit path (`cache_not_modified_filter`), so both answer alike.
pub fn not_modified(req: &RequestHeader, stored: &ResponseHeader) -> bool {
    use pingora_core::protocols::http::conditional_filter::not_modified_filter;
    if not_modified_filter(req, stored) {
        return true;
    }
    let date =
        |h: &HeaderMap, name: header::HeaderName| h.get(name).and_then(super::freshness::http_date);
    stored.status == http::StatusCode::OK
        && matches!(req.method, Method::GET | Method::HEAD)
        && !req.headers.contains_key(header::IF_NONE_MATCH)
        && !stored.headers.contains_key(header::LAST_MODIFIED)
        && match (
            date(&req.headers, header::IF_MODIFIED_SINCE),
            date(&stored.headers, header::DATE),
        ) {
            (Some(since), Some(date)) => since >= date,
            _ => false,
        }
}

/// Whether a request carries one of the [`CONDITIONAL_FIELDS`] (a precondition or a range).
pub fn is_conditional(req: &HeaderMap) -> bool {
    // one pass over the request's few fields: cheaper than a hashed lookup per name
    req.keys().any(|name| CONDITIONAL_FIELDS.contains(name))
}

/// Whether a request may be answered by the fast path at all (`conditionals`: whether the caller
/// evaluates [`CONDITIONAL_FIELDS`]). Request directives (`Cache-Control`, `Pragma`) are judged
/// against the entry found ([`has_directives`], `policy::request_freshness`).
pub fn eligible(req: &RequestHeader, conditionals: bool) -> bool {
    if req.method != Method::GET && req.method != Method::HEAD {
        return false;
    }
    let h = &req.headers;
    // one pass over the request's few fields: cheaper than a hashed lookup per name
    if h.keys().any(|name| {
        FULL_PATH_FIELDS.contains(name) || (!conditionals && CONDITIONAL_FIELDS.contains(name))
    }) {
        return false;
    }
    // A request body would have to be drained before the connection is reused.
    h.get(header::CONTENT_LENGTH)
        .is_none_or(|v| v.as_bytes() == b"0")
}

/// Whether a request carries cache directives (`Cache-Control`, `Pragma`).
pub fn has_directives(req: &HeaderMap) -> bool {
    req.contains_key(header::CACHE_CONTROL) || req.contains_key(header::PRAGMA)
}

/// The stored entry that answers a request with these headers as a fresh hit, or `None` when
/// pingora's full path must decide.
pub fn fresh_entry(
    store: &Store,
    primary: &HashBinary,
    req: &HeaderMap,
    auth_cookies: &[String],
    now: SystemTime,
) -> Option<Arc<Entry>> {
    select_variant(store, primary, req, auth_cookies).and_then(|e| fresh(e, now))
}

/// The stored variant a request with these headers selects, fresh or not (pingora's
/// `cache_vary_lookup`); `None` when no stored variant matches. Also what the admin `/explain`
/// reports as the selected variant.
pub fn select_variant(
    store: &Store,
    primary: &HashBinary,
    req: &HeaderMap,
    auth_cookies: &[String],
) -> Option<Arc<Entry>> {
    let first = store.get(primary)?;
    let view = first.view.as_ref()?;
    let Some(variance) = other_variant(view, req, auth_cookies) else {
        return Some(first);
    };
    let second = store.get(&secondary_slot(primary, variance))?;
    let second_view = second.view.as_ref()?;
    let matches = second_view.variance == Some(variance)
        && request_variance(second_view, req, auth_cookies) == Some(variance)
        && second_view.created >= view.provenance;
    matches.then_some(second)
}

/// The variance a request needs when the response in the primary slot (described by `view`) is
/// not its variant; `None` when the primary slot answers it: the request has no variance (pingora
/// serves the primary slot as is when the filter reports none), or the same as the slot's. The
/// one check that keeps one credential's variant from another, for stored entries and for fills
/// in progress alike.
pub fn other_variant(
    view: &HitView,
    req: &HeaderMap,
    auth_cookies: &[String],
) -> Option<HashBinary> {
    let variance = request_variance(view, req, auth_cookies)?;
    (view.variance != Some(variance)).then_some(variance)
}

fn request_variance(
    view: &HitView,
    req: &HeaderMap,
    auth_cookies: &[String],
) -> Option<HashBinary> {
    view.vary.variance(req, auth_cookies)
}

fn fresh(entry: Arc<Entry>, now: SystemTime) -> Option<Arc<Entry>> {
    let view = entry.view.as_ref()?;
    (!entry.is_soft_expired() && view.fresh_until >= now).then_some(entry)
}

/// The storage key of a variant outside the primary slot (pingora's `combined_bin`).
fn secondary_slot(primary: &HashBinary, variance: HashBinary) -> HashBinary {
    let mut key = CacheKey::new(Vec::<u8>::new(), "");
    key.set_primary_bin_override(*primary);
    key.set_variance_key(variance);
    key.combined_bin()
}

/// A `CacheKey` that carries only the primary hash (for the predictor).
pub fn primary_only_key(primary: &HashBinary) -> CacheKey {
    let mut key = CacheKey::new(Vec::<u8>::new(), "");
    key.set_primary_bin_override(*primary);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{served_header, FillInfo};
    use crate::cache::key::UrlKey;
    use crate::cache::store::{Scope, StoreOptions};
    use bytes::Bytes;
    use pingora_cache::CacheMeta;
    use pingora_http::ResponseHeader;
    use std::time::{Duration, Instant};

    fn store() -> Store {
        Store::new(StoreOptions::for_tests(1 << 20, 4)).unwrap()
    }

    use crate::test_support::{header_map as headers, request as req};

    fn primary() -> HashBinary {
        UrlKey::new("h", "/x").primary_hash()
    }

    /// A response to store: fresh for 60 s from `age` ago; a `variance` makes it vary on
    /// `Authorization`.
    struct Fill {
        slot: HashBinary,
        age: Duration,
        variance: Option<HashBinary>,
        body: &'static str,
    }

    fn variant(slot: HashBinary, age: Duration, v: HashBinary, body: &'static str) -> Fill {
        Fill {
            slot,
            age,
            variance: Some(v),
            body,
        }
    }

    fn put(s: &Store, f: Fill) {
        let created = SystemTime::now() - f.age;
        let mut h = ResponseHeader::build(200, None).unwrap();
        if f.variance.is_some() {
            h.insert_header("vary", "authorization").unwrap();
        } else {
            // explicitly shared, so no implicit credential variance either
            h.insert_header("cache-control", "public").unwrap();
        }
        let mut meta = CacheMeta::new(created + Duration::from_secs(60), created, 0, 0, h);
        if let Some(v) = f.variance {
            meta.set_variance_key(v);
        }
        let info = FillInfo {
            started: Instant::now(),
            url: UrlKey::new("h", "/x"),
            groups: vec![],
            revalidates: None,
        };
        let meta = meta.serialize().unwrap();
        assert!(s.commit(f.slot, primary(), meta, Bytes::from(f.body), info) > 0);
    }

    /// A store holding one plain (non-varying) fresh response under the primary slot.
    fn plain() -> (Store, HashBinary) {
        let s = store();
        let p = primary();
        put(
            &s,
            Fill {
                slot: p,
                age: Duration::ZERO,
                variance: None,
                body: "body",
            },
        );
        (s, p)
    }

    /// Request headers of alice, bob and carol, and the variances of alice and bob.
    fn users() -> ([HeaderMap; 3], HashBinary, HashBinary) {
        let vary = headers(&[("vary", "authorization")]);
        let h = ["alice", "bob", "carol"]
            .map(|u| headers(&[("authorization", &format!("Bearer {u}"))]));
        let targeted = StoreOptions::for_tests(1, 1).targeted_fields;
        let va = super::super::vary::variance(&vary, &h[0], &[], &targeted).unwrap();
        let vb = super::super::vary::variance(&vary, &h[1], &[], &targeted).unwrap();
        (h, va, vb)
    }

    #[test]
    fn if_modified_since_without_last_modified_is_judged_against_date() {
        let stored = |fields: &[(&str, &str)]| {
            let mut r = ResponseHeader::build(200, None).unwrap();
            for (k, v) in fields {
                r.append_header(k.to_string(), *v).unwrap();
            }
            r
        };
        let date = "Tue, 01 Dec 2026 02:00:00 GMT";
        let later = "Tue, 01 Dec 2026 03:00:00 GMT";
        let earlier = "Tue, 01 Dec 2026 01:00:00 GMT";
        let no_lm = stored(&[("date", date)]);
        assert!(not_modified(&req(&[("if-modified-since", later)]), &no_lm));
        assert!(not_modified(&req(&[("if-modified-since", date)]), &no_lm));
        assert!(!not_modified(
            &req(&[("if-modified-since", earlier)]),
            &no_lm
        ));
        // If-None-Match wins; Last-Modified, when present, is the one compared
        assert!(!not_modified(
            &req(&[("if-modified-since", later), ("if-none-match", "\"x\"")]),
            &no_lm
        ));
        let lm = stored(&[("date", date), ("last-modified", later)]);
        assert!(!not_modified(&req(&[("if-modified-since", date)]), &lm));
        assert!(not_modified(&req(&[("if-modified-since", later)]), &lm));
    }

    #[test]
    fn eligibility() {
        assert!(eligible(&req(&[]), false));
        assert!(eligible(&req(&[("content-length", "0")]), false));
        assert!(!eligible(&req(&[("if-none-match", "\"a\"")]), false));
        assert!(eligible(&req(&[("if-none-match", "\"a\"")]), true));
        assert!(eligible(&req(&[("if-modified-since", "x")]), true));
        assert!(!eligible(&req(&[("if-match", "\"a\"")]), true));
        assert!(!eligible(&req(&[("range", "bytes=0-1")]), false));
        assert!(eligible(&req(&[("range", "bytes=0-1")]), true));
        assert!(!eligible(&req(&[("content-length", "3")]), false));
        assert!(eligible(&req(&[("cache-control", "no-cache")]), false));
        assert!(has_directives(&req(&[("pragma", "x")]).headers));
        let post = RequestHeader::build("POST", b"/x", None).unwrap();
        assert!(!eligible(&post, true));
    }

    #[test]
    fn fresh_plain_entry_is_served_and_stale_is_not() {
        let (s, p) = plain();
        let now = SystemTime::now();
        let e = fresh_entry(&s, &p, &HeaderMap::new(), &[], now).expect("fresh hit");
        assert_eq!(e.body, Bytes::from("body"));
        let later = now + Duration::from_secs(120);
        assert!(fresh_entry(&s, &p, &HeaderMap::new(), &[], later).is_none());
    }

    #[test]
    fn soft_purged_entry_falls_back() {
        let (s, p) = plain();
        s.invalidate(&Scope::Url(UrlKey::new("h", "/x")), true);
        assert!(fresh_entry(&s, &p, &HeaderMap::new(), &[], SystemTime::now()).is_none());
    }

    #[test]
    fn served_header_matches_pingoras_hit_header() {
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("content-length", "4").unwrap();
        h.insert_header("llmselect-cache-control", "max-age=5")
            .unwrap();
        h.insert_header("cdn-cache-control", "max-age=5").unwrap();
        let own = [HeaderName::from_static("llmselect-cache-control")];
        let h = served_header(h, &own);
        assert!(h.headers.get("llmselect-cache-control").is_none());
        assert!(h.headers.get("cdn-cache-control").is_some());
        assert_eq!(h.headers.get("accept-ranges").unwrap(), "bytes");
        assert!(h.headers.get("transfer-encoding").is_none());
        let chunked = served_header(ResponseHeader::build(200, None).unwrap(), &own);
        assert_eq!(chunked.headers.get("transfer-encoding").unwrap(), "chunked");
        assert!(chunked.headers.get("accept-ranges").is_none());
        let no_body = served_header(ResponseHeader::build(204, None).unwrap(), &own);
        assert!(no_body.headers.is_empty());
    }

    #[test]
    fn vary_serves_only_the_matching_variant() {
        let s = store();
        let p = primary();
        let ([alice, bob, carol], va, vb) = users();
        put(&s, variant(p, Duration::ZERO, va, "alice"));
        put(
            &s,
            Fill {
                slot: secondary_slot(&p, vb),
                age: Duration::ZERO,
                variance: Some(vb),
                body: "bob",
            },
        );
        let now = SystemTime::now();
        let a = fresh_entry(&s, &p, &alice, &[], now).unwrap();
        assert_eq!(a.body, Bytes::from("alice"));
        let b = fresh_entry(&s, &p, &bob, &[], now).unwrap();
        assert_eq!(b.body, Bytes::from("bob"));
        assert!(fresh_entry(&s, &p, &carol, &[], now).is_none());
        assert!(fresh_entry(&s, &p, &HeaderMap::new(), &[], now).is_none());
    }

    #[test]
    fn secondary_older_than_primary_provenance_falls_back() {
        let s = store();
        let p = primary();
        let ([_, bob, _], va, vb) = users();
        // bob's variant predates the primary slot's current lineage (a purge of all variants
        // only deletes the primary slot; its provenance is the tombstone of the others)
        put(
            &s,
            Fill {
                slot: secondary_slot(&p, vb),
                age: Duration::from_secs(10),
                variance: Some(vb),
                body: "bob",
            },
        );
        put(&s, variant(p, Duration::ZERO, va, "alice"));
        assert!(fresh_entry(&s, &p, &bob, &[], SystemTime::now()).is_none());
    }
}
