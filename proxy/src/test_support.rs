//! Builders shared by the unit tests of the cache modules.

use http::HeaderMap;
use pingora_http::{RequestHeader, ResponseHeader};

/// `GET /x` with `pairs` appended in order (repeated names give repeated fields).
pub fn request(pairs: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
    for (k, v) in pairs {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

/// A response header with `pairs` appended in order.
pub fn response(status: u16, pairs: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(status, None).unwrap();
    for (k, v) in pairs {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

/// A bare header map with `pairs` appended in order.
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    request(pairs).headers.clone()
}
