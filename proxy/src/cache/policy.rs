//! RFC 9111 decisions on top of http-cache-semantics and pingora's `Cache-Control` parser:
//! what to store and for how long (`decide`), and what the request's own directives demand of a
//! stored response (`request_freshness`).

use http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use http_cache_semantics::{CacheOptions, CachePolicy};
use pingora_cache::cache_control::{CacheControl, InterpretCacheControl};
use pingora_cache::filters::calculate_serve_stale_durations;
use pingora_cache::{CacheMeta, CacheMetaDefaults, ForcedFreshness, NoCacheReason};
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// `CDN-Cache-Control` (RFC 9213): the targeted field shared by every CDN, kept on responses.
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// The proxy's read-your-writes cookie (set on mutation responses in a fleet). It is this
/// proxy's own bookkeeping, never part of a variant's key.
pub const RYW_COOKIE: &str = "llmselect_edge_pos";

/// Settings the policy needs from the configuration.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub default_swr_secs: u32,
    pub default_sie_secs: u32,
    pub auth_cookies: Vec<String>,
    /// Targeted cache-control fields obeyed instead of `Cache-Control`, highest priority first.
    pub targeted_fields: Vec<HeaderName>,
}

impl PolicyOptions {
    /// The policy settings of a configuration.
    pub fn of(config: &crate::config::Config) -> PolicyOptions {
        PolicyOptions {
            default_swr_secs: config.cache.default_stale_while_revalidate_secs,
            default_sie_secs: config.cache.default_stale_if_error_secs,
            auth_cookies: config.cache.auth_cookies.clone(),
            targeted_fields: config.targeted_fields(),
        }
    }

    /// The targeted fields that belong to this proxy alone (every listed one but
    /// `CDN-Cache-Control`): removed from responses before they leave the proxy.
    pub fn own_fields(&self) -> Vec<HeaderName> {
        own_fields(&self.targeted_fields)
    }
}

/// The fields of `targeted` that are this proxy's own (all but `CDN-Cache-Control`).
pub fn own_fields(targeted: &[HeaderName]) -> Vec<HeaderName> {
    targeted
        .iter()
        .filter(|n| n.as_str() != CDN_CACHE_CONTROL)
        .cloned()
        .collect()
}

/// Reason labels for uncacheable responses.
///
/// The uncacheable predictor remembers a URL as "do not even look it up" for everybody, so it
/// may only learn from what is intrinsic to the URL: a success or redirect answered to a request
/// without credentials or request directives. Every other refusal is reported as
/// [`reason::REQUEST_SPECIFIC`], which the predictor skips (see `proxy::predictor_skips`): one
/// user's 401, 404 or 429, or one client's `Cache-Control: no-store`, must not turn caching off
/// for the URL.
pub mod reason {
    /// The refusal depends on this request (its credentials, its directives, its status).
    pub const REQUEST_SPECIFIC: &str = "request-specific";
    pub const VARY_STAR: &str = "vary-star";
    pub const NOT_STORABLE: &str = "not-storable";
    pub const NO_FRESHNESS: &str = "no-freshness";
    pub const SET_COOKIE: &str = "set-cookie";
    pub const STREAM: &str = "event-stream";
}

/// Decides whether `resp` (answering `req`) is stored, and builds its `CacheMeta`.
/// `now` is the time the response header arrived.
#[cfg(test)]
pub fn decide(
    req: &RequestHeader,
    resp: &ResponseHeader,
    now: SystemTime,
    opts: &PolicyOptions,
) -> Result<CacheMeta, NoCacheReason> {
    decide_with_rule(req, resp, now, opts).map_err(|r| r.reason)
}

/// Why a response was not stored: the label the predictor sees and the exact rule, in words
/// (for the admin `/explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: NoCacheReason,
    pub rule: &'static str,
}

