//! The headers this proxy adds to every response: `X-Cache`, `Cache-Status` (RFC 9211),
//! `X-Response-Time` and `Server-Timing`. Used for hits, misses, passes and the errors the
//! proxy generates itself.

pub(crate) use crate::status::XCache;
use pingora_cache::{CachePhase, NoCacheReason};
use pingora_http::ResponseHeader;
use std::time::Duration;

/// Cache name in `Cache-Status`.
pub const CACHE_NAME: &str = "llmselect-edge";

/// What happened to a request, as the cache saw it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub phase: CachePhase,
    /// The request waited on another request's fill.
    pub collapsed: bool,
    pub fwd_status: Option<u16>,
    pub stored: bool,
    /// Remaining freshness in seconds (negative when stale), when a stored response is served.
    pub ttl: Option<i64>,
    /// A request directive forced the origin fetch.
    pub forced_by_request: bool,
    /// The predictor bypassed the cache for this request.
    pub bypassed: bool,
}

/// `X-Cache` and the `Cache-Status` member for an outcome.
pub fn classify(o: &Outcome) -> (XCache, String) {
    let mut parts: Vec<String> = vec![CACHE_NAME.to_string()];
    let fwd_status = |parts: &mut Vec<String>| {
        if let Some(s) = o.fwd_status {
            parts.push(format!("fwd-status={s}"));
        }
    };
    let phase = match o.phase {
        CachePhase::Disabled(_) if o.bypassed => CachePhase::Bypass,
        p => p,
    };
    let x = match phase {
        CachePhase::Hit => {
            if o.collapsed {
                parts.push("fwd=uri-miss".into());
                parts.push("collapsed".into());
            } else {
                parts.push("hit".into());
            }
            XCache::Hit
        }
        CachePhase::Stale | CachePhase::StaleUpdating => {
            parts.push("hit".into());
            XCache::Stale
        }
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => {
            parts.push("fwd=stale".into());
            fwd_status(&mut parts);
            if matches!(o.phase, CachePhase::Revalidated) {
                parts.push("stored".into());
            }
            XCache::Revalidated
        }
        CachePhase::Expired => {
            parts.push(
                if o.forced_by_request {
                    "fwd=request"
                } else {
                    "fwd=stale"
                }
                .into(),
            );
            fwd_status(&mut parts);
            if o.stored {
                parts.push("stored".into());
            }
            XCache::Miss
        }
        CachePhase::Miss => {
            parts.push("fwd=uri-miss".into());
            fwd_status(&mut parts);
            if o.stored {
                parts.push("stored".into());
            }
            XCache::Miss
        }
        CachePhase::Bypass => {
            parts.push("fwd=bypass".into());
            fwd_status(&mut parts);
            XCache::Bypass
        }
        CachePhase::Disabled(NoCacheReason::NeverEnabled)
        | CachePhase::Uninit
        | CachePhase::CacheKey => {
            parts.push("fwd=method".into());
            fwd_status(&mut parts);
            XCache::Pass
        }
        CachePhase::Disabled(_) => {
            parts.push("fwd=uri-miss".into());
            fwd_status(&mut parts);
            XCache::Miss
        }
    };
    if let Some(ttl) = o.ttl {
        if matches!(x, XCache::Hit | XCache::Stale | XCache::Revalidated) || o.stored {
            parts.push(format!("ttl={ttl}"));
        }
    }
    (x, parts.join("; "))
}

/// The `Cache-Status` of a fresh hit served by the fast path (the same as [`classify`] gives for
/// an uncollapsed hit).
pub fn hit_cache_status(ttl_secs: i64) -> String {
    format!("{CACHE_NAME}; hit; ttl={ttl_secs}")
}

/// The `Cache-Status` of a response the proxy generated itself.
/// `Cache-Status` of a response the proxy generates itself. `stale`: a stored response existed
/// but could not be used (RFC 9211 `fwd=stale`), else the URI was not in the cache.
pub fn error_cache_status(detail: &str, stale: bool) -> String {
    let fwd = if stale { "stale" } else { "uri-miss" };
    format!("{CACHE_NAME}; fwd={fwd}; detail={detail}")
}

/// Durations reported in `Server-Timing` (milliseconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub total: Duration,
    pub lookup: Option<Duration>,
    pub lock: Option<Duration>,
    pub origin: Option<Duration>,
}

