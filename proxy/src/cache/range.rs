//! Range requests answered from stored responses (RFC 9110 §14).
//!
//! pingora's range filter does the byte work (single ranges by seeking the stored body,
//! `multipart/byteranges`, 416 with `Content-Range: bytes */length`) on hits and on cache-enabled
//! misses alike, and a miss is always fetched whole (pingora strips `Range` and `If-Range` from
//! the upstream request), so later ranges hit. What it gets wrong is `If-Range`: it matches a weak
//! entity tag and a weak `Last-Modified`. Here `If-Range` is evaluated as RFC 9110 §13.1.5 says
//! (strong comparison only), and pingora only sees the request without it.
//!
//! Every path that answers a range request from the store goes through this one filter:
//! pingora's hit path, and the raw HTTP/1 front for the ranges and `416`s of fresh hits
//! (`server::front`, which writes a `multipart/byteranges` body with [`multipart_body`]).

use super::freshness::http_date;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{MultiRangeInfo, RangeType};
use std::time::Duration;

/// Most ranges answered in one `multipart/byteranges` response (pingora's default); more is
/// answered with the whole representation.
pub const MAX_RANGES: usize = 200;

/// Turns `resp` (the 200 a request would get) into the answer to the request's `Range`, if any.
pub fn apply(req: &RequestHeader, resp: &mut ResponseHeader) -> RangeType {
    if !req.headers.contains_key(header::IF_RANGE) {
        return pingora_proxy::range_header_filter(req, resp, Some(MAX_RANGES));
    }
    let mut view = req.clone();
    view.remove_header(&header::IF_RANGE);
    if !if_range_matches(req.headers.get(header::IF_RANGE), resp) {
        // the representation changed: the whole of it, not a part
        view.remove_header(&header::RANGE);
    }
    pingora_proxy::range_header_filter(&view, resp, Some(MAX_RANGES))
}

/// Whether an `If-Range` validator matches the stored response: an entity tag by strong
/// comparison (neither weak, same opaque tag), or an HTTP-date equal to a strong `Last-Modified`
/// (at least one second before the response's `Date`).
pub fn if_range_matches(if_range: Option<&HeaderValue>, resp: &ResponseHeader) -> bool {
    let Some(if_range) = if_range else {
        return false;
    };
    let Some(validator) = if_range.to_str().ok().map(str::trim) else {
        return false;
    };
    if validator.starts_with('"') || validator.starts_with("W/") {
        let etag = resp
            .headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        return match etag {
            Some(etag) => strong_etag(validator) && strong_etag(etag) && etag == validator,
            None => false,
        };
    }
    let (Some(date), Some(last_modified)) = (
        http_date(if_range),
        resp.headers.get(header::LAST_MODIFIED).and_then(http_date),
    ) else {
        return false;
    };
    let response_date = resp.headers.get(header::DATE).and_then(http_date);
    let strong = response_date
        .and_then(|d| d.duration_since(last_modified).ok())
        .is_some_and(|gap| gap >= Duration::from_secs(1));
    strong && date == last_modified
}

/// The `multipart/byteranges` body (RFC 9110 §14.6) of `parts` cut from `body`, the whole
/// stored representation: each part's delimiter, `Content-Type` and `Content-Range`, its bytes,
/// then the closing delimiter. Byte for byte the framing whose length [`apply`] (pingora's
/// filter) put in `Content-Length`, so the boundary and part heads agree with the response head.
/// `None` when a part lies beyond `body`.
pub fn multipart_body(parts: &MultiRangeInfo, body: &Bytes) -> Option<Bytes> {
    if parts
        .ranges
        .iter()
        .any(|r| r.start >= r.end || r.end > body.len())
    {
        return None;
    }
    let mut out = BytesMut::with_capacity(parts.calculate_multipart_length());
    for r in &parts.ranges {
        out.put_slice(b"\r\n--");
        out.put_slice(parts.boundary.as_bytes());
        out.put_slice(b"\r\n");
        if let Some(content_type) = &parts.content_type {
            out.put_slice(b"Content-Type: ");
            out.put_slice(content_type.as_bytes());
            out.put_slice(b"\r\n");
        }
        let range = format!(
            "Content-Range: bytes {}-{}/{}\r\n\r\n",
            r.start,
            r.end - 1,
            body.len()
        );
        out.put_slice(range.as_bytes());
        out.put_slice(&body[r.clone()]);
    }
    out.put_slice(b"\r\n--");
    out.put_slice(parts.boundary.as_bytes());
    out.put_slice(b"--\r\n");
    Some(out.freeze())
}