/// [`decide`], naming the rule that refused a response.
pub fn decide_with_rule(
    req: &RequestHeader,
    resp: &ResponseHeader,
    now: SystemTime,
    opts: &PolicyOptions,
) -> Result<CacheMeta, Refusal> {
    // Only what is intrinsic to the URL may teach the (variance-blind) predictor.
    let intrinsic = (200..400).contains(&resp.status.as_u16())
        && !carries_credentials(&req.headers)
        && !req.headers.contains_key(header::CACHE_CONTROL)
        && !req.headers.contains_key(header::PRAGMA);
    let custom = |r: &'static str, rule: &'static str| Refusal {
        reason: NoCacheReason::Custom(if intrinsic {
            r
        } else {
            reason::REQUEST_SPECIFIC
        }),
        rule,
    };
    if vary_names(&resp.headers).any(|n| n == "*") {
        return Err(custom(
            reason::VARY_STAR,
            "the response says Vary: * (RFC 9111 §4.1: it never matches a later request)",
        ));
    }
    if is_event_stream(&resp.headers) {
        return Err(custom(
            reason::STREAM,
            "the response is a text/event-stream (streams are passed through, never stored)",
        ));
    }
    let resp_view = response_view(resp, &opts.targeted_fields);
    let req_view = request_view(req, &opts.auth_cookies);
    let policy = CachePolicy::new_options(
        &req_view,
        &resp_view,
        now,
        CacheOptions {
            shared: true,
            ..CacheOptions::default()
        },
    );
    if !policy.is_storable() {
        return Err(custom(
            reason::NOT_STORABLE,
            not_storable_rule(&req_view, &resp_view),
        ));
    }
    let cc = CacheControl::from_headers_named("cache-control", &resp_view.headers);
    let public = cc.as_ref().is_some_and(|c| c.public());
    if resp.headers.contains_key(header::SET_COOKIE) && !public {
        return Err(custom(
            reason::SET_COOKIE,
            "the response sets a cookie and is not marked public",
        ));
    }
    let (ttl, age) = freshness(&policy, &resp.headers, now);
    let defaults = CacheMetaDefaults::new(|_| None, opts.default_swr_secs, opts.default_sie_secs);
    let (mut swr, mut sie) = calculate_serve_stale_durations(cc.as_ref(), &defaults);
    if cc.as_ref().is_some_and(|c| c.no_cache()) {
        // every use needs a successful validation first
        (swr, sie) = (0, 0);
    }
    let has_validator =
        resp.headers.contains_key(header::ETAG) || resp.headers.contains_key(header::LAST_MODIFIED);
    // Something already stale without a validator is only worth storing when the origin asked
    // for stale serving itself; the configured default windows alone would hand a response
    // meant to be refetched (`max-age=0`, `Expires: 0`) to the next clients.
    let explicit = cc.as_ref().is_some_and(|c| {
        c.serve_stale_while_revalidate_duration()
            .is_some_and(|d| !d.is_zero())
            || c.serve_stale_if_error_duration()
                .is_some_and(|d| !d.is_zero())
    });
    if ttl.is_zero() && !has_validator && !explicit {
        return Err(custom(
            reason::NO_FRESHNESS,
            "the response has no freshness lifetime (no max-age, s-maxage, Expires or \
             Last-Modified), no validator and no stale-while-revalidate / stale-if-error",
        ));
    }
    let fresh_until = if ttl.is_zero() {
        now - Duration::from_secs(1)
    } else {
        now + ttl
    };
    let mut header = resp.clone();
    header.remove_header(&header::AGE);
    let mut meta = CacheMeta::new(fresh_until, now, swr, sie, header);
    meta.set_epoch_override(now - age);
    Ok(meta)
}

/// Names the RFC 9111 §3 rule that made http-cache-semantics refuse to store a response (the
/// views are the ones the policy judged: see [`request_view`] and [`response_view`]).
fn not_storable_rule(req: &http::request::Parts, resp: &http::response::Parts) -> &'static str {
    let req_cc = CacheControl::from_headers_named("cache-control", &req.headers);
    let cc = CacheControl::from_headers_named("cache-control", &resp.headers);
    let has = |c: &Option<CacheControl>, d: &str| c.as_ref().is_some_and(|c| c.has_key(d));
    if req.method != Method::GET {
        return "only GET and HEAD responses are stored";
    }
    if has(&req_cc, "no-store") {
        return "the request says Cache-Control: no-store";
    }
    if has(&cc, "no-store") {
        return "the response says Cache-Control: no-store";
    }
    if has(&cc, "private") {
        return "the response says Cache-Control: private (a shared cache must not store it)";
    }
    let explicit = has(&cc, "public") || has(&cc, "s-maxage") || has(&cc, "must-revalidate");
    if req.headers.contains_key(header::AUTHORIZATION) && !explicit {
        return "the request carries Authorization and the response says neither public, \
                s-maxage nor must-revalidate (RFC 9111 §3.5)";
    }
    if resp.status == http::StatusCode::PARTIAL_CONTENT {
        return "206 Partial Content responses are not stored";
    }
    "the status is not cacheable by default and the response gives no explicit freshness \
     (RFC 9111 §3: max-age, s-maxage, Expires or public)"
}

