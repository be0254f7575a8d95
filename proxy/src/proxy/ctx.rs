//! Per-request state carried through pingora's hooks.

use super::headers::XCache;
use crate::cache::encoding::Encoder;
use crate::cache::first_fill::FirstFillGuard;
use crate::cache::post_reuse::PostFill;
use crate::cache::Scope;
use crate::cache::UrlKey;
use pingora_http::ResponseHeader;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Ctx {
    /// Request arrival (also the start of any fill this request makes).
    pub start: Instant,
    /// Cache key of the target, when the request has a host and an origin-form target.
    pub url: Option<UrlKey>,
    pub upstream_start: Option<Instant>,
    /// Time from sending the upstream request to its response header.
    pub upstream_time: Option<Duration>,
    /// Status the origin answered with.
    pub fwd_status: Option<u16>,
    /// The id of the stored entry a lookup found (a revalidation refreshes only that version).
    pub hit_entry: Option<u64>,
    /// The raw 304 of a revalidation, overlaid onto the stored header (RFC 9111 §4.3.4).
    pub raw_304: Option<ResponseHeader>,
    /// `response_cache_filter` admitted the response.
    pub cacheable: bool,
    /// Fields of the fetched response that its stored form lacks (see
    /// `policy::withheld_fields`), given back to this request's client.
    pub withheld: Vec<(http::HeaderName, http::HeaderValue)>,
    /// A request directive (`no-cache`, `max-age`, ...) forced the revalidation.
    pub forced_by_request: bool,
    /// The predictor skipped the lookup (pingora later reports the phase as disabled).
    pub bypassed: bool,
    /// Group invalidations of a mutation response, applied again at end of body.
    pub pending_groups: Vec<Scope>,
    /// What the invalidation bus requires of a cache hit for this request.
    pub bus_revalidation: super::BusRevalidation,
    /// Origins whose connection failed for this request (a retry picks another).
    pub failed_upstreams: Vec<std::net::SocketAddr>,
    /// Status reported to the client (set when the response header is written).
    pub x_cache: Option<XCache>,
    /// Compresses the body of a fill on its way into the store.
    pub encoder: Option<Encoder>,
    /// The target is a long route (`timeouts.long_routes`): long upstream read windows.
    pub long_route: bool,
    /// The origin of the last attempt.
    pub upstream_addr: Option<std::net::SocketAddr>,
    /// Counts this request as in flight (a graceful shutdown waits for it) until dropped.
    pub inflight: Option<crate::server::InflightGuard>,
    /// This request fetches a cold key that other requests wait for in the front; dropped when
    /// they may stop waiting (the response is uncacheable, or this request ended).
    pub first_fill: Option<FirstFillGuard>,
    /// A `POST` response collected to serve later `GET`s of its target (`cache::post_reuse`).
    pub post_fill: Option<PostFill>,
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx {
            start: Instant::now(),
            url: None,
            upstream_start: None,
            upstream_time: None,
            fwd_status: None,
            hit_entry: None,
            raw_304: None,
            cacheable: false,
            withheld: Vec::new(),
            forced_by_request: false,
            bypassed: false,
            pending_groups: Vec::new(),
            bus_revalidation: Default::default(),
            failed_upstreams: Vec::new(),
            x_cache: None,
            encoder: None,
            long_route: false,
            upstream_addr: None,
            inflight: None,
            first_fill: None,
            post_fill: None,
        }
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx::new()
    }
}