/// Seconds with microsecond precision and an `s` suffix, as the origin writes them.
pub fn response_time(d: Duration) -> String {
    let mut out = Vec::with_capacity(16);
    push_response_time(&mut out, d);
    String::from_utf8(out).unwrap_or_default()
}

/// `Server-Timing: cache;desc="HIT", total;dur=…, lookup;dur=…, lock;dur=…, origin;dur=…`.
pub fn server_timing(x: XCache, t: &Timing) -> String {
    let mut out = Vec::with_capacity(96);
    push_server_timing(&mut out, x, t);
    String::from_utf8(out).unwrap_or_default()
}

// The per-response fields are written as bytes with `itoa`, not through `fmt`: the formatting
// machinery was a fifth of a front hit's instructions (callgrind).

/// Appends `n` in decimal.
fn push_int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `value / scale` with `digits` fraction digits (`scale` = 10^`digits`).
fn push_fixed(out: &mut Vec<u8>, value: u128, scale: u128, digits: usize) {
    push_int(out, value / scale);
    out.push(b'.');
    let mut buf = itoa::Buffer::new();
    let fraction = buf.format(value % scale);
    out.resize(out.len() + digits.saturating_sub(fraction.len()), b'0');
    out.extend_from_slice(fraction.as_bytes());
}

fn push_response_time(out: &mut Vec<u8>, d: Duration) {
    push_fixed(out, d.as_micros(), 1_000_000, 6);
    out.push(b's');
}