/// Where a stored response's freshness lifetime comes from: the field that governs it
/// (a targeted field, RFC 9213, or `Cache-Control`) and its directive, `Expires`, or the
/// `Last-Modified` heuristic.
pub fn freshness_source(resp: &HeaderMap, targeted: &[HeaderName]) -> String {
    let (field, mut view) = match targeted_field(resp, targeted) {
        Some((name, value)) => {
            let mut view = HeaderMap::new();
            view.insert(header::CACHE_CONTROL, value);
            (name.as_str().to_string(), view)
        }
        None => ("cache-control".to_string(), resp.clone()),
    };
    view.remove(header::PRAGMA);
    let cc = CacheControl::from_headers_named("cache-control", &view);
    if cc
        .as_ref()
        .and_then(|c| c.s_maxage().ok().flatten())
        .is_some()
    {
        return format!("{field}: s-maxage");
    }
    if cc
        .as_ref()
        .and_then(|c| c.max_age().ok().flatten())
        .is_some()
    {
        return format!("{field}: max-age");
    }
    if field == "cache-control" && resp.contains_key(header::EXPIRES) {
        return "expires".into();
    }
    if resp.contains_key(header::LAST_MODIFIED) {
        return "heuristic (last-modified)".into();
    }
    "none (stored for revalidation or stale serving only)".into()
}

/// Remaining freshness and current age (RFC 9111 §4.2.3). http-cache-semantics counts the
/// upstream `Age` and resident time; the apparent age from `Date` is added here.
fn freshness(policy: &CachePolicy, headers: &HeaderMap, now: SystemTime) -> (Duration, Duration) {
    let ttl = policy.time_to_live(now);
    let age = policy.age(now);
    let lifetime = ttl + age;
    let apparent = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|date| now.duration_since(date).ok())
        .unwrap_or_default();
    let age = age.max(apparent);
    (lifetime.saturating_sub(age), age)
}

/// Hop-by-hop fields (RFC 9110 §7.6.1 and the common non-standard ones): never stored from, or
/// replayed out of, a 304.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// The cached header updated by a 304 (RFC 9111 §4.3.4): every field of the 304 replaces the
/// stored one, except
/// - the framing fields that describe the stored body (`Content-Length`, `Content-Encoding`,
///   `Content-Range`, `Content-Type`),
/// - hop-by-hop fields and the fields the 304's `Connection` names,
/// - `Vary` (it would re-key a variant stored under the old one) and `Set-Cookie` (one client's
///   state, which must never be replayed to the others).
pub fn overlay_304(stored: &ResponseHeader, not_modified: &ResponseHeader) -> ResponseHeader {
    let mut out = stored.clone();
    let connection_named: Vec<String> = not_modified
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let skip = |name: &HeaderName| {
        let n = name.as_str();
        matches!(
            n,
            "content-length" | "content-encoding" | "content-range" | "content-type" | "vary"
        ) || n == "set-cookie"
            || HOP_BY_HOP.contains(&n)
            || connection_named.iter().any(|c| c == n)
    };
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in not_modified.headers.iter() {
        if skip(name) {
            continue;
        }
        if !replaced.contains(&name) {
            out.remove_header(name);
            replaced.push(name);
        }
        let _ = out.append_header(name.clone(), value.clone());
    }
    out
}

/// Whole seconds from `now` until `t`; negative (rounded away from zero) once `t` has passed.
/// The remaining freshness reported in `Cache-Status` and checked against `min-fresh`/`max-stale`.
pub fn seconds_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - 1,
    }
}

