//! The one entry point for invalidation. The mutation hook (RFC 9111 §4.4 plus RFC 9875
//! `Cache-Group-Invalidation`), the admin purge and any later purge bus describe what to drop as
//! [`Scope`]s and call [`Invalidator::apply`]; the store records tombstones so fills that started
//! earlier are not stored afterwards.

use super::key::{same_origin_target, UrlKey};
use super::store::{Scope, Store};
use crate::metrics;
use crate::stats::{self, PurgeRecord, Stats};
use http::HeaderMap;

/// RFC 9875 response field naming the groups a response belongs to.
pub const CACHE_GROUPS: &str = "cache-groups";
/// RFC 9875 response field naming the groups a mutation invalidated.
pub const CACHE_GROUP_INVALIDATION: &str = "cache-group-invalidation";
/// Fastly/Varnish-style alias for groups (space separated).
pub const SURROGATE_KEY: &str = "surrogate-key";

/// Who asked for an invalidation (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An unsafe method answered 2xx/3xx.
    Mutation,
    /// The admin `POST /purge`.
    Admin,
    /// A message from the invalidation bus shared by a fleet.
    Bus,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mutation => "mutation",
            Source::Admin => "admin",
            Source::Bus => "bus",
        }
    }
}

/// Applies invalidations to one store.
#[derive(Clone, Copy)]
pub struct Invalidator {
    store: &'static Store,
    stats: &'static Stats,
}

impl Invalidator {
    pub fn new(store: &'static Store, stats: &'static Stats) -> Self {
        Invalidator { store, stats }
    }

    /// Removes (or with `soft`, marks stale) everything the scopes reach; returns the number of
    /// entries affected. Synchronous, so it can run from pingora's synchronous body filter.
    pub fn apply(&self, source: Source, scopes: &[Scope], soft: bool) -> usize {
        let mut total = 0;
        for scope in scopes {
            let n = self.store.invalidate(scope, soft);
            metrics::record_purge(source.as_str(), scope_kind(scope), soft, n);
            total += n;
        }
        self.stats.record_purge(total);
        self.stats.remember_purge(PurgeRecord {
            at_ms: stats::now_ms(),
            source: source.as_str(),
            scopes: scopes.iter().map(describe).collect(),
            soft,
            entries: total,
        });
        total
    }
}

/// A scope in words, for the recent purges.
fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Url(u) => format!("url {}", u.primary()),
        Scope::Path(p) => format!("url {p}"),
        Scope::Prefix(p) => format!("prefix {p}"),
        Scope::Group {
            host: Some(h),
            name,
        } => format!("group {name} on {h}"),
        Scope::Group { host: None, name } => format!("group {name}"),
        Scope::All => "all".into(),
    }
}

fn scope_kind(scope: &Scope) -> &'static str {
    match scope {
        Scope::Url(_) | Scope::Path(_) => "url",
        Scope::Prefix(_) => "prefix",
        Scope::Group { .. } => "group",
        Scope::All => "all",
    }
}

/// What a successful unsafe request invalidates (RFC 9111 §4.4, RFC 9875).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationScopes {
    /// Its target URI and same-origin `Location` / `Content-Location`.
    pub targets: Vec<Scope>,
    /// The groups of `Cache-Group-Invalidation`, scoped to the host. A streamed mutation applies
    /// them again when its body ends (its last write commits just before).
    pub groups: Vec<Scope>,
}

impl MutationScopes {
    /// Parses the mutation response once.
    pub fn of(target: &UrlKey, resp: &HeaderMap) -> MutationScopes {
        let mut targets = vec![Scope::Url(target.clone())];
        for field in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            for v in resp.get_all(&field).iter().filter_map(|v| v.to_str().ok()) {
                if let Some(u) = same_origin_target(target, v) {
                    if !targets.contains(&Scope::Url(u.clone())) {
                        targets.push(Scope::Url(u));
                    }
                }
            }
        }
        let groups = invalidation_groups(resp)
            .into_iter()
            .map(|name| Scope::Group {
                host: Some(target.host.clone()),
                name,
            })
            .collect();
        MutationScopes { targets, groups }
    }

    /// Every scope, targets first.
    pub fn all(&self) -> Vec<Scope> {
        self.targets.iter().chain(&self.groups).cloned().collect()
    }
}

/// Groups a response belongs to: `Cache-Groups` (a structured-field list of strings) plus
/// `Surrogate-Key` (space separated).
pub fn response_groups(headers: &HeaderMap) -> Vec<String> {
    let mut groups = sf_string_list(headers, CACHE_GROUPS);
    for v in headers
        .get_all(SURROGATE_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        groups.extend(v.split_ascii_whitespace().map(str::to_string));
    }
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// Groups named by `Cache-Group-Invalidation`.
pub fn invalidation_groups(headers: &HeaderMap) -> Vec<String> {
    let mut groups = sf_string_list(headers, CACHE_GROUP_INVALIDATION);
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// Parses a structured-field list and keeps its string members; an unparsable field is ignored
/// as a whole (RFC 9875 §2), as are members that are not strings.
fn sf_string_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Vec::new();
    }
    let joined = values.join(", ");
    let Ok(list) = sfv::Parser::new(joined.as_str()).parse_list::<sfv::List>() else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|entry| match entry {
            sfv::ListEntry::Item(item) => {
                item.bare_item.as_string().map(|s| s.as_str().to_string())
            }
            sfv::ListEntry::InnerList(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::header_map as h;

    #[test]
    fn cache_groups_parsing() {
        let g = response_groups(&h(&[
            ("cache-groups", "\"models\", \"user:42:conversations\""),
            ("cache-groups", "\"a\""),
            ("surrogate-key", "k1  k2"),
        ]));
        assert_eq!(g, ["a", "k1", "k2", "models", "user:42:conversations"]);
        // tokens are not strings; an invalid list is ignored whole
        assert_eq!(
            response_groups(&h(&[("cache-groups", "tok, \"s\"")])),
            ["s"]
        );
        assert!(response_groups(&h(&[("cache-groups", "\"unterminated")])).is_empty());
        assert_eq!(
            invalidation_groups(&h(&[("cache-group-invalidation", "\"b\", \"a\", \"b\"")])),
            ["a", "b"]
        );
    }

    #[test]
    fn mutation_targets() {
        let target = UrlKey::new("h:1", "/items");
        let scopes = MutationScopes::of(
            &target,
            &h(&[
                ("location", "/items/7"),
                ("content-location", "http://elsewhere/items/7"),
                ("cache-group-invalidation", "\"items\""),
            ]),
        );
        assert_eq!(scopes.groups.len(), 1);
        assert_eq!(
            scopes.all(),
            vec![
                Scope::Url(target.clone()),
                Scope::Url(UrlKey::new("h:1", "/items/7")),
                Scope::Group {
                    host: Some("h:1".into()),
                    name: "items".into()
                },
            ]
        );
    }
}
