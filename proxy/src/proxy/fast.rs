//! Finding the stored response that answers a request as a plain fresh hit, and recording a hit
//! that was served without pingora's hooks.
//!
//! Two callers share this: the raw HTTP/1 front (`server::front`), which writes the hit from
//! bytes prepared at store time without entering pingora's proxy state machine at all, and
//! `request_filter`, which answers the same kind of hit for the requests that do reach pingora
//! (HTTP/2, and connections that pingora owns after a request with a body). Both answer exactly
//! when [`FastHits::find`] says so; anything else goes to pingora's full cache path.

use super::headers::XCache;
use super::{written_position, BusRevalidation, PREDICTOR_SHARDS};
use crate::bus::Bus;
use crate::cache::credential_pass::CredentialPasses;
use crate::cache::entry::Entry;
use crate::cache::first_fill;
use crate::cache::hit;
use crate::cache::inflight::{InflightFill, InflightHit};
use crate::cache::key::UrlKey;
use crate::cache::policy;
use crate::cache::store::Store;
use crate::config::LimitsConfig;
use crate::error::EdgeError;
use crate::live::Live;
use crate::metrics;
use crate::stats::Stats;
use pingora_cache::key::HashBinary;
use pingora_cache::predictor::{CacheablePredictor, Predictor};
use pingora_cache::NoCacheReason;
use pingora_http::{RequestHeader, ResponseHeader};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Longest target written to the access log (the client sends up to `limits.max_uri_bytes`, and
/// the line of a refused one must stay bounded too).
const LOG_URI_MAX_BYTES: usize = 2048;

/// What the fresh-hit lookup needs, shared by both callers.
pub struct FastHits {
    pub store: &'static Store,
    pub predictor: &'static Predictor<PREDICTOR_SHARDS>,
    pub stats: &'static Stats,
    pub live: Arc<Live>,
    pub bus: Option<Arc<Bus>>,
    pub limits: LimitsConfig,
    pub honour_request_directives: bool,
    /// How long a request waits for another request's fill of its key (`cache.lock_wait_timeout_ms`).
    pub lock_wait: Duration,
    /// (URL, credential) pairs whose last response the cache refused (`cache::credential_pass`).
    pub credential_passes: CredentialPasses,
}

/// What answers a request that had no fresh hit when it arrived, without pingora: the key's fill
/// committed while the request waited for it, or is still arriving and is read as it arrives.
pub enum Joined {
    Entry(FreshHit),
    Fill {
        fill: Arc<InflightFill>,
        reader: InflightHit,
        now: SystemTime,
    },
}

/// A request's answer after it found no fresh hit ([`FastHits::join`]), and whether it waited
/// for the key's first fill to get it (reported as collapsed, with the wait as `lock` timing).
pub struct Collapsed {
    pub joined: Joined,
    pub waited: Option<Duration>,
}

/// A stored response that answers a request as a plain fresh hit.
pub struct FreshHit {
    pub entry: Arc<Entry>,
    /// The time freshness was judged at (also the reference of `Age`).
    pub now: SystemTime,
    /// How long the lookup took.
    pub lookup: Duration,
}

impl FastHits {
    /// The (URL, credential) pair of `req` (`primary`: its URL's primary key); `None` without
    /// credentials.
    pub fn credential_pair(&self, primary: &HashBinary, req: &RequestHeader) -> Option<u64> {
        self.credential_passes
            .key(primary, &req.headers, &self.live.policy().auth_cookies)
    }

    /// Whether the cache refused a response for any (URL, credential) pair it still remembers.
    pub fn any_credential_refused(&self) -> bool {
        !self.credential_passes.is_empty()
    }

    /// Whether `req` (`primary`: its URL's primary key) is of a (URL, credential) pair whose
    /// last response the cache refused (`cache::credential_pass`).
    pub fn credential_refused(&self, primary: &HashBinary, req: &RequestHeader) -> bool {
        !self.credential_passes.is_empty()
            && self
                .credential_pair(primary, req)
                .is_some_and(|pair| self.credential_passes.contains(pair))
    }

    /// What the cache decides of a fetched response to `req` (`primary`: its URL's primary key),
    /// in both forwarding paths (pingora's `response_cache_filter` and the front's
    /// pass-through), and what the decision teaches besides the predictor, which each path
    /// feeds itself: a refusal's rule is kept for `explain`; a refusal of the request's own, with
    /// credentials and without request directives, is remembered for its (URL, credential) pair;
    /// a storable response forgets that pair. `check_size`: a declared length above
    /// `cache.max_object_bytes` refuses it (not for a revalidated response, whose body is
    /// stored already).
    pub fn judge(
        &self,
        req: &RequestHeader,
        resp: &ResponseHeader,
        primary: &HashBinary,
        check_size: bool,
    ) -> Result<policy::Decided, NoCacheReason> {
        let policy = self.live.policy();
        // the header is copied only for a response that is stored
        let stored = self.assess(req, resp, primary, check_size, &policy)?;
        Ok(stored.apply(resp.clone(), &policy))
    }

    /// The decision of [`Self::judge`] before the header is touched (`policy::assess`), and what
    /// it teaches. The front's fill applies it to the header it gives up (`policy::Stored`), so
    /// the stored header is that one, not a copy.
    pub fn assess(
        &self,
        req: &RequestHeader,
        resp: &ResponseHeader,
        primary: &HashBinary,
        check_size: bool,
        policy: &policy::PolicyOptions,
    ) -> Result<policy::Stored, NoCacheReason> {
        let too_large = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|n| n > self.store.max_object_bytes());
        if check_size && too_large {
            self.store.record_refusal(
                *primary,
                "the response is larger than cache.max_object_bytes",
            );
            return Err(NoCacheReason::ResponseTooLarge);
        }
        match policy::assess(req, resp, SystemTime::now(), policy) {
            Ok(stored) => {
                if !self.credential_passes.is_empty() {
                    if let Some(pair) = self.credential_pair(primary, req) {
                        self.credential_passes.forget(pair);
                    }
                }
                Ok(stored)
            }
            Err(refusal) => {
                self.store.record_refusal(*primary, refusal.rule);
                let own = refusal.reason == NoCacheReason::Custom(policy::reason::REQUEST_SPECIFIC)
                    && (200..400).contains(&resp.status.as_u16())
                    && !hit::has_directives(&req.headers);
                if let Some(pair) = own.then(|| self.credential_pair(primary, req)).flatten() {
                    self.credential_passes.remember(pair);
                }
                Err(refusal.reason)
            }
        }
    }

    /// The error a request gets for breaking a size limit, if it does.
    pub fn limit_error(&self, req: &RequestHeader) -> Option<EdgeError> {
        if req.raw_path().len() > self.limits.max_uri_bytes {
            Some(EdgeError::UriTooLong)
        } else if header_block_bytes(req) > self.limits.max_request_header_bytes {
            Some(EdgeError::HeaderTooLarge)
        } else {
            None
        }
    }

    /// What the invalidation bus requires of this request's cache hit.
    pub fn bus_revalidation(&self, req: &RequestHeader) -> BusRevalidation {
        let Some(bus) = &self.bus else {
            return BusRevalidation::None;
        };
        if written_position(req).is_some_and(|id| !bus.state.has_applied(id)) {
            BusRevalidation::All
        } else if bus.state.degraded() {
            BusRevalidation::Grouped
        } else {
            BusRevalidation::None
        }
    }

    /// The fresh stored response that answers `req` (within the limits, keyed `url`) exactly as
    /// pingora's hit path would, or `None` when pingora's full path must decide.
    pub fn find(
        &self,
        req: &RequestHeader,
        url: &UrlKey,
        bus: BusRevalidation,
    ) -> Option<FreshHit> {
        let start = Instant::now();
        let primary = self.candidate(req, url.primary_hash(), bus, false)?;
        self.lookup(req, &primary, bus, start)
    }

    /// `primary` (a request's primary key) when the fast path may answer the request at all:
    /// eligible (`conditionals`: the caller evaluates the conditional fields), not sent to
    /// revalidation by the bus, and not predicted uncacheable.
    pub fn candidate(
        &self,
        req: &RequestHeader,
        primary: HashBinary,
        bus: BusRevalidation,
        conditionals: bool,
    ) -> Option<HashBinary> {
        if bus == BusRevalidation::All || !hit::eligible(req, conditionals) {
            return None;
        }
        self.predictor
            .cacheable_prediction(&hit::primary_only_key(&primary))
            .then_some(primary)
    }

    /// The fresh stored variant of `primary` that answers `req` (`start`: when the lookup began).
    pub fn lookup(
        &self,
        req: &RequestHeader,
        primary: &HashBinary,
        bus: BusRevalidation,
        start: Instant,
    ) -> Option<FreshHit> {
        let now = SystemTime::now();
        let entry = hit::fresh_entry(
            self.store,
            primary,
            &req.headers,
            &self.live.policy().auth_cookies,
            now,
        )?;
        if bus == BusRevalidation::Grouped && !entry.groups.is_empty() {
            return None;
        }
        // `fresh_entry` only returns entries with a decoded view
        let view = entry.view.as_ref()?;
        // request directives that ask for more than a fresh entry (`no-cache`, `max-age`,
        // `min-fresh`, `Pragma: no-cache`) send it to pingora's path, as `cache_hit_filter` would
        if self.honour_request_directives && hit::has_directives(&req.headers) {
            let age = now.duration_since(view.epoch).unwrap_or_default();
            let fresh_for = policy::seconds_until(view.fresh_until, now);
            if policy::request_freshness(&req.headers, age, fresh_for, false).is_some() {
                return None;
            }
        }
        Some(FreshHit {
            entry,
            now,
            lookup: start.elapsed(),
        })
    }

    /// For an unconditional request (`primary`: its [`Self::candidate`] key) that
    /// [`Self::lookup`] did not answer: waits (at most `lock_wait`) for the first fill of its key
    /// when one is under way (`cache::first_fill`), then answers from what the store holds: the
    /// committed entry, or the fill in progress when it is readable exactly as pingora's lookup
    /// would read it (the primary slot, the request's variant, fresh, and its length known).
    /// `None`: pingora decides, as if the front did not exist.
    pub async fn join(
        &self,
        req: &RequestHeader,
        primary: HashBinary,
        bus: BusRevalidation,
    ) -> Option<Collapsed> {
        if hit::is_conditional(&req.headers)
            || (self.honour_request_directives && hit::has_directives(&req.headers))
        {
            return None;
        }
        let mut waited = None;
        if let Some(moved) = self.store.first_fills().watch(&primary) {
            let start = Instant::now();
            if !first_fill::wait_moved(moved, self.lock_wait).await {
                return None;
            }
            waited = Some(start.elapsed());
            if let Some(hit) = self.lookup(req, &primary, bus, Instant::now()) {
                return Some(Collapsed {
                    joined: Joined::Entry(hit),
                    waited,
                });
            }
        }
        let fill = self.store.joinable_fill(&primary)?;
        let view = fill.view.as_ref()?;
        let auth_cookies = &self.live.policy().auth_cookies;
        if hit::other_variant(view, &req.headers, auth_cookies).is_some() {
            return None;
        }
        if bus == BusRevalidation::Grouped && !fill.info.groups.is_empty() {
            return None;
        }
        let now = SystemTime::now();
        if view.fresh_until < now || view.wire.is_none() || view.content_length.is_none() {
            return None;
        }
        let reader = fill.reader()?;
        Some(Collapsed {
            joined: Joined::Fill { fill, reader, now },
            waited,
        })
    }

    /// Counts a hit served without pingora's hooks (which count everything else in `logging`),
    /// before its response is written: whoever reads `/stats` after receiving it sees it counted.
    pub fn count_served_hit(&self) {
        self.stats.record_fast_hit();
        self.stats.record(XCache::Hit);
    }

    /// Records the latency of a hit counted by [`Self::count_served_hit`] once it was written,
    /// and writes its access-log line.
    pub fn log_served_hit(&self, req: &RequestHeader, status: u16, elapsed: Duration) {
        metrics::record_request(XCache::Hit, false, elapsed.as_secs_f64());
        log_access(req, status, XCache::Hit, false, None, elapsed, None);
    }
}

