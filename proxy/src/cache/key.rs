//! Cache keys: scheme, host and path with a normalised query. The same function keys requests,
//! mutation invalidations and admin purges, so they always agree.

use blake2::{digest::consts::U16, Blake2b, Digest};
use pingora_cache::key::HashBinary;
use pingora_cache::CacheKey;
use pingora_http::RequestHeader;

type Blake2b128 = Blake2b<U16>;

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
    #[cfg(test)]
    pub fn from_request(req: &RequestHeader) -> Option<UrlKey> {
        Self::from_request_or(req, None)
    }

    /// Like [`Self::from_request`], with a host for HTTP/1.0 requests that name none (the
    /// address the request arrived on); HTTP/1.1 requires `Host` (RFC 9112 §3.2), HTTP/2 names
    /// it in `:authority`.
    pub fn from_request_or(req: &RequestHeader, default_host: Option<&str>) -> Option<UrlKey> {
        let raw = std::str::from_utf8(req.raw_path()).ok()?;
        if raw.starts_with("http://") || raw.starts_with("https://") {
            return UrlKey::from_absolute(raw);
        }
        if !raw.starts_with('/') {
            return None;
        }
        let fallback = default_host.filter(|_| req.version < http::Version::HTTP_11);
        let host = match (req.headers.get(http::header::HOST), req.uri.authority()) {
            (Some(h), _) => h.to_str().ok()?,
            // HTTP/2 names the host in `:authority` (RFC 9113 §8.3.1)
            (None, Some(a)) if req.version == http::Version::HTTP_2 => a.as_str(),
            (None, _) => fallback?,
        };
        if !valid_authority(host) {
            return None;
        }
        Some(UrlKey::new(host, raw))
    }

    /// Parses an absolute `http://host/path` URL (a request target in absolute form, an admin
    /// purge URL). The path and query are kept exactly as written, like an origin-form target:
    /// the origin receives them raw, so `..`, `%2e%2e` or `\` must not be normalised in the key
    /// alone. `None` for another scheme, a missing or invalid authority, or userinfo.
    pub fn from_absolute(url: &str) -> Option<UrlKey> {
        let lower = url
            .get(..8)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let rest = if lower.starts_with("http://") {
            &url[7..]
        } else if lower.starts_with("https://") {
            &url[8..]
        } else {
            return None;
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(split);
        if !valid_authority(authority) {
            return None;
        }
        let pq = if path_and_query.starts_with('?') {
            format!("/{path_and_query}")
        } else {
            path_and_query.to_string()
        };
        Some(UrlKey::new(authority, &pq))
    }

    /// The primary key string: `http://host/path?query`.
    pub fn primary(&self) -> String {
        // concatenated, not `format!`: every request builds it (the formatting machinery was a
        // twentieth of a front hit's instructions)
        let mut out = String::with_capacity(SCHEME.len() + 3 + self.host.len() + self.path.len());
        out.push_str(SCHEME);
        out.push_str("://");
        out.push_str(&self.host);
        out.push_str(&self.path);
        out
    }

    /// The hash pingora uses for the primary slot: `pingora_cache::key::hash_key` of
    /// [`Self::primary`]. Every request needs it and blake2 was a tenth of a front hit's
    /// instructions, so the digests of the keys this thread hashed last are kept
    /// ([`PrimaryMemo`]); a key is only ever matched by comparing it whole.
    pub fn primary_hash(&self) -> HashBinary {
        PRIMARY_MEMO.with(|memo| memo.borrow_mut().hash(self))
    }

    /// [`Self::primary_hash`] computed: blake2 fed the key in parts (the joined string would be
    /// built only to be hashed).
    fn primary_hash_uncached(&self) -> HashBinary {
        let mut hasher = Blake2b128::new();
        hasher.update(SCHEME.as_bytes());
        hasher.update(b"://");
        hasher.update(self.host.as_bytes());
        hasher.update(self.path.as_bytes());
        hasher.finalize().into()
    }

    /// The pingora cache key.
    pub fn cache_key(&self) -> CacheKey {
        CacheKey::new(self.primary(), "")
    }
}

thread_local! {
    static PRIMARY_MEMO: std::cell::RefCell<PrimaryMemo> =
        std::cell::RefCell::new(PrimaryMemo::default());
}

/// Slots of [`PrimaryMemo`] (a power of two).
const MEMO_SLOTS: usize = 256;
/// Keys longer than this (host and path) are hashed every time: the memo's memory stays
/// bounded (at most `MEMO_SLOTS` × this per worker thread) whatever clients send.
const MEMO_MAX_KEY_BYTES: usize = 256;

/// Blake2 digests of recently hashed primary keys, direct-mapped by a cheap hash of the key:
/// a slot holds one key whole, and another key that maps to it replaces it.
#[derive(Default)]
struct PrimaryMemo {
    slots: Vec<Option<(UrlKey, HashBinary)>>,
}

impl PrimaryMemo {
    fn hash(&mut self, key: &UrlKey) -> HashBinary {
        if key.host.len() + key.path.len() > MEMO_MAX_KEY_BYTES {
            return key.primary_hash_uncached();
        }
        if self.slots.is_empty() {
            self.slots.resize(MEMO_SLOTS, None);
        }
        let mut cheap = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(key, &mut cheap);
        let slot = &mut self.slots[std::hash::Hasher::finish(&cheap) as usize % MEMO_SLOTS];
        match slot {
            Some((seen, digest)) if seen == key => *digest,
            _ => {
                let digest = key.primary_hash_uncached();
                *slot = Some((key.clone(), digest));
                digest
            }
        }
    }
}