/// What the request's `Cache-Control` / `Pragma` demand of a stored response (RFC 9111 §5.2.1).
/// `age` is the stored response's current age, `fresh_for` how long it stays fresh (negative when
/// stale) and `must_revalidate` whether the response forbids serving it stale.
pub fn request_freshness(
    req: &HeaderMap,
    age: Duration,
    fresh_for: i64,
    must_revalidate: bool,
) -> Option<ForcedFreshness> {
    let dirs = request_directives(req);
    let has = |n: &str| dirs.iter().any(|(k, _)| k == n);
    let value = |n: &str| -> Option<u64> {
        dirs.iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| v.parse().ok())
    };
    let pragma_no_cache = !req.contains_key(header::CACHE_CONTROL)
        && req
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("no-cache")));
    if has("no-cache") || pragma_no_cache {
        return Some(ForcedFreshness::ForceExpired);
    }
    if let Some(max_age) = value("max-age") {
        if age > Duration::from_secs(max_age) {
            return Some(ForcedFreshness::ForceExpired);
        }
    }
    if let Some(min_fresh) = value("min-fresh") {
        if fresh_for < min_fresh as i64 {
            return Some(ForcedFreshness::ForceExpired);
        }
    }
    if fresh_for < 0 && has("max-stale") && !must_revalidate {
        let stale_for = (-fresh_for) as u64;
        if value("max-stale").is_none_or(|limit| stale_for <= limit) {
            return Some(ForcedFreshness::ForceFresh);
        }
    }
    None
}

/// Whether the request says `only-if-cached`.
pub fn only_if_cached(req: &HeaderMap) -> bool {
    request_directives(req)
        .iter()
        .any(|(k, _)| k == "only-if-cached")
}

/// Whether a stored response forbids being served stale (`must-revalidate`, `proxy-revalidate`,
/// `s-maxage`, `no-cache`, in the field this proxy obeys): no request `max-stale` overrides it.
pub fn forbids_stale(resp: &HeaderMap, targeted: &[HeaderName]) -> bool {
    let governing = targeted_cache_control(resp, targeted);
    let values: Vec<&str> = match &governing {
        Some(v) => v.to_str().ok().into_iter().collect(),
        None => resp
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect(),
    };
    values.iter().any(|s| {
        let s = s.to_ascii_lowercase();
        s.contains("must-revalidate")
            || s.contains("proxy-revalidate")
            || s.contains("s-maxage")
            || s.contains("no-cache")
    })
}

/// Whether the origin explicitly allows sharing the response across users: `public` or
/// `s-maxage` in the field this proxy obeys. Anything else is keyed by the request's credentials
/// (see `cache::vary`), whatever its `Vary` says.
pub fn explicitly_shared(resp: &HeaderMap, targeted: &[HeaderName]) -> bool {
    let mut view = HeaderMap::new();
    match targeted_cache_control(resp, targeted) {
        Some(v) => {
            view.insert(header::CACHE_CONTROL, v);
        }
        None => {
            for v in resp.get_all(header::CACHE_CONTROL) {
                view.append(header::CACHE_CONTROL, v.clone());
            }
        }
    }
    CacheControl::from_headers_named("cache-control", &view)
        .is_some_and(|cc| cc.public() || cc.s_maxage().ok().flatten().is_some())
}

/// Lower-cased `Cache-Control` request directives with their optional values.
fn request_directives(req: &HeaderMap) -> Vec<(String, Option<String>)> {
    req.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            Some(match d.split_once('=') {
                Some((k, v)) => (
                    k.trim().to_ascii_lowercase(),
                    Some(v.trim().trim_matches('"').to_string()),
                ),
                None => (d.to_ascii_lowercase(), None),
            })
        })
        .collect()
}

/// The response as the policy sees it: with a valid targeted field (the first of `targeted`
/// present and valid), that field replaces `Cache-Control` and `Expires` is ignored (RFC 9213
/// §2.1).
pub fn response_view(resp: &ResponseHeader, targeted: &[HeaderName]) -> http::response::Parts {
    let mut parts = resp.as_owned_parts();
    if let Some(cc) = targeted_cache_control(&resp.headers, targeted) {
        parts.headers.remove(header::CACHE_CONTROL);
        parts.headers.remove(header::EXPIRES);
        parts.headers.remove(header::PRAGMA);
        parts.headers.insert(header::CACHE_CONTROL, cc);
    }
    parts
}