/// The access-log line of one request (target `access`, level `info`).
pub fn log_access(
    req: &RequestHeader,
    status: u16,
    x: XCache,
    background: bool,
    upstream_status: Option<u16>,
    elapsed: Duration,
    error: Option<String>,
) {
    tracing::info!(
        target: "access",
        method = %req.method,
        uri = %Bounded(&String::from_utf8_lossy(req.raw_path()), LOG_URI_MAX_BYTES),
        status,
        cache = x.as_str(),
        background,
        upstream_status,
        duration_us = elapsed.as_micros() as u64,
        error,
        "request"
    );
}

/// Size of the request header block as received: request line and fields.
pub fn header_block_bytes(req: &RequestHeader) -> usize {
    let fields: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    req.method.as_str().len() + req.raw_path().len() + 12 + fields
}

/// A string cut to at most `max` bytes at a character boundary, with an ellipsis when cut.
pub struct Bounded<'a>(pub &'a str, pub usize);

impl std::fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Bounded(s, max) = *self;
        if s.len() <= max {
            return f.write_str(s);
        }
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}…", &s[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_targets_are_bounded_at_a_character_boundary() {
        assert_eq!(Bounded("/short", 10).to_string(), "/short");
        assert_eq!(Bounded("/abcdef", 4).to_string(), "/abc…");
        // 'é' is two bytes: a cut inside it falls back to the boundary before
        assert_eq!(Bounded("/aé", 3).to_string(), "/a…");
    }
}
