//! The governing cache directives of a response: one parser behind every decision that reads
//! them (storing, freshness, stale serving, sharing).
//!
//! The governing field is the highest-priority targeted field (RFC 9213) that is present and a
//! valid Structured Field dictionary whose known directives have the right types; otherwise
//! `Cache-Control` (RFC 9111 §5.2), whose directive names are case-insensitive. An invalid
//! targeted field is ignored entirely, as if it were absent.
//!
//! Hand-written rather than pingora's `CacheControl` or http-cache-semantics: both match
//! directive names case-sensitively, and neither parses targeted fields as Structured Fields.

use http::{header, HeaderMap, HeaderName, HeaderValue};

/// The largest delta-seconds a cache must handle (RFC 9111 §1.2.2); larger values saturate.
pub const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// Directives whose value must be a non-negative integer in a targeted field.
const INTEGER_DIRECTIVES: [&str; 4] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// Directives that take no value (a Boolean in a targeted field).
const FLAG_DIRECTIVES: [&str; 7] = [
    "must-revalidate",
    "proxy-revalidate",
    "no-store",
    "public",
    "immutable",
    "must-understand",
    "no-transform",
];

/// Parsed directives: lower-case names with their optional (unquoted) values, in field order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    items: Vec<(String, Option<String>)>,
}

impl Directives {
    /// The governing directives of a response with these headers (see the module doc).
    pub fn governing(headers: &HeaderMap, targeted: &[HeaderName]) -> Directives {
        if !any_present(headers, targeted) {
            return Directives::cache_control(headers);
        }
        targeted
            .iter()
            .find_map(|name| Directives::targeted(headers, name))
            .unwrap_or_else(|| Directives::cache_control(headers))
    }

    /// Whether one of `targeted` is present and valid (it then governs, and `Expires` is
    /// ignored: RFC 9213 §2.1).
    pub fn targeted_governs(headers: &HeaderMap, targeted: &[HeaderName]) -> bool {
        any_present(headers, targeted)
            && targeted
                .iter()
                .any(|name| Directives::targeted(headers, name).is_some())
    }

