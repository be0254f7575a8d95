//! RFC 9111 decisions: what to store and for how long (`assess`, then `Stored::apply`; on the
//! governing directives of [`directives`](super::directives) and the freshness of
//! [`freshness`](super::freshness)), and what the request's own directives demand of a stored
//! response (`request_freshness`).

use super::directives::Directives;
use super::freshness::{self, Freshness};
pub use crate::config::SetCookiePolicy;
use http::{header, HeaderMap, HeaderName};
use pingora_cache::{CacheMeta, ForcedFreshness, NoCacheReason};
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
    /// What happens to responses that carry `Set-Cookie`.
    pub set_cookie: SetCookiePolicy,
}

impl PolicyOptions {
    /// The policy settings of a configuration.
    pub fn of(config: &crate::config::Config) -> PolicyOptions {
        PolicyOptions {
            default_swr_secs: config.cache.default_stale_while_revalidate_secs,
            default_sie_secs: config.cache.default_stale_if_error_secs,
            auth_cookies: config.cache.auth_cookies.clone(),
            targeted_fields: config.targeted_fields(),
            set_cookie: config.cache.set_cookie,
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
/// `now` is the time the response header arrived. (The request paths use [`assess`] and
/// [`Stored::apply`] through `FastHits`; this is the tests' shorthand.)
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

/// Whether `resp` (answering `req`) is stored, and its `CacheMeta`, naming the rule that refused
/// it. `now` is the time the response header arrived.
pub fn decide_with_rule(
    req: &RequestHeader,
    resp: &ResponseHeader,
    now: SystemTime,
    opts: &PolicyOptions,
) -> Result<CacheMeta, Refusal> {
    // the header is copied only once the response is known to be stored
    assess(req, resp, now, opts).map(|stored| stored.apply(resp.clone(), opts).meta)
}

/// What the policy stores of a response ([`Stored::apply`]).
pub struct Decided {
    pub meta: CacheMeta,
    /// Whether the stored response is explicitly shared (what [`explicitly_shared`] says of the
    /// stored header), read from the directives the decision parsed unless the stored header
    /// lost a field that governs: a fill keys its variance with it
    /// (`vary::VaryFields::of_sharing`).
    pub shared: bool,
    /// [`withheld_fields`] of the response and its stored form, in the response's field order.
    pub withheld: Vec<(HeaderName, http::HeaderValue)>,
}

/// A response the policy stores, and how: everything the decision worked out from the
/// response before its header is touched ([`Stored::apply`]). Split so that a caller who gives
/// its header up stores that header itself rather than a copy (a copy holds its fields in
/// vectors sized to the field count, so the view's `Accept-Ranges` then grew two of them: with
/// the copy, 2.7 k instructions of a front fill), and a refused response is never copied.
pub struct Stored {
    fresh_until: SystemTime,
    now: SystemTime,
    age: Duration,
    swr: u32,
    sie: u32,
    /// Fields (lower-case names) left out of the stored header besides `Age` and the hop-by-hop
    /// ones.
    unstored: Vec<String>,
    /// A field that governs (`Cache-Control`, a targeted field) is among them.
    governing_removed: bool,
    /// The governing directives say `public` or `s-maxage`.
    explicitly_shared: bool,
}

/// The rules of [`decide_with_rule`], applied to a borrowed header: what the response's stored
/// form will be, or the rule that refuses it. Every rule that refuses is here: [`Stored::apply`]
/// only removes fields.
pub fn assess(
    req: &RequestHeader,
    resp: &ResponseHeader,
    now: SystemTime,
    opts: &PolicyOptions,
) -> Result<Stored, Refusal> {
    // Only what is intrinsic to the URL may teach the (variance-blind) predictor.
    // (fields looked for in one pass: see `has_any`)
    let intrinsic = (200..400).contains(&resp.status.as_u16())
        && !has_any(
            &req.headers,
            &["authorization", "cookie", "cache-control", "pragma"],
        );
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
    let targeted = Directives::targeted_governs(&resp.headers, &opts.targeted_fields);
    let dirs = Directives::governing(&resp.headers, &opts.targeted_fields);
    if let Err(rule) = storable(req, resp, &dirs, targeted) {
        return Err(custom(reason::NOT_STORABLE, rule));
    }
    // Whether a field that governs (`Cache-Control`, a targeted field) is left out of the stored
    // header below: the stored header's sharing is then worked out from what is left of it.
    let governs = |name: &str| {
        name == "cache-control" || opts.targeted_fields.iter().any(|t| t.as_str() == name)
    };
    let connection = connection_named(&resp.headers);
    // `private="a, b"`: only the named fields are one user's; the rest may be shared (§5.2.2.7).
    // `no-cache="a, b"`: the named fields may not be reused without validation (§5.2.2.4).
    // Neither is stored.
    let mut unstored: Vec<String> = ["private", "no-cache"]
        .iter()
        .flat_map(|d| dirs.field_names(d).unwrap_or_default())
        .collect();
    let governing_removed = connection.iter().chain(&unstored).any(|n| governs(n));
    let set_cookie =
        has_any(&resp.headers, &["set-cookie"]) && !unstored.iter().any(|n| n == "set-cookie");
    if set_cookie {
        if matches!(opts.set_cookie, SetCookiePolicy::Strip) && dirs.explicitly_shared() {
            unstored.push("set-cookie".to_string());
        } else {
            return Err(custom(
                reason::SET_COOKIE,
                "the response sets a cookie and is not explicitly shared (public or \
                 s-maxage), or cache.set_cookie is \"refuse\"",
            ));
        }
    }
    let fresh = Freshness::of(resp.status.as_u16(), &resp.headers, &dirs, targeted, now);
    let ttl = fresh.ttl();
    let (swr, sie) = if dirs.forbids_stale() {
        // every use of a stale copy needs a successful validation first
        (0, 0)
    } else {
        let secs = |d: &str, default: u32| {
            dirs.seconds(d)
                .map_or(default, |s| u32::try_from(s).unwrap_or(u32::MAX))
        };
        (
            secs("stale-while-revalidate", opts.default_swr_secs),
            secs("stale-if-error", opts.default_sie_secs),
        )
    };
    let has_validator = has_any(&resp.headers, &["etag", "last-modified"]);
    // Something already stale without a validator is only worth storing when the origin asked
    // for stale serving itself; the configured default windows alone would hand a response
    // meant to be refetched (`max-age=0`, `Expires: 0`) to the next clients.
    let explicit_stale = ["stale-while-revalidate", "stale-if-error"]
        .iter()
        .any(|d| dirs.seconds(d).is_some_and(|s| s > 0))
        && !dirs.forbids_stale();
    if ttl.is_zero() && !has_validator && !explicit_stale {
        return Err(custom(
            reason::NO_FRESHNESS,
            "the response has no freshness lifetime left (no max-age, s-maxage, Expires or \
             Last-Modified heuristic), no validator and no stale-while-revalidate / \
             stale-if-error",
        ));
    }
    let fresh_until = if ttl.is_zero() {
        now - Duration::from_secs(1)
    } else {
        now + ttl
    };
    // Stored: everything but the fields named above, the upstream `Age` (`Stored::apply`) and
    // the hop-by-hop fields.
    unstored.extend(connection);
    Ok(Stored {
        fresh_until,
        now,
        age: fresh.age,
        swr,
        sie,
        unstored,
        governing_removed,
        explicitly_shared: dirs.explicitly_shared(),
    })
}

impl Stored {
    /// Makes `header` (the assessed response's) the stored form; what it loses and is not
    /// hop-by-hop is withheld: given back to the client whose request fetched it.
    pub fn apply(self, mut header: ResponseHeader, opts: &PolicyOptions) -> Decided {
        let unstored = || self.unstored.iter().map(String::as_str).chain(["age"]);
        let withheld: Vec<_> = header
            .headers
            .iter()
            .filter(|(name, _)| {
                let name = name.as_str();
                unstored().any(|n| n == name) && !HOP_BY_HOP.contains(&name)
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        for name in unstored() {
            if has_any(&header.headers, &[name]) {
                header.remove_header(name);
            }
        }
        strip_hop_by_hop(&mut header);
        let shared = if self.governing_removed {
            explicitly_shared(&header.headers, &opts.targeted_fields)
        } else {
            self.explicitly_shared
        };
        let mut meta = CacheMeta::new(self.fresh_until, self.now, self.swr, self.sie, header);
        meta.set_epoch_override(self.now - self.age);
        Decided {
            meta,
            shared,
            withheld,
        }
    }
}

/// Whether RFC 9111 §3 allows storing the response at all (a shared cache; every final status
/// but 206 and 304, which are never stored); the rule that forbids it otherwise.
fn storable(
    req: &RequestHeader,
    resp: &ResponseHeader,
    dirs: &Directives,
    targeted: bool,
) -> Result<(), &'static str> {
    let status = resp.status.as_u16();
    if request_directives(&req.headers)
        .iter()
        .any(|(k, _)| k == "no-store")
    {
        return Err("the request says Cache-Control: no-store");
    }
    if !(200..600).contains(&status) || status == 206 || status == 304 {
        return Err("206, 304 and non-final responses are never stored");
    }
    if dirs.has("must-understand") {
        // a cache that understands the status ignores `no-store` (§5.2.2.3)
        if !freshness::understood(status) {
            return Err("must-understand with a status this cache does not understand");
        }
    } else if dirs.has("no-store") {
        return Err("the response says no-store (in the field that governs)");
    }
    if dirs.unqualified("private") {
        return Err("the response says private (a shared cache must not store it)");
    }
    // §3.5: a response to a request with Authorization only with an explicit permission
    if req.headers.contains_key(header::AUTHORIZATION)
        && !(dirs.has("must-revalidate") || dirs.explicitly_shared())
    {
        return Err(
            "the request carries Authorization and the response says neither public, \
             s-maxage nor must-revalidate (RFC 9111 §3.5)",
        );
    }
    if Freshness::explicit(dirs, &resp.headers, targeted)
        || dirs.has("public")
        || freshness::heuristically_cacheable(status)
    {
        Ok(())
    } else {
        Err(
            "the status is not heuristically cacheable and the response gives no explicit \
             freshness (max-age, s-maxage, Expires) nor public",
        )
    }
}

/// Where a stored response's freshness lifetime comes from: the field that governs (a targeted
/// field, RFC 9213, or `Cache-Control`) and its directive, `expires`, or the heuristic.
pub fn freshness_source(
    status: u16,
    headers: &HeaderMap,
    targeted_fields: &[HeaderName],
    now: SystemTime,
) -> String {
    let targeted = Directives::targeted_governs(headers, targeted_fields);
    let dirs = Directives::governing(headers, targeted_fields);
    let source = Freshness::of(status, headers, &dirs, targeted, now).source;
    let field = targeted_fields
        .iter()
        .find(|n| Directives::targeted(headers, n).is_some())
        .map_or("cache-control", |n| n.as_str());
    match source {
        "s-maxage" | "max-age" | "no-cache" => format!("{field}: {source}"),
        other => other.to_string(),
    }
}

/// Removes the hop-by-hop fields and the fields the response's `Connection` names (RFC 9110
/// §7.6.1): they describe one connection and are never stored.
pub fn strip_hop_by_hop(header: &mut ResponseHeader) {
    for name in connection_named(&header.headers) {
        header.remove_header(&name);
    }
    if has_any(&header.headers, &HOP_BY_HOP) {
        for name in HOP_BY_HOP {
            header.remove_header(name);
        }
    }
}

/// Whether any field of `headers` is one of `names` (lower-case). One pass over the fields: a
/// lookup per name parses the name first and cost as much as the rest of a fill's header work
/// (nine lookups for the hop-by-hop fields most responses do not have).
pub(crate) fn has_any(headers: &HeaderMap, names: &[&str]) -> bool {
    headers.keys().any(|k| names.contains(&k.as_str()))
}

/// Removes, from a response on its way to the client, the fields its `Connection` names and the
/// non-framing hop-by-hop fields (`Keep-Alive`, `Proxy-Connection`): they were meant for the hop
/// from the origin. Framing fields stay (pingora reads them for this hop's body).
pub fn strip_forwarded_hop_by_hop(header: &mut ResponseHeader) {
    if header.status == http::StatusCode::SWITCHING_PROTOCOLS {
        // an upgrade needs its `Upgrade` field; nothing of it is stored
        return;
    }
    let named = connection_named(&header.headers);
    if named.is_empty() && !has_any(&header.headers, &["keep-alive", "proxy-connection"]) {
        return;
    }
    for name in named
        .iter()
        .map(String::as_str)
        .chain(["keep-alive", "proxy-connection"])
    {
        if forwarded_hop_by_hop(name, &named) {
            header.remove_header(name);
        }
    }
}

/// Whether the field `name` (lower-case) of a response on its way to the client was meant for
/// the hop from the origin only (see [`strip_forwarded_hop_by_hop`]; the front's pass-through
/// applies the same rule as it writes the client's head): `Keep-Alive`, `Proxy-Connection`, and
/// what the response's `Connection` names (`named`, from [`connection_named`]) other than the
/// framing fields and `Connection` itself.
pub(crate) fn forwarded_hop_by_hop(name: &str, named: &[String]) -> bool {
    matches!(name, "keep-alive" | "proxy-connection")
        || (!matches!(name, "content-length" | "transfer-encoding" | "connection")
            && named.iter().any(|c| c == name))
}

/// The end-to-end fields of `resp` that its stored form `stored` lacks (`Set-Cookie` and the
/// fields a qualified `private` / `no-cache` names, the upstream `Age`): they belong to the
/// client whose request fetched the response, which gets them even when it is served from the
/// fill in progress (`cache.stream_fills`).
#[cfg(test)]
pub fn withheld_fields(
    resp: &ResponseHeader,
    stored: &HeaderMap,
) -> Vec<(HeaderName, http::HeaderValue)> {
    resp.headers
        .iter()
        .filter(|(name, _)| !stored.contains_key(*name) && !HOP_BY_HOP.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Lower-cased field names listed in `Connection`.
pub(crate) fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Hop-by-hop fields (RFC 9110 §7.6.1 and the common non-standard ones): never stored from, or
/// replayed out of, a 304.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
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
    let connection_named = connection_named(&not_modified.headers);
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
    Directives::governing(resp, targeted).forbids_stale()
}

/// Whether the origin explicitly allows sharing the response across users: `public` or
/// `s-maxage` in the field this proxy obeys. Anything else is keyed by the request's credentials
/// (see `cache::vary`), whatever its `Vary` says.
pub fn explicitly_shared(resp: &HeaderMap, targeted: &[HeaderName]) -> bool {
    Directives::governing(resp, targeted).explicitly_shared()
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
    use http::HeaderValue;

    fn opts() -> PolicyOptions {
        PolicyOptions {
            default_swr_secs: 5,
            default_sie_secs: 7,
            auth_cookies: vec!["session".into()],
            targeted_fields: vec![
                HeaderName::from_static("llmselect-cache-control"),
                HeaderName::from_static(CDN_CACHE_CONTROL),
            ],
            set_cookie: SetCookiePolicy::Strip,
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
        assert!(
            rule(req(&[]), resp(200, &[("cache-control", "max-age=0")])).contains("no freshness")
        );
        assert!(rule(req(&[]), resp(200, &[("vary", "*")])).contains("Vary: *"));
    }

    #[test]
    fn freshness_sources() {
        let t = opts().targeted_fields;
        let now = SystemTime::now();
        let src = |h: &[(&str, &str)]| freshness_source(200, &resp(200, h).headers, &t, now);
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
    fn every_final_status_with_explicit_freshness_is_stored() {
        let now = SystemTime::now();
        for status in [201, 299, 302, 400, 403, 429, 500, 503, 599] {
            let m = decide(
                &req(&[]),
                &resp(status, &[("cache-control", "max-age=60")]),
                now,
                &opts(),
            )
            .unwrap_or_else(|e| panic!("{status}: {e:?}"));
            assert_eq!(ttl(&m, now), 60, "{status}");
        }
        // 206, 304 and informational responses never are
        for status in [206, 304, 100] {
            let r = resp(status, &[("cache-control", "max-age=60")]);
            assert!(decide(&req(&[]), &r, now, &opts()).is_err(), "{status}");
        }
    }

    #[test]
    fn stored_header_loses_hop_by_hop_private_and_cookie_fields() {
        let now = SystemTime::now();
        let r = resp(
            200,
            &[
                (
                    "cache-control",
                    "public, max-age=60, private=\"x-user\", no-cache=\"x-etc\"",
                ),
                ("x-etc", "1"),
                ("connection", "x-conn"),
                ("x-conn", "1"),
                ("keep-alive", "timeout=5"),
                ("x-user", "alice"),
                ("set-cookie", "sid=alice"),
                ("x-kept", "1"),
            ],
        );
        let m = decide(&req(&[]), &r, now, &opts()).unwrap();
        assert_eq!(ttl(&m, now), 60);
        for gone in [
            "connection",
            "x-conn",
            "keep-alive",
            "x-user",
            "x-etc",
            "set-cookie",
        ] {
            assert!(m.headers().get(gone).is_none(), "{gone}");
        }
        assert_eq!(m.headers()["x-kept"], "1");
        // refused outright when configured so, or when not explicitly shared
        let refuse = PolicyOptions {
            set_cookie: SetCookiePolicy::Refuse,
            ..opts()
        };
        assert!(decide(&req(&[]), &r, now, &refuse).is_err());
        let own = resp(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
        );
        assert!(decide(&req(&[]), &own, now, &opts()).is_err());
    }

    #[test]
    fn must_understand_and_private_with_s_maxage() {
        let now = SystemTime::now();
        let cc = |status: u16, v: &str| {
            decide(
                &req(&[]),
                &resp(status, &[("cache-control", v)]),
                now,
                &opts(),
            )
        };
        assert!(cc(200, "must-understand, no-store, max-age=60").is_ok());
        assert!(cc(299, "must-understand, no-store, max-age=60").is_err());
        assert!(cc(200, "no-store, max-age=60").is_err());
        assert!(cc(200, "s-maxage=60, private").is_err());
        assert!(cc(200, "s-maxage=60, PRIVATE").is_err());
        assert!(cc(200, "s-maxage=60, private=\"x-a\"").is_ok());
        // proxy-revalidate allows fresh reuse (it only forbids serving stale)
        let m = cc(200, "max-age=60, proxy-revalidate").unwrap();
        assert_eq!(ttl(&m, now), 60);
        assert_eq!(m.stale_while_revalidate_sec(), 0);
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
    fn explicit_sharing_is_read_from_the_field_that_governs() {
        let shared = |fields: &[(&str, &str)]| {
            explicitly_shared(&resp(200, fields).headers, &opts().targeted_fields)
        };
        assert!(shared(&[("cache-control", "PUBLIC")]));
        assert!(shared(&[
            ("cache-control", "max-age=5"),
            ("cache-control", "S-MaxAge=9")
        ]));
        assert!(!shared(&[("cache-control", "max-age=5")]));
        assert!(!shared(&[]));
        // the words inside another directive or a value do not count
        assert!(!shared(&[("cache-control", "x-public-note=1, max-age=5")]));
        assert!(!shared(&[("cache-control", "private=\"s-maxage\"")]));
        // a valid targeted field governs; an invalid one leaves it to Cache-Control
        assert!(shared(&[
            ("cache-control", "max-age=5"),
            ("cdn-cache-control", "public")
        ]));
        assert!(!shared(&[
            ("cache-control", "public"),
            ("cdn-cache-control", "max-age=5")
        ]));
        assert!(shared(&[
            ("cache-control", "public"),
            ("cdn-cache-control", "max-age=x")
        ]));
    }

    #[test]
    fn a_decisions_sharing_is_that_of_the_stored_header() {
        let now = SystemTime::now();
        let cases: [&[(&str, &str)]; 5] = [
            &[("cache-control", "public, max-age=60")],
            &[("cache-control", "max-age=60")],
            // the stored header loses the field that governed the decision
            &[
                ("cache-control", "public, max-age=60"),
                ("cdn-cache-control", "max-age=60"),
                ("connection", "cdn-cache-control"),
            ],
            &[(
                "cache-control",
                "public, max-age=60, no-cache=\"cache-control\"",
            )],
            &[
                ("cdn-cache-control", "s-maxage=60"),
                ("cache-control", "max-age=5"),
            ],
        ];
        for fields in cases {
            let decided = decided(fields, now);
            let stored = explicitly_shared(decided.meta.headers(), &opts().targeted_fields);
            assert_eq!(decided.shared, stored, "{fields:?}");
        }
    }

    #[test]
    fn a_stored_header_withholds_what_it_does_not_store() {
        let now = SystemTime::now();
        let cases: [&[(&str, &str)]; 4] = [
            &[("cache-control", "public, max-age=60"), ("etag", "\"a\"")],
            &[
                ("set-cookie", "a=1"),
                ("cache-control", "public, max-age=60"),
                ("age", "5"),
                ("set-cookie", "b=2"),
                ("x-user", "alice"),
            ],
            &[
                (
                    "cache-control",
                    "max-age=60, private=\"X-User\", no-cache=\"x-trace\"",
                ),
                ("x-trace", "1"),
                ("X-User", "alice"),
                ("connection", "x-hop"),
                ("x-hop", "h"),
                ("keep-alive", "timeout=5"),
            ],
            &[
                ("cache-control", "max-age=60"),
                ("set-cookie", "a=1"),
                ("cache-control", "private=\"set-cookie\""),
            ],
        ];
        for fields in cases {
            let original = resp(200, fields);
            let decided = decided(fields, now);
            // what a borrowed decision stores, and what the store lacks of the response
            let borrowed = decide_with_rule(&req(&[]), &original, now, &opts()).unwrap();
            assert_eq!(decided.meta.headers(), borrowed.headers(), "{fields:?}");
            assert_eq!(
                decided.withheld,
                withheld_fields(&original, borrowed.headers()),
                "{fields:?}"
            );
        }
        // the cookie rule refuses after the qualified fields were worked out, before anything
        // is removed from the header
        let fields: &[(&str, &str)] = &[
            ("cache-control", "private=\"x-user\""),
            ("x-user", "alice"),
            ("set-cookie", "a=1"),
        ];
        let refusal = assess(&req(&[]), &resp(200, fields), now, &opts())
            .err()
            .expect("a cookie on a response that is not explicitly shared is refused");
        assert_eq!(refusal.reason, NoCacheReason::Custom(reason::SET_COOKIE));
    }

    /// The stored form of a `200` with `fields` (assessed, then applied to that very header).
    fn decided(fields: &[(&str, &str)], now: SystemTime) -> Decided {
        let header = resp(200, fields);
        assess(&req(&[]), &header, now, &opts())
            .unwrap_or_else(|r| panic!("{fields:?}: {}", r.rule))
            .apply(header, &opts())
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
