//! Variants: which request fields key a stored response, and the variance hash of a request.
//!
//! The fields are the response's `Vary` plus, for every response the origin did not explicitly
//! share (`public` or `s-maxage`, see [`policy::explicitly_shared`]), the request's credentials:
//! `Authorization` and `Cookie`. So a per-user response is keyed by credential even when its
//! origin forgot `Vary`, and another credential can only miss (fail closed).
//!
//! `Cookie` is keyed through [`policy::cookie_key`]: reduced to the configured authentication
//! cookies when the request carries one of them, the whole header otherwise. `Authorization` is
//! keyed exactly. `Accept-Encoding` is keyed by the set of codings it accepts
//! ([`encoding::accept_encoding_key`]: case, order, spaces and quality values ignored, `q=0`
//! refusals dropped), so the proxy's own compressed variants fall into a few buckets. Other fields
//! are compared as lists with the whitespace around their members removed; `Accept-Language`
//! also ignores case, member order and how a quality value is written (see [`preference_key`]).

use super::encoding;
use super::policy::{self, vary_names};
use http::{HeaderMap, HeaderName};
use pingora_cache::key::HashBinary;
use pingora_cache::VarianceBuilder;

/// The request fields (lower-case, sorted, unique) that key one stored response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaryFields {
    names: Vec<String>,
}

impl VaryFields {
    /// The fields `resp_headers` is keyed on; `targeted` are the targeted cache-control fields
    /// the proxy obeys (they decide whether the response is explicitly shared).
    pub fn of(resp_headers: &HeaderMap, targeted: &[HeaderName]) -> VaryFields {
        Self::of_sharing(
            resp_headers,
            policy::explicitly_shared(resp_headers, targeted),
        )
    }

    /// [`Self::of`] when whether the response is explicitly shared is known already
    /// (`policy::Decided::shared`).
    pub fn of_sharing(resp_headers: &HeaderMap, shared: bool) -> VaryFields {
        let mut names: Vec<String> = vary_names(resp_headers).collect();
        if !shared {
            names.push("authorization".into());
            names.push("cookie".into());
        }
        names.sort_unstable();
        names.dedup();
        VaryFields { names }
    }

    /// [`key_fill`] with these fields (those of `meta`'s header, worked out already).
    pub fn key_fill(
        &self,
        meta: &mut pingora_cache::CacheMeta,
        req: &HeaderMap,
        auth_cookies: &[String],
    ) {
        if let Some(v) = self.variance(req, auth_cookies) {
            meta.set_variance_key(v);
        }
    }

    /// The field names, lower-case and sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the response has variants at all (`variance` returns `Some` for every request).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The variance of a request with these headers; `None` when the response does not vary.
    pub fn variance(&self, req_headers: &HeaderMap, auth_cookies: &[String]) -> Option<HashBinary> {
        let mut builder = VarianceBuilder::new();
        for name in &self.names {
            let lines = || {
                req_headers
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes())
            };
            let value: Vec<u8> = match name.as_str() {
                "cookie" => policy::cookie_key(req_headers, auth_cookies).unwrap_or_default(),
                // a credential keys exactly (a security rule, never normalised)
                "authorization" => lines().collect::<Vec<_>>().join(&b", "[..]),
                "accept-encoding" => encoding::accept_encoding_key(req_headers),
                "accept-language" => preference_key(lines()),
                _ => list_key(lines()),
            };
            // The name is part of the hash, so "absent" and "empty" stay distinct from other
            // fields.
            builder.add_owned_name_value(name.clone(), value);
        }
        builder.finalize()
    }
}

/// A list field's members with the whitespace around them removed, in order (`a,b` for
/// `a ,  b`). Bytes, not `str`: obs-text keys exactly.
fn list_key<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let members: Vec<&[u8]> = lines
        .flat_map(|line| line.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    members.join(&b","[..])
}

/// An `Accept-Language` value reduced to what it means: members lower-cased,
/// without whitespace, their quality values in one notation (`q=1` omitted), sorted by quality
/// (highest first) and then by name, duplicates and empty members dropped. `en-US, fr;q=0.5`
/// and `fr; Q=0.50,EN-us` key alike.
fn preference_key<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut members: Vec<(u16, String)> = lines
        .flat_map(|line| line.split(|b| *b == b','))
        .filter_map(|member| {
            let member = String::from_utf8_lossy(member).to_ascii_lowercase();
            let mut parts = member
                .split(';')
                .map(|p| p.split_whitespace().collect::<String>());
            let name = parts.next().filter(|n| !n.is_empty())?;
            let mut quality = 1000;
            let mut rest = String::new();
            for param in parts.filter(|p| !p.is_empty()) {
                match param.strip_prefix("q=").and_then(qvalue) {
                    Some(q) => quality = q,
                    None => {
                        rest.push(';');
                        rest.push_str(&param);
                    }
                }
            }
            let q = if quality == 1000 {
                String::new()
            } else {
                format!(";q={}", f64::from(quality) / 1000.0)
            };
            Some((quality, format!("{name}{rest}{q}")))
        })
        .collect();
    members.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    members.dedup();
    members
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// A quality value (RFC 9110 §12.4.2) in thousandths; `None` when invalid.
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Keys a fill's `meta` to the variant of the request fields `req`, as pingora's
/// `update_variance` does for a miss of the primary key (the variance goes into the meta only;
/// the fill is stored in the primary slot).
pub fn key_fill(
    meta: &mut pingora_cache::CacheMeta,
    req: &HeaderMap,
    opts: &policy::PolicyOptions,
) {
    VaryFields::of(meta.headers(), &opts.targeted_fields).key_fill(meta, req, &opts.auth_cookies);
}