fn normalise_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    host.strip_suffix(":80").map(str::to_string).unwrap_or(host)
}

/// Longest `Host` (authority) accepted: a DNS name is at most 253 bytes, plus a port.
pub const MAX_AUTHORITY_BYTES: usize = 255;

/// Whether `host` is a valid `Host` value (RFC 9110 §7.2, RFC 3986 §3.2): a reg-name, IPv4 or
/// bracketed IPv6 address, an optional numeric port, no userinfo, at most
/// [`MAX_AUTHORITY_BYTES`] bytes.
pub fn valid_authority(host: &str) -> bool {
    if host.is_empty() || host.len() > MAX_AUTHORITY_BYTES {
        return false;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            a => match a.strip_prefix(':') {
                Some(p) => ("", p),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, p),
            None => (host, ""),
        }
    };
    let port_ok = port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let name_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%'));
    port_ok && name_ok && (host.starts_with('[') || !name.is_empty())
}

/// Drops a fragment, an empty query and empty query parameters, and sorts the parameters by
/// their decoded name. The sort is stable and compares names as the origin decodes them
/// (`%XX` and `+`), so parameters that are one name to the origin (`page` and `p%61ge`) keep
/// their relative order: requests the origin tells apart never share a key.
pub fn normalise_path_query(pq: &str) -> String {
    let pq = pq.split('#').next().unwrap_or("");
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p, q),
        None => (pq, ""),
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut params: Vec<(Vec<u8>, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| (decoded_name(p), p))
        .collect();
    if params.is_empty() {
        return path.to_string();
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let joined: Vec<&str> = params.into_iter().map(|(_, p)| p).collect();
    format!("{path}?{}", joined.join("&"))
}

/// The name of a `name=value` query parameter as a form decoder reads it.
fn decoded_name(param: &str) -> Vec<u8> {
    let name = param.split('=').next().unwrap_or("").replace('+', " ");
    percent_encoding::percent_decode_str(&name).collect()
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
    fn the_primary_hash_is_pingoras_hash_of_the_primary_key() {
        let long = format!("/{}", "x".repeat(MEMO_MAX_KEY_BYTES));
        let mut keys = vec![
            ("a".to_string(), "/".to_string()),
            ("Example.test:80".into(), "/x?b=2&a=1".into()),
            ("h:8080".into(), "/é".into()),
            ("a".into(), long),
        ];
        // more keys than the memo has slots, each hashed twice (computed, then remembered or
        // replaced): every answer is the digest of its own key
        keys.extend((0..MEMO_SLOTS * 2).map(|i| ("h".to_string(), format!("/{i}"))));
        for (host, path) in keys.iter().chain(keys.iter()) {
            let key = UrlKey::new(host, path);
            assert_eq!(
                key.primary_hash(),
                pingora_cache::key::hash_key(key.primary())
            );
            assert_eq!(
                key.primary_hash(),
                pingora_cache::key::CacheHashKey::primary_bin(&key.cache_key()),
                "{host}{path}"
            );
        }
    }

    #[test]
    fn names_the_origin_decodes_alike_keep_their_order() {
        let a = normalise_path_query("/l?page=1&p%61ge=2");
        let b = normalise_path_query("/l?p%61ge=2&page=1");
        assert_ne!(a, b);
        assert_eq!(a, "/l?page=1&p%61ge=2");
        assert_ne!(
            normalise_path_query("/l?a+b=1&a%20b=2"),
            normalise_path_query("/l?a%20b=2&a+b=1")
        );
        // different names still sort
        assert_eq!(normalise_path_query("/l?z=1&%61=2"), "/l?%61=2&z=1");
    }

    #[test]
    fn absolute_form_keeps_the_raw_path() {
        for (target, path) in [
            ("http://h/a/../b", "/a/../b"),
            ("http://h/a/%2e%2e/b", "/a/%2e%2e/b"),
            ("http://h/a\\b", "/a\\b"),
            ("http://h?x=1", "/?x=1"),
            ("HTTP://H:80", "/"),
        ] {
            let k = UrlKey::from_absolute(target).unwrap();
            assert_eq!(k.path, path, "{target}");
            let mut origin_form = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
            origin_form.insert_header("host", "h").unwrap();
            assert_eq!(UrlKey::from_request(&origin_form).unwrap(), k, "{target}");
        }
        assert!(UrlKey::from_absolute("http://user@h/x").is_none());
        assert!(UrlKey::from_absolute("ftp://h/x").is_none());
    }

    #[test]
    fn authority_validation() {
        for ok in [
            "h",
            "example.com:8080",
            "[::1]:80",
            "[::1]",
            "10.0.0.1",
            "a_b.c",
        ] {
            assert!(valid_authority(ok), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "h:x",
            "h:123456",
            "a\"b",
            "a;b",
            "a b",
            "[zz]",
            "[::1]x",
            ":80",
            long.as_str(),
            "u@h",
        ] {
            assert!(!valid_authority(bad), "{bad}");
        }
    }

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
