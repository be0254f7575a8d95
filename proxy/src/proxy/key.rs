//! Cache keys: scheme, host and path with a normalised query. The same function keys requests,
//! mutation invalidations and admin purges, so they always agree.

use pingora_cache::key::{hash_key, HashBinary};
use pingora_cache::CacheKey;
use pingora_http::RequestHeader;

/// The scheme clients use to reach this proxy (it terminates plain HTTP).
pub const SCHEME: &str = "http";

/// The URL identity of a cached resource, before `Vary` variants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlKey {
    /// Lower-case authority (`host[:port]`), default port removed.
    pub host: String,
    /// Path plus normalised query (`/a/b?x=1&y=2`).
    pub path: String,
}

impl UrlKey {
    /// Builds the key from a host and a path-and-query, normalising both.
    pub fn new(host: &str, path_and_query: &str) -> UrlKey {
        UrlKey {
            host: normalise_host(host),
            path: normalise_path_query(path_and_query),
        }
    }

    /// The key of a request: the target as sent on the wire (origin-form with the `Host`
    /// header, or absolute-form). `None` for a missing host, authority-form, `*`, or a target
    /// that is not valid UTF-8 (pingora forwards the raw bytes, so the key must use them).
    pub fn from_request(req: &RequestHeader) -> Option<UrlKey> {
        Self::from_request_or(req, None)
    }

    /// Like [`Self::from_request`], with a host for HTTP/1.0 requests that name none (the
    /// address the request arrived on); HTTP/1.1 requires `Host` (RFC 9112 §3.2).
    pub fn from_request_or(req: &RequestHeader, default_host: Option<&str>) -> Option<UrlKey> {
        let raw = std::str::from_utf8(req.raw_path()).ok()?;
        if raw.starts_with("http://") || raw.starts_with("https://") {
            return UrlKey::from_absolute(raw);
        }
        if !raw.starts_with('/') {
            return None;
        }
        let fallback = default_host.filter(|_| req.version < http::Version::HTTP_11);
        let host = match req.headers.get(http::header::HOST) {
            Some(h) => h.to_str().ok()?,
            None => fallback?,
        };
        if host.trim().is_empty() {
            return None;
        }
        Some(UrlKey::new(host, raw))
    }

    /// Parses an absolute `http://host/path` URL, or a path with an explicit host.
    pub fn from_absolute(url: &str) -> Option<UrlKey> {
        let parsed = url::Url::parse(url).ok()?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return None;
        }
        let mut host = parsed.host_str()?.to_string();
        if let Some(port) = parsed.port() {
            host = format!("{host}:{port}");
        }
        let mut pq = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            pq.push('?');
            pq.push_str(q);
        }
        Some(UrlKey::new(&host, &pq))
    }

    /// The primary key string: `http://host/path?query`.
    pub fn primary(&self) -> String {
        format!("{SCHEME}://{}{}", self.host, self.path)
    }

    /// The hash pingora uses for the primary slot.
    pub fn primary_hash(&self) -> HashBinary {
        hash_key(self.primary())
    }

    /// The pingora cache key.
    pub fn cache_key(&self) -> CacheKey {
        CacheKey::new(self.primary(), "")
    }
}

fn normalise_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    host.strip_suffix(":80").map(str::to_string).unwrap_or(host)
}

/// Drops a fragment, an empty query and empty query parameters, and sorts the parameters
/// (stable, so repeated names keep their order).
pub fn normalise_path_query(pq: &str) -> String {
    let pq = pq.split('#').next().unwrap_or("");
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p, q),
        None => (pq, ""),
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if params.is_empty() {
        return path.to_string();
    }
    params.sort_by(|a, b| {
        let ka = a.split('=').next().unwrap_or("");
        let kb = b.split('=').next().unwrap_or("");
        ka.cmp(kb)
    });
    format!("{path}?{}", params.join("&"))
}

/// Resolves a `Location`/`Content-Location` value against the request URL and returns its key
/// when it is same-origin (relative, or with an authority equal to the request's host).
pub fn same_origin_target(base: &UrlKey, location: &str) -> Option<UrlKey> {
    let base_url = url::Url::parse(&base.primary()).ok()?;
    let target = base_url.join(location.trim()).ok()?;
    let key = UrlKey::from_absolute(target.as_str())?;
    (key.host == base.host).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_sorted_and_cleaned() {
        assert_eq!(normalise_path_query("/a?b=2&a=1&&"), "/a?a=1&b=2");
        assert_eq!(normalise_path_query("/a?"), "/a");
        assert_eq!(normalise_path_query("/a#frag"), "/a");
        assert_eq!(normalise_path_query("/a?x=2&x=1"), "/a?x=2&x=1");
        assert_eq!(normalise_path_query(""), "/");
    }

    #[test]
    fn host_is_normalised() {
        let a = UrlKey::new("Example.COM:80", "/x?b&a");
        let b = UrlKey::new("example.com", "/x?a&b");
        assert_eq!(a, b);
        assert_eq!(a.primary(), "http://example.com/x?a&b");
        assert_eq!(a.primary_hash(), b.primary_hash());
        assert_ne!(UrlKey::new("example.com:8080", "/x").host, "example.com");
    }

    #[test]
    fn request_key_uses_host_header() {
        let mut req = RequestHeader::build("GET", b"/p?z=1&a=2", None).unwrap();
        req.insert_header("host", "h:81").unwrap();
        let k = UrlKey::from_request(&req).unwrap();
        assert_eq!(k.primary(), "http://h:81/p?a=2&z=1");
        let mut no_host = RequestHeader::build("GET", b"/p", None).unwrap();
        assert!(UrlKey::from_request(&no_host).is_none());
        assert!(UrlKey::from_request_or(&no_host, Some("10.0.0.1:80")).is_none());
        no_host.set_version(http::Version::HTTP_10);
        let k = UrlKey::from_request_or(&no_host, Some("10.0.0.1:8080")).unwrap();
        assert_eq!(k.primary(), "http://10.0.0.1:8080/p");
        for target in [&b"x"[..], b"*", b"h:1"] {
            let mut bad = RequestHeader::build("GET", target, None).unwrap();
            bad.insert_header("host", "h").unwrap();
            assert!(UrlKey::from_request(&bad).is_none(), "{target:?}");
        }
        let mut absolute = RequestHeader::build("GET", b"http://h:81/a", None).unwrap();
        absolute.insert_header("host", "ignored").unwrap();
        assert_eq!(UrlKey::from_request(&absolute).unwrap().host, "h:81");
    }

    #[test]
    fn location_same_origin() {
        let base = UrlKey::new("h:81", "/items");
        assert_eq!(
            same_origin_target(&base, "/items/1").unwrap().path,
            "/items/1"
        );
        assert_eq!(same_origin_target(&base, "2").unwrap().path, "/2");
        assert_eq!(
            same_origin_target(&base, "http://h:81/x?b&a").unwrap().path,
            "/x?a&b"
        );
        assert!(same_origin_target(&base, "http://other/x").is_none());
    }
}
