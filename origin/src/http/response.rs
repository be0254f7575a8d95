//! Response bodies and builders, and the caching headers of origin-api.md §7.

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use http::{HeaderMap, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Error type of response bodies (streams may fail mid-way).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response: a full buffer or a stream (SSE).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
pub type Response = http::Response<Body>;

/// RFC 9213 targeted cache-control for every CDN and shared cache that implements it. Only public
/// responses carry it.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// RFC 9213 targeted cache-control for our own proxy alone (agreed with the proxy, which obeys it and
/// removes it before forwarding). Per-user responses carry their shared-cache directive here and
/// never in `CDN-Cache-Control`: a CDN in front that honours `CDN-Cache-Control` but not
/// `Vary: Cookie` would otherwise serve one user's response to another.
pub const LLMSELECT_CACHE_CONTROL: HeaderName = HeaderName::from_static("llmselect-cache-control");
pub const CACHE_GROUPS: HeaderName = HeaderName::from_static("cache-groups");
pub const CACHE_GROUP_INVALIDATION: HeaderName =
    HeaderName::from_static("cache-group-invalidation");
/// The outbox id of a mutation's invalidation (only with a bus): the proxy turns it into a
/// read-your-writes position (other nodes revalidate this client's reads until they applied it).
pub const INVALIDATION_ID: HeaderName = HeaderName::from_static("llmselect-invalidation-id");

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes_response(status, "application/json", bytes.into())
}

pub fn bytes_response(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Response {
    let mut response = http::Response::new(full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A 2xx JSON answer to a mutation: `no-store`, plus `Cache-Group-Invalidation` naming `groups`
/// when there are any, and `LLMSelect-Invalidation-Id` when the write's invalidation went to the
/// outbox (`invalidation_id`). Build it only after the write committed.
pub fn mutation_response(
    status: StatusCode,
    value: &Value,
    groups: &[String],
    invalidation_id: Option<i64>,
) -> Response {
    let mut response = json_response(status, value);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    invalidation_headers(response.headers_mut(), groups, invalidation_id);
    response
}

/// `Cache-Group-Invalidation` (when `groups` is not empty) and `LLMSelect-Invalidation-Id`.
pub fn invalidation_headers(headers: &mut HeaderMap, groups: &[String], id: Option<i64>) {
    if !groups.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&sf_string_list(groups)) {
            headers.insert(CACHE_GROUP_INVALIDATION, v);
        }
    }
    if let Some(id) = id {
        headers.insert(INVALIDATION_ID, HeaderValue::from(id));
    }
}

/// A JSON response that must not be stored anywhere (`no-store`), optionally `private`.
pub fn uncacheable(status: StatusCode, value: &Value, private: bool) -> Response {
    let mut response = json_response(status, value);
    let cc = if private {
        "private, no-store"
    } else {
        "no-store"
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(cc));
    if private {
        response
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("Authorization, Cookie"));
    }
    response
}

/// An RFC 8941 list of strings: `"a", "b"`.
pub fn sf_string_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version of the origin's response representations, the first part of every ETag it
/// computes (`"v2-<hash>"`).
///
/// **Bump it whenever the JSON (or markdown) shape of any cacheable response changes** (a key
/// added, renamed or removed, a format changed): most ETags derive from row versions, not from the
/// body, so without a bump a client or cache holding a body of the old shape would keep getting
/// 304s for it after a deploy. v1 was the unversioned `"<hash>"` format.
pub const REPRESENTATION_VERSION: &str = "v2";

/// A strong ETag: [`REPRESENTATION_VERSION`], then the first 32 hex characters of SHA-256 over
/// `parts` (joined by NUL).
pub fn etag_of(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part);
    }
    let digest = hex::encode(hasher.finalize());
    format!("\"{REPRESENTATION_VERSION}-{}\"", &digest[..32])
}

/// The headers of a cacheable GET (§7.3) and its conditional handling.
#[derive(Debug, Clone)]
pub struct Cacheable {
    pub cache_control: String,
    /// The targeted field (RFC 9213) and its value: `CDN-Cache-Control` for public data,
    /// [`LLMSELECT_CACHE_CONTROL`] for per-user data.
    pub targeted: Option<(HeaderName, String)>,
    pub vary: Option<&'static str>,
    pub groups: Vec<String>,
    pub etag: String,
}

impl Cacheable {
    /// Per-user data: `private, no-cache` for browsers and generic shared caches; our proxy alone
    /// (through [`LLMSELECT_CACHE_CONTROL`]) may keep it `max_age` seconds, keyed per credential.
    pub fn per_user(max_age: u64, groups: Vec<String>, etag: String) -> Cacheable {
        Cacheable {
            cache_control: "private, no-cache".into(),
            targeted: Some((
                LLMSELECT_CACHE_CONTROL,
                format!("max-age={max_age}, must-revalidate"),
            )),
            vary: Some("Authorization, Cookie"),
            groups,
            etag,
        }
    }

    /// Public data.
    pub fn public(
        browser_max_age: u64,
        cdn_max_age: u64,
        groups: Vec<String>,
        etag: String,
    ) -> Cacheable {
        Cacheable {
            cache_control: format!("public, max-age={browser_max_age}"),
            targeted: Some((CDN_CACHE_CONTROL, format!("public, max-age={cdn_max_age}"))),
            vary: None,
            groups,
            etag,
        }
    }

    /// True when the request's `If-None-Match` matches this ETag (weak comparison, `*`).
    pub fn matches(&self, request_headers: &HeaderMap) -> bool {
        let ours = self.etag.trim_start_matches("W/");
        request_headers.get_all(IF_NONE_MATCH).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',').any(|tag| {
                    let tag = tag.trim();
                    tag == "*" || tag.trim_start_matches("W/") == ours
                })
            })
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut set = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        set(CACHE_CONTROL, &self.cache_control);
        if let Some((name, value)) = &self.targeted {
            set(name.clone(), value);
        }
        if let Some(vary) = self.vary {
            set(VARY, vary);
        }
        if !self.groups.is_empty() {
            set(CACHE_GROUPS, &sf_string_list(&self.groups));
        }
        set(ETAG, &self.etag);
    }

    /// The 304 for a matching `If-None-Match`: no body, same validators and caching headers.
    pub fn not_modified(&self) -> Response {
        let mut response = http::Response::new(empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        self.apply(response.headers_mut());
        response
    }

    /// `response` with these headers.
    pub fn wrap(&self, mut response: Response) -> Response {
        self.apply(response.headers_mut());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_comparison() {
        let c = Cacheable::public(1, 1, vec![], "\"abc\"".into());
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"abc\""));
        assert!(c.matches(&h));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!c.matches(&h));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(c.matches(&h));
    }

    #[test]
    fn structured_list() {
        assert_eq!(
            sf_string_list(&["all".into(), "user:1".into()]),
            "\"all\", \"user:1\""
        );
        let etag = etag_of(&[b"a"]);
        assert!(etag.starts_with("\"v2-"), "{etag}");
        assert_eq!(etag.len(), 2 + REPRESENTATION_VERSION.len() + 1 + 32);
    }
}
