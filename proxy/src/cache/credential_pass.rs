//! Per-credential refusals: which (URL, credential) pairs last got a response the cache refused.
//!
//! pingora's predictor is keyed by URL alone, so it only learns refusals intrinsic to the URL
//! (`policy::decide_with_rule`): one user's `private, no-store` answer says nothing about the
//! next user's. An authenticated uncacheable GET (`/api/v1/auth/me`) therefore took pingora's
//! cache path as a miss on every request. This remembers the refusal for that credential only,
//! so the front's pass-through (`server::forward`) forwards that user's next requests for that
//! URL, and the pair is forgotten as soon as a response to it is storable again.
//!
//! Nothing here is ever served: a forgotten pair costs a trip through pingora, a wrong or
//! colliding one a missed chance to store, never a response for the wrong user.

use super::policy;
use pingora_cache::key::HashBinary;
use quick_cache::sync::Cache;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// Pairs remembered at most (beyond it quick_cache evicts, as it does for the store).
const CAPACITY: usize = 16 * 1024;

/// See the module documentation.
pub struct CredentialPasses {
    pairs: Cache<u64, ()>,
    /// Keyed per process, so a client cannot aim at another user's pair.
    hasher: RandomState,
}

impl Default for CredentialPasses {
    fn default() -> Self {
        CredentialPasses {
            pairs: Cache::new(CAPACITY),
            hasher: RandomState::new(),
        }
    }
}

impl CredentialPasses {
    /// The pair of `primary` (a URL's primary key) and the request's credentials, as the cache
    /// keys them (`Authorization`, and `Cookie` reduced by `policy::cookie_key`); `None` for a
    /// request without credentials.
    pub fn key(
        &self,
        primary: &HashBinary,
        req: &http::HeaderMap,
        auth_cookies: &[String],
    ) -> Option<u64> {
        if !policy::carries_credentials(req) {
            return None;
        }
        let mut h = self.hasher.build_hasher();
        primary.hash(&mut h);
        for value in req.get_all(http::header::AUTHORIZATION) {
            value.as_bytes().hash(&mut h);
        }
        policy::cookie_key(req, auth_cookies).hash(&mut h);
        Some(h.finish())
    }

    pub fn remember(&self, key: u64) {
        self.pairs.insert(key, ());
    }

    pub fn forget(&self, key: u64) {
        self.pairs.remove(&key);
    }

    pub fn contains(&self, key: u64) -> bool {
        self.pairs.get(&key).is_some()
    }

    /// Nothing is remembered (the common case: no hashing needed).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in fields {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn pairs_are_per_url_and_per_credential() {
        let passes = CredentialPasses::default();
        let auth = ["access_token_cookie".to_string()];
        let (x, y) = ([1u8; 16], [2u8; 16]);
        let alice = headers(&[("authorization", "Bearer a")]);
        let bob = headers(&[("authorization", "Bearer b")]);
        assert_eq!(passes.key(&x, &headers(&[]), &auth), None);
        let ax = passes.key(&x, &alice, &auth).unwrap();
        passes.remember(ax);
        assert!(passes.contains(ax));
        assert!(!passes.contains(passes.key(&x, &bob, &auth).unwrap()));
        assert!(!passes.contains(passes.key(&y, &alice, &auth).unwrap()));
        // a cookie credential: only the auth cookie keys it
        let c1 = headers(&[("cookie", "access_token_cookie=t1; theme=dark")]);
        let c2 = headers(&[("cookie", "theme=light; access_token_cookie=t1")]);
        assert_eq!(passes.key(&x, &c1, &auth), passes.key(&x, &c2, &auth));
        passes.forget(ax);
        assert!(!passes.contains(ax));
    }
}