/// The variance of `req` for the stored response `resp_headers`.
pub fn variance(
    resp_headers: &HeaderMap,
    req_headers: &HeaderMap,
    auth_cookies: &[String],
    targeted: &[HeaderName],
) -> Option<HashBinary> {
    VaryFields::of(resp_headers, targeted).variance(req_headers, auth_cookies)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::header_map as h;

    fn targeted() -> Vec<HeaderName> {
        vec![HeaderName::from_static("cdn-cache-control")]
    }

    fn v(resp: &HeaderMap, req: &HeaderMap, cookies: &[String]) -> Option<HashBinary> {
        variance(resp, req, cookies, &targeted())
    }

    #[test]
    fn per_credential_variants() {
        let resp = h(&[("vary", "Authorization, Cookie")]);
        let cookies = vec!["session".to_string()];
        let a = v(&resp, &h(&[("authorization", "Bearer a")]), &cookies);
        let b = v(&resp, &h(&[("authorization", "Bearer b")]), &cookies);
        let none = v(&resp, &h(&[]), &cookies);
        assert!(a.is_some());
        assert_ne!(a, b);
        assert_ne!(a, none);
        let c1 = v(&resp, &h(&[("cookie", "theme=1; session=s1")]), &cookies);
        let c2 = v(&resp, &h(&[("cookie", "session=s1; other=2")]), &cookies);
        let c3 = v(&resp, &h(&[("cookie", "session=s2")]), &cookies);
        assert_eq!(c1, c2);
        assert_ne!(c1, c3);
        // without an auth cookie the whole Cookie header keys the variant (fail closed)
        let t1 = v(&resp, &h(&[("cookie", "theme=1")]), &cookies);
        assert_ne!(t1, none);
        assert_ne!(t1, v(&resp, &h(&[("cookie", "theme=2")]), &cookies));
        assert_eq!(t1, v(&resp, &h(&[("cookie", " theme=1 ")]), &cookies));
    }

    #[test]
    fn unshared_responses_are_keyed_by_credential_without_vary() {
        let private = h(&[("cache-control", "max-age=60")]);
        let alice = h(&[("authorization", "Bearer alice")]);
        let bob = h(&[("authorization", "Bearer bob")]);
        assert!(!VaryFields::of(&private, &targeted()).is_empty());
        assert_ne!(v(&private, &alice, &[]), v(&private, &bob, &[]));
        let ca = h(&[("cookie", "sid=a")]);
        let cb = h(&[("cookie", "sid=b")]);
        assert_ne!(v(&private, &ca, &[]), v(&private, &cb, &[]));
        // explicitly shared: one entry for everybody
        for shared in [
            h(&[("cache-control", "public, max-age=60")]),
            h(&[("cache-control", "s-maxage=60")]),
            h(&[("cdn-cache-control", "public, max-age=60")]),
        ] {
            assert!(VaryFields::of(&shared, &targeted()).is_empty());
            assert!(v(&shared, &alice, &[]).is_none());
        }
    }

    #[test]
    fn whitespace_case_order_and_quality_values_are_normalised() {
        let resp = h(&[
            ("vary", "accept-language, accept-encoding, x-list"),
            ("cache-control", "public"),
        ]);
        let key = |headers: &[(&str, &str)]| v(&resp, &h(headers), &[]);
        assert_eq!(
            key(&[("accept-language", "en-US, fr;q=0.5"), ("x-list", "a, b")]),
            key(&[
                ("accept-language", "fr; Q=0.50,EN-us"),
                ("x-list", " a ,b ")
            ])
        );
        assert_eq!(
            key(&[("accept-encoding", "gzip, br")]),
            key(&[("accept-encoding", "BR,gzip;q=1.000")])
        );
        // two lines are one list
        assert_eq!(
            key(&[("accept-language", "en, fr")]),
            v(
                &resp,
                &{
                    let mut m = h(&[("accept-language", "fr")]);
                    m.append("accept-language", "en".parse().unwrap());
                    m
                },
                &[]
            )
        );
        // what differs in meaning still differs
        assert_ne!(
            key(&[("accept-language", "en;q=0.5, fr")]),
            key(&[("accept-language", "en, fr;q=0.5")])
        );
        assert_ne!(key(&[("x-list", "a, b")]), key(&[("x-list", "b, a")]));
        assert_ne!(key(&[("x-list", "A")]), key(&[("x-list", "a")]));
        // a credential is keyed exactly
        let private = h(&[("vary", "authorization")]);
        assert_ne!(
            v(&private, &h(&[("authorization", "Bearer a")]), &[]),
            v(&private, &h(&[("authorization", "Bearer  a")]), &[])
        );
    }

    #[test]
    fn other_vary_fields() {
        let resp = h(&[("vary", "accept-language"), ("cache-control", "public")]);
        let en = v(&resp, &h(&[("accept-language", "en")]), &[]);
        let fr = v(&resp, &h(&[("accept-language", "fr")]), &[]);
        assert_ne!(en, fr);
        // credentials do not split an explicitly shared response
        assert_eq!(
            en,
            v(
                &resp,
                &h(&[("accept-language", "en"), ("authorization", "x")]),
                &[]
            )
        );
    }
}
