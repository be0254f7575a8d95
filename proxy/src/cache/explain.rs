//! "Why is this URL (not) cached?": what the store holds for a URL and what a request with given
//! headers would get, computed with the functions the request path uses (the key, the variant
//! selection of `cache::hit`, the policy's freshness and request-directive rules). Read-only: it
//! neither fetches nor changes anything.

use super::entry::Entry;
use super::hit;
use super::key::UrlKey;
use super::policy::{self, PolicyOptions};
use super::store::Store;
use http::HeaderMap;
use pingora_cache::{CacheMeta, ForcedFreshness};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the explanation needs besides the store.
pub struct Question<'a> {
    pub url: &'a UrlKey,
    /// The request headers to simulate (credentials, `Accept-Language`, `Cache-Control`...).
    pub headers: &'a HeaderMap,
    pub policy: &'a PolicyOptions,
    pub honour_request_directives: bool,
    /// The uncacheable predictor's verdict for the URL (`false`: requests bypass the cache).
    pub predicted_cacheable: bool,
    /// The node revalidates group-tagged entries (the invalidation bus cannot vouch for them).
    pub bus_degraded: bool,
    pub now: SystemTime,
}

/// The explanation as the admin API returns it.
pub fn explain(store: &Store, q: &Question) -> Value {
    let primary = q.url.primary_hash();
    let selected = hit::select_variant(store, &primary, q.headers, &q.policy.auth_cookies);
    let variants: Vec<Value> = store
        .variants_of(&primary)
        .iter()
        .map(|(key, e)| {
            let mut v = variant_json(e, q);
            v["storage_key"] = hex::encode(key).into();
            v["selected"] = selected.as_ref().is_some_and(|s| s.id == e.id).into();
            v
        })
        .collect();
    let refusal = store.refusal(&primary);
    let (verdict, why) = verdict(
        q,
        selected.as_ref(),
        variants.len(),
        refusal.map(|r| r.rule),
    );
    json!({
        "url": q.url.primary(),
        "key": {"primary": q.url.primary(), "hash": hex::encode(primary)},
        "verdict": verdict,
        "why": why,
        "predicted_cacheable": q.predicted_cacheable,
        "variants": variants,
        "selected": selected.as_ref().map(|e| e.id),
        "last_refusal": store.refusal(&primary).map(|r| json!({
            "rule": r.rule,
            "at": unix_secs(r.at),
        })),
    })
}

/// The outcome for the simulated request and the rule behind it.
fn verdict(
    q: &Question,
    selected: Option<&Arc<Entry>>,
    stored: usize,
    refusal: Option<&'static str>,
) -> (&'static str, String) {
    if !q.predicted_cacheable {
        let rule = refusal.unwrap_or("a response for this URL was refused");
        return (
            "pass",
            format!("the uncacheable predictor bypasses the cache for this URL: {rule}"),
        );
    }
    let Some(entry) = selected else {
        if stored > 0 {
            return (
                "miss",
                "no stored variant matches this request's values of the fields the variants are \
                 keyed on (Vary, and the credentials of responses not explicitly shared)"
                    .into(),
            );
        }
        return match refusal {
            Some(rule) => ("miss", format!("the last response was not stored: {rule}")),
            None => (
                "miss",
                "nothing is stored for this URL (never requested, evicted or purged)".into(),
            ),
        };
    };
    let Some(meta) = decode(entry) else {
        return ("miss", "the stored entry cannot be decoded".into());
    };
    let age = q.now.duration_since(meta.epoch()).unwrap_or_default();
    let fresh_for = policy::seconds_until(meta.fresh_until(), q.now);
    let soft = entry.is_soft_expired();
    let forced = if q.honour_request_directives {
        policy::request_freshness(
            q.headers,
            age,
            fresh_for,
            soft || policy::forbids_stale(meta.headers(), &q.policy.targeted_fields),
        )
    } else {
        None
    };
    if q.bus_degraded && !entry.groups.is_empty() {
        return (
            "revalidate",
            "the node lost contact with the invalidation bus (or lags): group-tagged entries are \
             revalidated with the origin first"
                .into(),
        );
    }
    match forced {
        Some(ForcedFreshness::ForceExpired) => {
            return (
                "revalidate",
                "the request's own Cache-Control / Pragma demands a fresher response".into(),
            )
        }
        Some(ForcedFreshness::ForceFresh) => {
            return (
                "hit",
                "stale, but the request accepts it (max-stale)".into(),
            )
        }
        _ => {}
    }
    if soft {
        return (
            "revalidate",
            "soft-purged: the stored response is revalidated with the origin".into(),
        );
    }
    if fresh_for >= 0 {
        return ("hit", format!("fresh for {fresh_for} s more"));
    }
    let stale_for = (-fresh_for) as u64;
    if stale_for <= u64::from(meta.stale_while_revalidate_sec()) {
        return (
            "stale",
            "stale within stale-while-revalidate: served stale while it revalidates in the \
             background"
                .into(),
        );
    }
    (
        "revalidate",
        "stale: revalidated with the origin (a conditional request when it has a validator)".into(),
    )
}

fn variant_json(e: &Entry, q: &Question) -> Value {
    let vary = e
        .view
        .as_ref()
        .map(|v| v.vary.names().to_vec())
        .unwrap_or_default();
    let Some(meta) = decode(e) else {
        return json!({"id": e.id, "vary": vary, "error": "undecodable meta"});
    };
    let age = q.now.duration_since(meta.epoch()).unwrap_or_default();
    json!({
        "id": e.id,
        "status": meta.response_header().status.as_u16(),
        "vary": vary,
        "groups": e.groups,
        "age_secs": age.as_secs(),
        "ttl_left_secs": policy::seconds_until(meta.fresh_until(), q.now),
        "stale_while_revalidate_secs": meta.stale_while_revalidate_sec(),
        "stale_if_error_secs": meta.stale_if_error_sec(),
        "freshness_source": policy::freshness_source(
            meta.response_header().status.as_u16(),
            meta.headers(),
            &q.policy.targeted_fields,
            meta.created(),
        ),
        "soft_purged": e.is_soft_expired(),
        "body_bytes": e.body.len(),
        "stored_at": unix_secs(meta.created()),
    })
}

fn decode(e: &Entry) -> Option<CacheMeta> {
    CacheMeta::deserialize(&e.meta.0, &e.meta.1).ok()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