/// The value of the highest-priority targeted field that is present and a valid structured-field
/// dictionary; an invalid one is ignored and the next one is tried (RFC 9213 §2.1).
pub fn targeted_cache_control(headers: &HeaderMap, targeted: &[HeaderName]) -> Option<HeaderValue> {
    targeted_field(headers, targeted).map(|(_, v)| v)
}

/// [`targeted_cache_control`] with the name of the field that governs.
fn targeted_field<'a>(
    headers: &HeaderMap,
    targeted: &'a [HeaderName],
) -> Option<(&'a HeaderName, HeaderValue)> {
    targeted
        .iter()
        .find_map(|name| valid_dictionary(headers, name).map(|v| (name, v)))
}

fn valid_dictionary(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<_, _>>()
        .ok()?;
    if values.is_empty() {
        return None;
    }
    let joined = values.join(", ");
    sfv::Parser::new(joined.as_str())
        .parse_dictionary::<sfv::Dictionary>()
        .ok()?;
    HeaderValue::from_str(&joined).ok()
}

/// The request as the policy sees it: the GET form (pingora fetches HEAD misses with GET), with
/// `Cookie` in its keyed form (see [`cookie_key`]).
pub fn request_view(req: &RequestHeader, auth_cookies: &[String]) -> http::request::Parts {
    let mut parts = req.as_owned_parts();
    if parts.method == Method::HEAD {
        parts.method = Method::GET;
    }
    let cookie = cookie_key(&req.headers, auth_cookies);
    parts.headers.remove(header::COOKIE);
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_bytes(&c).ok()) {
        parts.headers.insert(header::COOKIE, c);
    }
    parts
}

/// The part of the request's `Cookie` headers that keys a variant. Fails closed:
/// - when at least one of `auth_cookies` is present, the pairs of those cookies only (so unrelated
///   cookies neither split nor defeat a user's entries);
/// - otherwise (or when `auth_cookies` is empty) every pair.
///
/// Pairs are trimmed and stably sorted by name: pairs of one name keep their order, because an
/// application reads the first (or the last) of duplicate names and `a=1; a=2` is not `a=2; a=1`.
/// `None` when the request has no cookie pair at all.
pub fn cookie_key(headers: &HeaderMap, auth_cookies: &[String]) -> Option<Vec<u8>> {
    // Bytes, not `str`: a value with obs-text must key exactly, never collapse into another.
    let pairs: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty() && name(p) != RYW_COOKIE.as_bytes())
        .collect();
    fn name(pair: &[u8]) -> &[u8] {
        pair.split(|b| *b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii()
    }
    let is_auth = |pair: &&[u8]| auth_cookies.iter().any(|c| c.as_bytes() == name(pair));
    let mut keyed: Vec<&[u8]> = if pairs.iter().any(is_auth) {
        pairs.into_iter().filter(is_auth).collect()
    } else {
        pairs
    };
    if keyed.is_empty() {
        return None;
    }
    keyed.sort_by(|a, b| name(a).cmp(name(b)));
    Some(keyed.join(&b"; "[..]))
}

/// Whether the request carries anything that may identify its sender (`Authorization` or any
/// `Cookie`).
pub fn carries_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE)
}

/// Lower-cased field names listed in `Vary`.
pub fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