    /// `Cache-Control` (all its lines). Without one, a response's `Pragma: no-cache` counts as
    /// `no-cache`.
    pub fn cache_control(headers: &HeaderMap) -> Directives {
        let mut items: Vec<(String, Option<String>)> = Vec::new();
        for value in headers.get_all(header::CACHE_CONTROL) {
            // bytes that are not UTF-8 spoil only the member they are in
            let text = match std::str::from_utf8(value.as_bytes()) {
                Ok(text) => std::borrow::Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(value.as_bytes()),
            };
            for member in split_list(&text) {
                let member = member.trim();
                if member.is_empty() {
                    continue;
                }
                items.push(match member.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(unquote(v.trim()))),
                    None => (member.to_ascii_lowercase(), None),
                });
            }
        }
        if items.is_empty() && pragma_no_cache(headers) {
            items.push(("no-cache".into(), None));
        }
        Directives { items }
    }

    /// The targeted field `name` as directives, or `None` when it is absent, not valid UTF-8,
    /// not a Structured Field dictionary, or a known directive has the wrong type.
    pub fn targeted(headers: &HeaderMap, name: &HeaderName) -> Option<Directives> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(HeaderValue::to_str)
            .collect::<Result<_, _>>()
            .ok()?;
        if values.is_empty() {
            return None;
        }
        let joined = values.join(", ");
        let dict = sfv::Parser::new(joined.as_str())
            .parse_dictionary::<sfv::Dictionary>()
            .ok()?;
        let mut items = Vec::with_capacity(dict.len());
        for (key, entry) in &dict {
            let key = key.as_str();
            let qualifiable = key == "private" || key == "no-cache";
            let known =
                qualifiable || INTEGER_DIRECTIVES.contains(&key) || FLAG_DIRECTIVES.contains(&key);
            // `Err`: a known directive of the wrong type; `Ok(None)`: absent (`?0`)
            let value: Result<Option<Option<String>>, ()> = match entry {
                sfv::ListEntry::Item(item) => {
                    let b = &item.bare_item;
                    if INTEGER_DIRECTIVES.contains(&key) {
                        match b.as_integer().map(i64::from) {
                            Some(n) if n >= 0 => Ok(Some(Some(n.to_string()))),
                            _ => Err(()),
                        }
                    } else if let Some(flag) = b.as_boolean() {
                        Ok(flag.then_some(None))
                    } else if qualifiable {
                        b.as_string()
                            .map(|s| Some(Some(s.as_str().to_string())))
                            .ok_or(())
                    } else if known {
                        Err(())
                    } else {
                        Ok(Some(None))
                    }
                }
                sfv::ListEntry::InnerList(list) if qualifiable => list
                    .items
                    .iter()
                    .map(|i| i.bare_item.as_string().map(|s| s.as_str()))
                    .collect::<Option<Vec<&str>>>()
                    .map(|names| Some(Some(names.join(", "))))
                    .ok_or(()),
                sfv::ListEntry::InnerList(_) if known => Err(()),
                sfv::ListEntry::InnerList(_) => Ok(Some(None)),
            };
            match value {
                Err(()) => return None,
                Ok(Some(v)) => items.push((key.to_string(), v)),
                Ok(None) => {}
            }
        }
        Some(Directives { items })
    }

    /// Whether the directive is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.items.iter().any(|(k, _)| k == name)
    }

    /// The value of the first occurrence of the directive (RFC 9111 §4.2.1 allows using the first
    /// of duplicates).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// A delta-seconds directive: `None` when absent; an invalid value (not digits) counts as 0
    /// (invalid freshness information means stale, RFC 9111 §4.2.1); huge values saturate.
    pub fn seconds(&self, name: &str) -> Option<u64> {
        if !self.has(name) {
            return None;
        }
        Some(self.value(name).map_or(0, delta_seconds))
    }

    /// The field names of a qualified directive (`private="Set-Cookie, X-User"`), lower-case;
    /// `None` when the directive is absent or unqualified.
    pub fn field_names(&self, name: &str) -> Option<Vec<String>> {
        let value = self.value(name)?;
        let names: Vec<String> = value
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        (!names.is_empty()).then_some(names)
    }

    /// Unqualified presence of a directive that may be qualified (`private`, `no-cache`).
    pub fn unqualified(&self, name: &str) -> bool {
        self.has(name) && self.field_names(name).is_none()
    }

    /// Whether the response is explicitly shareable across users: `public` or `s-maxage`.
    pub fn explicitly_shared(&self) -> bool {
        self.has("public") || self.has("s-maxage")
    }

    /// Whether a stored response may never be served stale: `must-revalidate`,
    /// `proxy-revalidate` or `s-maxage` (which implies it, RFC 9111 §5.2.2.10), or `no-cache`.
    pub fn forbids_stale(&self) -> bool {
        [
            "must-revalidate",
            "proxy-revalidate",
            "s-maxage",
            "no-cache",
        ]
        .iter()
        .any(|d| self.has(d))
    }
}

/// delta-seconds (RFC 9111 §1.2.2): 1*DIGIT, saturating at [`DELTA_SECONDS_MAX`]; anything
/// else is 0.
fn delta_seconds(v: &str) -> u64 {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    v.parse::<u64>()
        .map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX))
}

/// Splits a comma-separated field value, keeping commas inside quoted strings.
/// Whether a field of `headers` is one of `targeted`: one pass over the response's fields, which
/// most responses settle without hashing the (custom, hence slower to hash) targeted names.
fn any_present(headers: &HeaderMap, targeted: &[HeaderName]) -> bool {
    !targeted.is_empty() && headers.keys().any(|name| targeted.contains(name))
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        // the delimiters are ASCII, so a byte-wise scan never splits a character
        for (i, b) in s.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// A token or quoted-string value, unquoted.
fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                escaped = false;
                out.push(c);
            }
            out
        }
        None => v.to_string(),
    }
}