fn push_server_timing(out: &mut Vec<u8>, x: XCache, t: &Timing) {
    out.extend_from_slice(b"cache;desc=\"");
    out.extend_from_slice(x.as_str().as_bytes());
    out.extend_from_slice(b"\", total;dur=");
    push_fixed(out, t.total.as_micros(), 1000, 3);
    for (name, d) in [("lookup", t.lookup), ("lock", t.lock), ("origin", t.origin)] {
        if let Some(d) = d {
            out.extend_from_slice(b", ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b";dur=");
            push_fixed(out, d.as_micros(), 1000, 3);
        }
    }
}

/// `x-response-time`, `server-timing` and `connection`, ending the header block.
fn push_timing_fields(out: &mut Vec<u8>, x: XCache, t: &Timing, keepalive: bool) {
    out.extend_from_slice(b"x-response-time: ");
    push_response_time(out, t.total);
    out.extend_from_slice(b"\r\nserver-timing: ");
    push_server_timing(out, x, t);
    out.extend_from_slice(if keepalive {
        b"\r\nconnection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"\r\nconnection: close\r\n\r\n".as_slice()
    });
}

/// Writes the four headers, replacing any copies from the origin or the store.
pub fn stamp(resp: &mut ResponseHeader, x: XCache, cache_status: &str, t: &Timing) {
    let _ = resp.insert_header("x-cache", x.as_str());
    let _ = resp.insert_header("cache-status", cache_status);
    let _ = resp.insert_header("x-response-time", response_time(t.total));
    let _ = resp.insert_header("server-timing", server_timing(x, t));
}

/// The per-response fields of a fresh hit as HTTP/1.1 lines, ending the header block: what
/// [`stamp`] and pingora add to the stored header (`Age`, the four stamps, `Connection`), for
/// the raw front, which writes the prepared stored header and then these. A hit that waited for
/// another request's fill (`t.lock`) is reported as collapsed, as [`classify`] reports it.
pub fn write_hit_fields(buf: &mut Vec<u8>, age: u64, ttl: i64, t: &Timing, keepalive: bool) {
    let status: &[u8] = if t.lock.is_some() {
        b"fwd=uri-miss; collapsed"
    } else {
        b"hit"
    };
    buf.extend_from_slice(b"age: ");
    push_int(buf, age);
    buf.extend_from_slice(b"\r\n");
    push_stamps(buf, XCache::Hit, t, keepalive, |buf| {
        buf.extend_from_slice(status);
        buf.extend_from_slice(b"; ttl=");
        push_int(buf, ttl);
    });
}

/// The per-response fields of a miss the raw front stored (`server::fill`) as HTTP/1.1 lines,
/// ending the header block: the four stamps as [`classify`] and [`stamp`] give them for a miss
/// with upstream status `fwd_status` that was stored with `ttl` seconds of freshness, and
/// `Connection`.
pub fn write_miss_fields(
    buf: &mut Vec<u8>,
    fwd_status: u16,
    ttl: i64,
    t: &Timing,
    keepalive: bool,
) {
    push_stamps(buf, XCache::Miss, t, keepalive, |buf| {
        buf.extend_from_slice(b"fwd=uri-miss; fwd-status=");
        push_int(buf, fwd_status);
        buf.extend_from_slice(b"; stored; ttl=");
        push_int(buf, ttl);
    });
}

/// The per-response fields of a response relayed by the raw front without storing it, as
/// HTTP/1.1 lines ending the header block: the four stamps as [`classify`] and [`stamp`] give
/// them for upstream status `fwd_status` and `Connection`. `x`: a bypass of a URL known
/// uncacheable (`server::forward`, `fwd=bypass`), or a miss the cache refused to store
/// (`server::fill`, `fwd=uri-miss`).
pub fn write_pass_fields(
    buf: &mut Vec<u8>,
    x: XCache,
    fwd_status: u16,
    t: &Timing,
    keepalive: bool,
) {
    push_stamps(buf, x, t, keepalive, |buf| {
        buf.extend_from_slice(if x == XCache::Bypass {
            b"fwd=bypass; fwd-status=".as_slice()
        } else {
            b"fwd=uri-miss; fwd-status=".as_slice()
        });
        push_int(buf, fwd_status);
    });
}

/// `X-Cache`, `Cache-Status` (its member after the cache's name written by `status`), the
/// timings and `Connection`, ending the header block: the same text as `classify`,
/// `response_time` and `server_timing` (tested below), written straight into the buffer.
fn push_stamps(
    buf: &mut Vec<u8>,
    x: XCache,
    t: &Timing,
    keepalive: bool,
    status: impl FnOnce(&mut Vec<u8>),
) {
    buf.extend_from_slice(b"x-cache: ");
    buf.extend_from_slice(x.as_str().as_bytes());
    buf.extend_from_slice(b"\r\ncache-status: ");
    buf.extend_from_slice(CACHE_NAME.as_bytes());
    buf.extend_from_slice(b"; ");
    status(buf);
    buf.extend_from_slice(b"\r\n");
    push_timing_fields(buf, x, t, keepalive);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(phase: CachePhase) -> Outcome {
        Outcome {
            phase,
            collapsed: false,
            fwd_status: Some(200),
            stored: false,
            ttl: None,
            forced_by_request: false,
            bypassed: false,
        }
    }

    #[test]
    fn statuses() {
        let mut hit = o(CachePhase::Hit);
        hit.ttl = Some(57);
        assert_eq!(
            classify(&hit),
            (XCache::Hit, "llmselect-edge; hit; ttl=57".into())
        );
        hit.collapsed = true;
        assert_eq!(
            classify(&hit).1,
            "llmselect-edge; fwd=uri-miss; collapsed; ttl=57"
        );
        let mut miss = o(CachePhase::Miss);
        miss.stored = true;
        miss.ttl = Some(60);
        assert_eq!(
            classify(&miss),
            (
                XCache::Miss,
                "llmselect-edge; fwd=uri-miss; fwd-status=200; stored; ttl=60".into()
            )
        );
        assert_eq!(
            classify(&o(CachePhase::Disabled(NoCacheReason::NeverEnabled))).0,
            XCache::Pass
        );
        assert_eq!(classify(&o(CachePhase::Bypass)).0, XCache::Bypass);
        let mut bypassed = o(CachePhase::Disabled(NoCacheReason::OriginNotCache));
        assert_eq!(classify(&bypassed).0, XCache::Miss);
        bypassed.bypassed = true;
        assert_eq!(classify(&bypassed).0, XCache::Bypass);
        assert_eq!(classify(&o(CachePhase::StaleUpdating)).0, XCache::Stale);
        let mut reval = o(CachePhase::Revalidated);
        reval.fwd_status = Some(304);
        assert_eq!(
            classify(&reval).1,
            "llmselect-edge; fwd=stale; fwd-status=304; stored"
        );
    }

    /// The lines `written` (a block of fields ending the head) are `resp`'s fields.
    fn assert_same_fields(resp: &ResponseHeader, written: Vec<u8>) {
        let mut expected: Vec<String> = resp
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        expected.sort();
        let text = String::from_utf8(written).unwrap();
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        let mut lines: Vec<String> = text.trim_end().split("\r\n").map(str::to_string).collect();
        lines.sort();
        assert_eq!(lines, expected);
    }

    #[test]
    fn the_front_writes_the_fields_stamp_writes() {
        for lock in [None, Some(Duration::from_micros(900))] {
            let t = Timing {
                total: Duration::from_micros(2_345_678),
                lookup: Some(Duration::from_micros(12)),
                lock,
                origin: None,
            };
            let mut hit = o(CachePhase::Hit);
            hit.collapsed = lock.is_some();
            hit.ttl = Some(-3);
            let (x, cache_status) = classify(&hit);
            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.insert_header("age", "7").unwrap();
            stamp(&mut resp, x, &cache_status, &t);
            resp.insert_header("connection", "close").unwrap();
            let mut buf = Vec::new();
            write_hit_fields(&mut buf, 7, -3, &t, false);
            assert_same_fields(&resp, buf);
        }
        assert_eq!(hit_cache_status(-3), "llmselect-edge; hit; ttl=-3");
    }

    #[test]
    fn the_front_writes_the_fields_stamp_writes_for_a_bypass_and_a_miss() {
        let t = Timing {
            total: Duration::from_micros(812),
            lookup: None,
            lock: None,
            origin: Some(Duration::from_micros(640)),
        };
        let mut bypass = o(CachePhase::Disabled(NoCacheReason::OriginNotCache));
        bypass.bypassed = true;
        bypass.fwd_status = Some(404);
        let (x, cache_status) = classify(&bypass);
        let mut resp = ResponseHeader::build(404, None).unwrap();
        stamp(&mut resp, x, &cache_status, &t);
        resp.insert_header("connection", "keep-alive").unwrap();
        let mut buf = Vec::new();
        write_pass_fields(&mut buf, XCache::Bypass, 404, &t, true);
        assert_same_fields(&resp, buf);
        // a miss the cache refused to store (`server::fill`): what pingora's path stamps on a
        // response whose cacheability was decided against
        let refused = Outcome {
            fwd_status: Some(200),
            ..o(CachePhase::Disabled(NoCacheReason::OriginNotCache))
        };
        let (x, cache_status) = classify(&refused);
        assert_eq!(cache_status, "llmselect-edge; fwd=uri-miss; fwd-status=200");
        let mut resp = ResponseHeader::build(200, None).unwrap();
        stamp(&mut resp, x, &cache_status, &t);
        resp.insert_header("connection", "close").unwrap();
        let mut buf = Vec::new();
        write_pass_fields(&mut buf, x, 200, &t, false);
        assert_same_fields(&resp, buf);
        // a miss the front stored
        let stored = Outcome {
            fwd_status: Some(203),
            stored: true,
            ttl: Some(59),
            ..o(CachePhase::Miss)
        };
        let (x, cache_status) = classify(&stored);
        assert_eq!(
            cache_status,
            "llmselect-edge; fwd=uri-miss; fwd-status=203; stored; ttl=59"
        );
        let mut resp = ResponseHeader::build(203, None).unwrap();
        stamp(&mut resp, x, &cache_status, &t);
        resp.insert_header("connection", "keep-alive").unwrap();
        let mut buf = Vec::new();
        write_miss_fields(&mut buf, 203, 59, &t, true);
        assert_same_fields(&resp, buf);
    }

    #[test]
    fn timing_formats() {
        assert_eq!(response_time(Duration::from_micros(412)), "0.000412s");
        assert_eq!(
            response_time(Duration::from_micros(12_345_678)),
            "12.345678s"
        );
        assert_eq!(response_time(Duration::ZERO), "0.000000s");
        let t = Timing {
            total: Duration::from_micros(1500),
            lookup: Some(Duration::from_micros(100)),
            lock: None,
            origin: Some(Duration::from_millis(1)),
        };
        assert_eq!(
            server_timing(XCache::Miss, &t),
            "cache;desc=\"MISS\", total;dur=1.500, lookup;dur=0.100, origin;dur=1.000"
        );
    }
}
