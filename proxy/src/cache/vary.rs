//! `Vary` support: the variance hash of a request for the fields a stored response names.
//! `Cookie` is reduced to the authentication cookies so unrelated cookies do not split (or
//! defeat) per-user entries; `Authorization` is taken as is, so a different credential can
//! only miss.

use super::policy::{normalised_cookie, vary_names};
use http::HeaderMap;
use pingora_cache::key::HashBinary;
use pingora_cache::VarianceBuilder;

/// The variance of `req` for the `Vary` of `resp_headers`; `None` when the response does not vary.
pub fn variance(
    resp_headers: &HeaderMap,
    req_headers: &HeaderMap,
    auth_cookies: &[String],
) -> Option<HashBinary> {
    let mut builder = VarianceBuilder::new();
    let mut names: Vec<String> = vary_names(resp_headers).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let value: Vec<u8> = if name == "cookie" {
            normalised_cookie(req_headers, auth_cookies)
                .unwrap_or_default()
                .into_bytes()
        } else {
            let values: Vec<&[u8]> = req_headers
                .get_all(name.as_str())
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            values.join(&b", "[..])
        };
        // The name is part of the hash, so "absent" and "empty" stay distinct from other fields.
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::header_map as h;

    #[test]
    fn per_credential_variants() {
        let resp = h(&[("vary", "Authorization, Cookie")]);
        let cookies = vec!["session".to_string()];
        let a = variance(&resp, &h(&[("authorization", "Bearer a")]), &cookies);
        let b = variance(&resp, &h(&[("authorization", "Bearer b")]), &cookies);
        let none = variance(&resp, &h(&[]), &cookies);
        assert!(a.is_some());
        assert_ne!(a, b);
        assert_ne!(a, none);
        let c1 = variance(&resp, &h(&[("cookie", "theme=1; session=s1")]), &cookies);
        let c2 = variance(&resp, &h(&[("cookie", "session=s1; other=2")]), &cookies);
        let c3 = variance(&resp, &h(&[("cookie", "session=s2")]), &cookies);
        assert_eq!(c1, c2);
        assert_ne!(c1, c3);
        // unrelated cookies alone equal no cookie at all
        assert_eq!(
            variance(&resp, &h(&[("cookie", "theme=1")]), &cookies),
            none
        );
    }

    #[test]
    fn no_vary_no_variance() {
        assert!(variance(&h(&[]), &h(&[("authorization", "x")]), &[]).is_none());
        let resp = h(&[("vary", "accept-language")]);
        let en = variance(&resp, &h(&[("accept-language", "en")]), &[]);
        let fr = variance(&resp, &h(&[("accept-language", "fr")]), &[]);
        assert_ne!(en, fr);
    }
}