fn pragma_no_cache(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::PRAGMA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::header_map as h;

    fn cdn() -> Vec<HeaderName> {
        vec![HeaderName::from_static("cdn-cache-control")]
    }

    #[test]
    fn names_are_case_insensitive_and_values_unquoted() {
        let d = Directives::cache_control(&h(&[("cache-control", "No-CaChE, MAX-AGE=\"60\"")]));
        assert!(d.has("no-cache"));
        assert_eq!(d.seconds("max-age"), Some(60));
        assert!(d.forbids_stale());
        let d = Directives::cache_control(&h(&[("cache-control", "max-age=1m, s-maxage=-1")]));
        assert_eq!(d.seconds("max-age"), Some(0));
        assert_eq!(d.seconds("s-maxage"), Some(0));
        let d = Directives::cache_control(&h(&[("cache-control", "max-age=99999999999")]));
        assert_eq!(d.seconds("max-age"), Some(DELTA_SECONDS_MAX));
        // the first of duplicates
        let d = Directives::cache_control(&h(&[
            ("cache-control", "max-age=10"),
            ("cache-control", "max-age=20"),
        ]));
        assert_eq!(d.seconds("max-age"), Some(10));
    }

    #[test]
    fn lists_split_at_commas_outside_quoted_strings() {
        let members: Vec<&str> = split_list(r#"a, b="x, \"y\", z", , c=é,"#).collect();
        assert_eq!(members, ["a", r#" b="x, \"y\", z""#, " ", " c=é", ""]);
        assert_eq!(split_list("").collect::<Vec<_>>(), [""]);
        // bytes that are not UTF-8 spoil their member only: `no-store` still counts
        let mut map = http::HeaderMap::new();
        map.insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_bytes(b"no-store, x=\xff").unwrap(),
        );
        let d = Directives::cache_control(&map);
        assert!(d.has("no-store"));
        assert!(d.has("x"));
    }

    #[test]
    fn qualified_directives_keep_their_field_names() {
        let d = Directives::cache_control(&h(&[(
            "cache-control",
            "private=\"Set-Cookie, X-User\", max-age=5",
        )]));
        assert_eq!(
            d.field_names("private").unwrap(),
            vec!["set-cookie".to_string(), "x-user".to_string()]
        );
        assert!(!d.unqualified("private"));
        assert_eq!(d.seconds("max-age"), Some(5));
        assert!(
            Directives::cache_control(&h(&[("cache-control", "private")])).unqualified("private")
        );
    }

    #[test]
    fn pragma_counts_only_without_cache_control() {
        assert!(Directives::cache_control(&h(&[("pragma", "no-cache")])).has("no-cache"));
        let both = h(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]);
        assert!(!Directives::cache_control(&both).has("no-cache"));
    }

    #[test]
    fn targeted_field_must_be_a_valid_dictionary_of_the_right_types() {
        let gov = |cdn_value: &str| {
            Directives::governing(
                &h(&[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", cdn_value),
                ]),
                &cdn(),
            )
        };
        assert_eq!(gov("max-age=60, foobar").seconds("max-age"), Some(60));
        assert!(gov("max-age=60, must-revalidate").forbids_stale());
        assert!(gov("private=\"set-cookie\"").has("private"));
        // invalid: Cache-Control governs
        for invalid in [
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age =100",
            "max-age= 100",
            "MaX-aGe=3600",
            "max-age=-1",
            "max-age=1.5",
            "no-store=5",
            "public=\"yes\"",
        ] {
            let d = gov(invalid);
            assert!(d.has("no-store"), "{invalid}");
            assert!(!d.has("max-age"), "{invalid}");
        }
        // an unknown directive may have any type
        assert_eq!(gov("max-age=5, x-ext=1.5").seconds("max-age"), Some(5));
        assert!(!gov("max-age=5, public=?0").has("public"));
    }

    #[test]
    fn governing_sharing_and_stale_rules() {
        let d = |v: &str| Directives::cache_control(&h(&[("cache-control", v)]));
        assert!(d("public").explicitly_shared());
        assert!(d("S-MAXAGE=5").explicitly_shared());
        assert!(!d("max-age=5").explicitly_shared());
        assert!(d("Must-Revalidate").forbids_stale());
        assert!(d("proxy-revalidate").forbids_stale());
        // substrings of other directives do not count
        assert!(!d("x-no-cache-hint, max-age=5").forbids_stale());
        assert!(!d("max-age=5, x-s-maxage-note=1").explicitly_shared());
    }
}
