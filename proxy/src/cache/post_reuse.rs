//! A response to a `POST` that later `GET`s of its target may reuse (RFC 9111 §4: a cache may
//! reuse a `POST` response for a `GET` when it has explicit freshness and a `Content-Location`
//! equal to the target URI; RFC 9110 §9.3.3).
//!
//! The `POST` is a mutation first: the proxy invalidates its target (and what its response
//! names) before the client sees the response, exactly as for any other mutation. Only then,
//! when the response qualifies, is it collected as it streams to the client and stored under
//! the target's `GET` key, so the next `GET` of the target is a hit with the representation the
//! `POST` returned.
//!
//! It qualifies only when every rule a `GET` fill follows admits it, and more:
//! - explicit freshness (`max-age`, `s-maxage`, `Expires`): never heuristic;
//! - `Content-Location` names the target itself (same origin, same path and query);
//! - a `Content-Length` within `cache.max_object_bytes`, not a stream, and room for it in the
//!   in-flight fill budget (`cache.max_inflight_fill_bytes`, charged like any fill's buffer);
//! - the response names no invalidation groups (a mutation that invalidates groups at the end
//!   of its body would drop what is stored here anyway, so nothing is);
//! - the policy decides on the request as a `GET` with the same fields, so credentials key the
//!   stored variant (per user unless the origin shared the response explicitly) exactly as a
//!   `GET` fill of that user would be keyed.
//!
//! The entry goes into the target's primary slot with the variance of the `POST`'s fields, as
//! pingora stores the first fill of a cold key (the mutation has just invalidated the URL).
//! It is committed through the same check as every fill: an invalidation of the URL or its
//! groups after the response arrived (another mutation, a purge, the fleet's bus) drops it.

use super::directives::Directives;
use super::entry::FillInfo;
use super::freshness::Freshness;
use super::invalidate::response_groups;
use super::key::{self, UrlKey};
use super::policy::{self, PolicyOptions};
use super::store::Store;
use super::vary;
use bytes::BytesMut;
use http::{header, Method};
use pingora_cache::CacheMeta;
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Instant, SystemTime};

/// A qualifying `POST` response being collected on its way to the client. Its buffer is
/// charged to the store's in-flight budget until it is dropped.
pub struct PostFill {
    store: &'static Store,
    meta: CacheMeta,
    url: UrlKey,
    length: usize,
    body: BytesMut,
    /// When the response arrived, after the mutation's own invalidation.
    started: Instant,
}

impl std::fmt::Debug for PostFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostFill")
            .field("url", &self.url)
            .field("length", &self.length)
            .field("received", &self.body.len())
            .finish()
    }
}

impl PostFill {
    /// The fill of `resp` (the origin's response to the `POST` `req` for `url`) when it
    /// qualifies. Call after the mutation's invalidation.
    pub fn plan(
        req: &RequestHeader,
        resp: &ResponseHeader,
        url: &UrlKey,
        opts: &PolicyOptions,
        store: &'static Store,
    ) -> Option<PostFill> {
        if req.method != Method::POST || !names_target(resp, url) {
            return None;
        }
        let length = resp
            .headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse::<usize>()
            .ok()?;
        if length > store.max_object_bytes() || !response_groups(&resp.headers).is_empty() {
            return None;
        }
        let targeted = Directives::targeted_governs(&resp.headers, &opts.targeted_fields);
        let dirs = Directives::governing(&resp.headers, &opts.targeted_fields);
        if !Freshness::explicit(&dirs, &resp.headers, targeted) {
            return None;
        }
        let get = as_get(req);
        let mut meta = policy::decide_with_rule(&get, resp, SystemTime::now(), opts).ok()?;
        if !meta.is_fresh(SystemTime::now()) {
            return None;
        }
        vary::key_fill(&mut meta, &get.headers, opts);
        if !store.reserve_inflight(length as u64) {
            return None;
        }
        Some(PostFill {
            store,
            meta,
            url: url.clone(),
            length,
            body: BytesMut::with_capacity(length),
            started: Instant::now(),
        })
    }

    /// Adds a piece of the body; `false` when the body outgrew its `Content-Length` (the fill
    /// is then abandoned).
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        if self.body.len() + chunk.len() > self.length {
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }

    /// Stores the whole response under the target's `GET` key; the weight stored, 0 when it was
    /// not (a short body, an invalidation since it arrived, too large for the store).
    pub fn commit(mut self) -> u64 {
        if self.body.len() != self.length {
            return 0;
        }
        let Ok(serialized) = self.meta.serialize() else {
            return 0;
        };
        let primary = self.url.primary_hash();
        let view = Some(self.store.view_of(&self.meta));
        let body = std::mem::take(&mut self.body).freeze();
        let info = FillInfo {
            started: self.started,
            url: self.url.clone(),
            groups: Vec::new(),
            revalidates: None,
        };
        self.store
            .commit_decoded(primary, primary, serialized, view, body, info)
    }
}