/// `Content-Type: text/event-stream`.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PolicyOptions {
        PolicyOptions {
            default_swr_secs: 5,
            default_sie_secs: 7,
            auth_cookies: vec!["session".into()],
            targeted_fields: vec![
                HeaderName::from_static("llmselect-cache-control"),
                HeaderName::from_static(CDN_CACHE_CONTROL),
            ],
        }
    }

    use crate::test_support::response as resp;

    /// `GET /x` on host `h`.
    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = crate::test_support::request(headers);
        r.insert_header("host", "h").unwrap();
        r
    }

    fn ttl(meta: &CacheMeta, now: SystemTime) -> i64 {
        match meta.fresh_until().duration_since(now) {
            Ok(d) => d.as_secs() as i64,
            Err(_) => -1,
        }
    }

    #[test]
    fn max_age_and_upstream_age() {
        let now = SystemTime::now();
        let m = decide(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=100"), ("age", "30")]),
            now,
            &opts(),
        )
        .unwrap();
        assert_eq!(ttl(&m, now), 70);
        assert!(m.headers().get("age").is_none());
        assert_eq!(m.stale_while_revalidate_sec(), 5);
        assert_eq!(m.stale_if_error_sec(), 7);
    }

    #[test]
    fn s_maxage_wins_and_disables_stale() {
        let now = SystemTime::now();
        let m = decide(
            &req(&[]),
            &resp(200, &[("cache-control", "max-age=10, s-maxage=50")]),
            now,
            &opts(),
        )
        .unwrap();
        assert_eq!(ttl(&m, now), 50);
        assert_eq!(m.stale_while_revalidate_sec(), 0);
    }

    #[test]
    fn cdn_cache_control_takes_precedence() {
        let now = SystemTime::now();
        let m = decide(
            &req(&[]),
            &resp(
                200,
                &[
                    ("cache-control", "private, no-store"),
                    ("cdn-cache-control", "max-age=60, stale-while-revalidate=9"),
                ],
            ),
            now,
            &opts(),
        )
        .unwrap();
        assert_eq!(ttl(&m, now), 60);
        assert_eq!(m.stale_while_revalidate_sec(), 9);
        // the downstream still gets the origin's Cache-Control
        assert_eq!(m.headers()["cache-control"], "private, no-store");
        // an invalid CDN-Cache-Control is ignored
        let r = resp(
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=("),
            ],
        );
        assert!(decide(&req(&[]), &r, now, &opts()).is_err());
    }

    #[test]
    fn uncacheable_cases() {
        let now = SystemTime::now();
        let o = opts();
        for (rq, rs) in [
            (req(&[]), resp(200, &[("cache-control", "no-store")])),
            (
                req(&[]),
                resp(200, &[("cache-control", "private, max-age=60")]),
            ),
            (
                req(&[]),
                resp(200, &[("cache-control", "max-age=60"), ("vary", "*")]),
            ),
            (
                req(&[("authorization", "Bearer a")]),
                resp(200, &[("cache-control", "max-age=60")]),
            ),
            (
                req(&[("cache-control", "no-store")]),
                resp(200, &[("cache-control", "max-age=60")]),
            ),
            (
                req(&[]),
                resp(
                    200,
                    &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                ),
            ),
            (req(&[]), resp(200, &[])),
            (req(&[]), resp(200, &[("cache-control", "max-age=0")])),
            (req(&[]), resp(200, &[("expires", "0")])),
            (req(&[]), resp(206, &[("cache-control", "max-age=60")])),
            (
                req(&[]),
                resp(
                    200,
                    &[
                        ("cache-control", "max-age=60"),
                        ("content-type", "text/event-stream"),
                    ],
                ),
            ),
        ] {
            assert!(decide(&rq, &rs, now, &o).is_err(), "{rq:?} {rs:?}");
        }
    }

    #[test]
    fn refusals_name_their_rule() {
        let now = SystemTime::now();
        let rule = |rq: RequestHeader, rs: ResponseHeader| {
            decide_with_rule(&rq, &rs, now, &opts()).unwrap_err().rule
        };
        assert!(rule(req(&[]), resp(200, &[("cache-control", "no-store")])).contains("no-store"));
        assert!(rule(req(&[]), resp(200, &[("cache-control", "private")])).contains("private"));
        assert!(rule(
            req(&[("authorization", "Bearer a")]),
            resp(200, &[("cache-control", "max-age=60")])
        )
        .contains("Authorization"));
        assert!(rule(req(&[]), resp(200, &[])).contains("no freshness"));
        assert!(rule(req(&[]), resp(200, &[("vary", "*")])).contains("Vary: *"));
    }

    #[test]
    fn freshness_sources() {
        let t = opts().targeted_fields;
        let src = |h: &[(&str, &str)]| freshness_source(&resp(200, h).headers, &t);
        assert_eq!(
            src(&[("cache-control", "max-age=5")]),
            "cache-control: max-age"
        );
        assert_eq!(
            src(&[("cache-control", "max-age=5, s-maxage=9")]),
            "cache-control: s-maxage"
        );
        assert_eq!(
            src(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=9")
            ]),
            "cdn-cache-control: max-age"
        );
        assert_eq!(
            src(&[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")]),
            "expires"
        );
        assert_eq!(
            src(&[("last-modified", "Thu, 01 Jan 2020 00:00:00 GMT")]),
            "heuristic (last-modified)"
        );
    }

    #[test]
    fn authorization_allowed_with_must_revalidate() {
        let now = SystemTime::now();
        let m = decide(
            &req(&[("authorization", "Bearer a")]),
            &resp(200, &[("cdn-cache-control", "max-age=30, must-revalidate")]),
            now,
            &opts(),
        )
        .unwrap();
        assert_eq!(ttl(&m, now), 30);
        assert_eq!(m.stale_if_error_sec(), 0);
    }

    #[test]
    fn only_intrinsic_reasons_reach_the_predictor() {
        let now = SystemTime::now();
        let specific = NoCacheReason::Custom(reason::REQUEST_SPECIFIC);
        let no_store = || resp(200, &[("cache-control", "no-store")]);
        // one user's failure, a 404 / 429, a credentialed request, a client's own directive
        for (rq, rs) in [
            (
                req(&[("cookie", "theme=dark; session=abc")]),
                resp(401, &[("cache-control", "no-store")]),
            ),
            (req(&[]), resp(404, &[("cache-control", "no-store")])),
            (req(&[]), resp(429, &[("cache-control", "no-store")])),
            (req(&[("authorization", "Bearer x")]), no_store()),
            (req(&[("cookie", "a=b")]), no_store()),
            (
                req(&[("cache-control", "no-store")]),
                resp(200, &[("cache-control", "max-age=60")]),
            ),
        ] {
            assert_eq!(decide(&rq, &rs, now, &opts()).unwrap_err(), specific);
        }
        // what the URL itself says to everybody
        assert_eq!(
            decide(&req(&[]), &no_store(), now, &opts()).unwrap_err(),
            NoCacheReason::Custom(reason::NOT_STORABLE)
        );
    }

    #[test]
    fn targeted_fields_in_priority_order() {
        let now = SystemTime::now();
        let r = resp(
            200,
            &[
                ("cache-control", "private"),
                ("cdn-cache-control", "max-age=10"),
                ("llmselect-cache-control", "max-age=40, must-revalidate"),
            ],
        );
        let m = decide(&req(&[]), &r, now, &opts()).unwrap();
        assert_eq!(ttl(&m, now), 40);
        assert!(forbids_stale(&r.headers, &opts().targeted_fields));
        assert!(!explicitly_shared(&r.headers, &opts().targeted_fields));
        // an invalid own field falls back to the next one
        let r = resp(
            200,
            &[
                ("cdn-cache-control", "public, max-age=10"),
                ("llmselect-cache-control", "max-age=(("),
            ],
        );
        let m = decide(&req(&[]), &r, now, &opts()).unwrap();
        assert_eq!(ttl(&m, now), 10);
        assert!(explicitly_shared(&r.headers, &opts().targeted_fields));
        assert!(!forbids_stale(&r.headers, &opts().targeted_fields));
        let s = resp(200, &[("cache-control", "s-maxage=5")]);
        assert!(explicitly_shared(&s.headers, &opts().targeted_fields));
        let nc = resp(200, &[("cache-control", "no-cache, max-age=5")]);
        assert!(forbids_stale(&nc.headers, &opts().targeted_fields));
    }

    #[test]
    fn heuristic_and_validator_only() {
        let now = SystemTime::now();
        let lm = httpdate(now - Duration::from_secs(1000));
        let m = decide(
            &req(&[]),
            &resp(200, &[("last-modified", &lm)]),
            now,
            &opts(),
        )
        .unwrap();
        assert!((99..=100).contains(&ttl(&m, now)), "{}", ttl(&m, now));
        let m = decide(
            &req(&[]),
            &resp(200, &[("cache-control", "no-cache"), ("etag", "\"v1\"")]),
            now,
            &opts(),
        )
        .unwrap();
        assert!(!m.is_fresh(now));
    }

    #[test]
    fn expires_relative_to_date() {
        let now = SystemTime::now();
        let date = now - Duration::from_secs(100);
        let m = decide(
            &req(&[]),
            &resp(
                200,
                &[
                    ("date", &httpdate(date)),
                    ("expires", &httpdate(date + Duration::from_secs(300))),
                ],
            ),
            now,
            &opts(),
        )
        .unwrap();
        // 300 s of freshness, 100 s of it already used upstream
        assert!((199..=200).contains(&ttl(&m, now)), "{}", ttl(&m, now));
    }

    #[test]
    fn request_directives() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("cache-control", v.parse().unwrap());
            m
        };
        let age = Duration::from_secs(20);
        assert_eq!(
            request_freshness(&h("no-cache"), age, 10, false),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(
            request_freshness(&h("max-age=10"), age, 10, false),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(request_freshness(&h("max-age=30"), age, 10, false), None);
        assert_eq!(
            request_freshness(&h("min-fresh=20"), age, 10, false),
            Some(ForcedFreshness::ForceExpired)
        );
        assert_eq!(
            request_freshness(&h("max-stale=5"), age, -3, false),
            Some(ForcedFreshness::ForceFresh)
        );
        assert_eq!(request_freshness(&h("max-stale=5"), age, -9, false), None);
        assert_eq!(request_freshness(&h("max-stale"), age, -9, true), None);
        let mut pragma = HeaderMap::new();
        pragma.insert("pragma", "no-cache".parse().unwrap());
        assert_eq!(
            request_freshness(&pragma, age, 10, false),
            Some(ForcedFreshness::ForceExpired)
        );
        assert!(only_if_cached(&h("max-age=1, only-if-cached")));
    }

    #[test]
    fn overlay_replaces_all_but_framing() {
        let stored = resp(
            200,
            &[
                ("content-length", "10"),
                ("x-v", "1"),
                ("cache-groups", "\"a\""),
                ("date", "old"),
            ],
        );
        let nm = resp(
            304,
            &[
                ("x-v", "2"),
                ("cache-groups", "\"b\""),
                ("content-length", "0"),
                ("date", "new"),
            ],
        );
        let out = overlay_304(&stored, &nm);
        assert_eq!(out.status, 200);
        assert_eq!(out.headers["x-v"], "2");
        assert_eq!(out.headers["cache-groups"], "\"b\"");
        assert_eq!(out.headers["date"], "new");
        assert_eq!(out.headers["content-length"], "10");
        // Vary, Set-Cookie, hop-by-hop and Connection-named fields are not merged
        let nm = resp(
            304,
            &[
                ("vary", "cookie"),
                ("set-cookie", "sid=alice"),
                ("connection", "x-private"),
                ("x-private", "1"),
                ("keep-alive", "timeout=5"),
            ],
        );
        let out = overlay_304(&stored, &nm);
        for name in [
            "vary",
            "set-cookie",
            "connection",
            "x-private",
            "keep-alive",
        ] {
            assert!(out.headers.get(name).is_none(), "{name}");
        }
    }

    #[test]
    fn cookie_key_fails_closed() {
        let auth = ["session".to_string()];
        let key = |values: &[&str], auth: &[String]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("cookie", v.parse().unwrap());
            }
            cookie_key(&h, auth).map(|k| String::from_utf8(k).unwrap())
        };
        // reduced to the auth cookie when present; duplicates keep their order
        assert_eq!(
            key(&["theme=dark; session=b", "x=1; session=a"], &auth).unwrap(),
            "session=b; session=a"
        );
        assert_ne!(
            key(&["session=a; session=b"], &auth),
            key(&["session=b; session=a"], &auth)
        );
        // no auth cookie: the whole header, sorted by name
        assert_eq!(
            key(&["theme=light; a=1"], &auth).unwrap(),
            "a=1; theme=light"
        );
        assert_ne!(key(&["t=1"], &auth), key(&["t=2"], &auth));
        // an empty list means the whole header
        assert_eq!(key(&["b=2; a=1"], &[]).unwrap(), "a=1; b=2");
        assert_eq!(key(&[" ; "], &auth), None);
        // obs-text keys exactly
        let mut h1 = HeaderMap::new();
        h1.append("cookie", HeaderValue::from_bytes(b"x=\xc3\xa9").unwrap());
        let mut h2 = HeaderMap::new();
        h2.append("cookie", HeaderValue::from_bytes(b"x=\xc3\xa8").unwrap());
        assert_ne!(cookie_key(&h1, &auth), cookie_key(&h2, &auth));
    }

    fn httpdate(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }
}