/// A well-formed strong entity tag: `"` opaque `"`.
fn strong_etag(tag: &str) -> bool {
    tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::response;

    fn stored() -> ResponseHeader {
        response(
            200,
            &[
                ("content-length", "10"),
                ("etag", "\"v1\""),
                ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("date", "Sun, 06 Nov 1994 08:49:40 GMT"),
            ],
        )
    }

    fn ranged(if_range: &str) -> (u16, Option<String>) {
        let mut req = crate::test_support::request(&[("range", "bytes=2-4")]);
        if !if_range.is_empty() {
            req.insert_header("if-range", if_range).unwrap();
        }
        let mut resp = stored();
        apply(&req, &mut resp);
        let cr = resp
            .headers
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status.as_u16(), cr)
    }

    #[test]
    fn if_range_uses_strong_comparison() {
        assert_eq!(ranged(""), (206, Some("bytes 2-4/10".into())));
        assert_eq!(ranged("\"v1\""), (206, Some("bytes 2-4/10".into())));
        assert_eq!(ranged("\"v2\""), (200, None));
        assert_eq!(ranged("W/\"v1\""), (200, None));
        assert_eq!(
            ranged("Sun, 06 Nov 1994 08:49:37 GMT"),
            (206, Some("bytes 2-4/10".into()))
        );
        assert_eq!(ranged("Sun, 06 Nov 1994 08:49:38 GMT"), (200, None));
        assert_eq!(ranged("garbage"), (200, None));
    }

    #[test]
    fn weak_etag_or_weak_date_never_match() {
        let mut weak = stored();
        weak.insert_header("etag", "W/\"v1\"").unwrap();
        assert!(!if_range_matches(
            Some(&HeaderValue::from_static("W/\"v1\"")),
            &weak
        ));
        // Last-Modified equal to Date: weak
        let mut same = stored();
        same.insert_header("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap();
        let lm = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(!if_range_matches(Some(&lm), &same));
        assert!(if_range_matches(Some(&lm), &stored()));
    }

    #[test]
    fn unsatisfiable_and_multiple_ranges() {
        let mut resp = stored();
        let req = crate::test_support::request(&[("range", "bytes=20-30")]);
        assert_eq!(apply(&req, &mut resp), RangeType::Invalid);
        assert_eq!(resp.status.as_u16(), 416);
        assert_eq!(resp.headers["content-range"], "bytes */10");
        let mut resp = stored();
        let req = crate::test_support::request(&[("range", "bytes=0-1, 5-6")]);
        assert!(matches!(apply(&req, &mut resp), RangeType::Multi(_)));
        assert!(resp.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/byteranges; boundary="));
    }

    #[test]
    fn a_multipart_body_has_the_length_and_boundary_of_its_head() {
        let mut resp = stored();
        resp.insert_header("content-type", "text/plain").unwrap();
        let req = crate::test_support::request(&[("range", "bytes=0-1, 5-6")]);
        let RangeType::Multi(parts) = apply(&req, &mut resp) else {
            panic!("several ranges");
        };
        let body = multipart_body(&parts, &Bytes::from_static(b"0123456789")).unwrap();
        let b = &parts.boundary;
        let expected = format!(
            "\r\n--{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
             \r\n--{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/10\r\n\r\n56\
             \r\n--{b}--\r\n"
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
        assert_eq!(
            resp.headers["content-length"].to_str().unwrap(),
            body.len().to_string()
        );
        assert_eq!(
            resp.headers["content-type"].to_str().unwrap(),
            format!("multipart/byteranges; boundary={b}")
        );
        // a part beyond the body held: not written
        assert!(multipart_body(&parts, &Bytes::from_static(b"0123")).is_none());
    }
}