impl Drop for PostFill {
    fn drop(&mut self) {
        self.store.release_inflight(self.length as u64);
    }
}

/// Whether the response's `Content-Location` names `url` itself.
fn names_target(resp: &ResponseHeader, url: &UrlKey) -> bool {
    let mut values = resp.headers.get_all(header::CONTENT_LOCATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value
        .to_str()
        .ok()
        .and_then(|v| key::same_origin_target(url, v))
        .is_some_and(|target| target == *url)
}

/// The request as the `GET` of the same target with the same fields would be: what the policy
/// and the variance judge.
fn as_get(req: &RequestHeader) -> RequestHeader {
    let mut get = req.clone();
    get.set_method(Method::GET);
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
    ] {
        get.remove_header(&name);
    }
    get
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::StoreOptions;
    use crate::test_support::{request, response};

    fn store() -> &'static Store {
        Box::leak(Box::new(
            Store::new(StoreOptions::for_tests(1 << 20, 4)).unwrap(),
        ))
    }

    fn post(fields: &[(&str, &str)]) -> RequestHeader {
        let mut req = request(fields);
        req.set_method(Method::POST);
        req
    }

    fn url() -> UrlKey {
        UrlKey::new("example.test", "/items/7")
    }

    fn plan(req: &RequestHeader, fields: &[(&str, &str)]) -> Option<PostFill> {
        let mut all = vec![("content-length", "5")];
        all.extend_from_slice(fields);
        let resp = response(200, &all);
        PostFill::plan(
            req,
            &resp,
            &url(),
            &PolicyOptions::of(&crate::config::Config::default()),
            store(),
        )
    }

    #[test]
    fn explicit_freshness_and_the_target_as_content_location_qualify() {
        let req = post(&[]);
        let fresh = [("cache-control", "max-age=60")];
        for location in ["/items/7", "http://example.test/items/7", "7"] {
            let mut fields = fresh.to_vec();
            fields.push(("content-location", location));
            assert!(plan(&req, &fields).is_some(), "{location}");
        }
        let expires = [
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
            ("content-location", "/items/7"),
        ];
        assert!(plan(&req, &expires).is_some());
    }

    #[test]
    fn anything_less_does_not() {
        let req = post(&[]);
        let at = ("content-location", "/items/7");
        // no Content-Location, another resource, another origin
        assert!(plan(&req, &[("cache-control", "max-age=60")]).is_none());
        for other in ["/items/8", "http://elsewhere.test/items/7", "/items/7?x=1"] {
            let fields = [("cache-control", "max-age=60"), ("content-location", other)];
            assert!(plan(&req, &fields).is_none(), "{other}");
        }
        // heuristic only (Last-Modified), no freshness, forbidden
        let lm = ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(plan(&req, &[lm, at]).is_none());
        for cc in ["max-age=0", "no-store, max-age=60", "private, max-age=60"] {
            assert!(plan(&req, &[("cache-control", cc), at]).is_none(), "{cc}");
        }
        // invalidation groups, a GET request method
        let groups = [
            ("cache-control", "max-age=60"),
            ("cache-groups", "\"g\""),
            at,
        ];
        assert!(plan(&req, &groups).is_none());
        let get = request(&[]);
        assert!(plan(&get, &[("cache-control", "max-age=60"), at]).is_none());
        // Authorization without an explicit permission to share (RFC 9111 §3.5)
        let with_auth = post(&[("authorization", "Bearer a")]);
        assert!(plan(&with_auth, &[("cache-control", "max-age=60"), at]).is_none());
        // larger than the store takes
        let store = store();
        let too_long = (store.max_object_bytes() + 1).to_string();
        let big = response(
            200,
            &[
                ("content-length", too_long.as_str()),
                ("cache-control", "max-age=60"),
                at,
            ],
        );
        let opts = PolicyOptions::of(&crate::config::Config::default());
        assert!(PostFill::plan(&req, &big, &url(), &opts, store).is_none());
    }

    #[test]
    fn a_body_longer_than_its_length_is_refused() {
        let req = post(&[]);
        let mut fill = plan(
            &req,
            &[
                ("cache-control", "max-age=60"),
                ("content-location", "/items/7"),
            ],
        )
        .unwrap();
        assert!(fill.push(b"abc"));
        assert!(!fill.push(b"def"));
    }
}
