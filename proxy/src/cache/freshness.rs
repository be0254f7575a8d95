//! Freshness of a response as it arrives (RFC 9111 §4.2): its lifetime (explicit or heuristic)
//! and its current age.
//!
//! Hand-written rather than http-cache-semantics, which stores only a fixed list of statuses,
//! reads `Age: old, 0` as 0, parses only the IMF-fixdate `Expires` format and extends
//! `immutable` responses to a day of freshness.

use super::directives::Directives;
use http::{header, HeaderMap, HeaderValue};
use std::time::{Duration, SystemTime};

/// Statuses defined as heuristically cacheable (RFC 9110 §15.1).
const HEURISTIC_STATUSES: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// The fraction of the time since `Last-Modified` used as heuristic lifetime (RFC 9111 §4.2.2).
const HEURISTIC_FRACTION: f64 = 0.1;

/// Whether a status may get a heuristic freshness lifetime (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: u16) -> bool {
    HEURISTIC_STATUSES.contains(&status)
}

/// Statuses whose semantics this cache implements (RFC 9110 §15): a response with
/// `must-understand` is stored only with one of them (RFC 9111 §5.2.2.3). 206 and 304 are never
/// stored.
pub fn understood(status: u16) -> bool {
    matches!(status, 200..=205 | 300..=303 | 305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505)
}

/// An HTTP-date in one of the three formats of RFC 9110 §5.6.7 (IMF-fixdate, and the obsolete
/// RFC 850 and asctime formats); anything else (extra spaces, other zones) is `None`.
pub fn http_date(v: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(v.to_str().ok()?).ok()
}

/// The `Age` of a response: `Some(0)` when absent, `Some(n)` for exactly one field line holding
/// one non-negative integer, `None` otherwise (`old, 0`, `-1`, two lines...).
pub fn age_field(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::AGE).iter();
    let Some(first) = values.next() else {
        return Some(0);
    };
    if values.next().is_some() {
        return None;
    }
    let s = first.to_str().ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // a huge value is still a valid (very old) age
    Some(s.parse::<u64>().unwrap_or(u64::MAX / 4))
}

/// [`Freshness::source`] of the `Last-Modified` heuristic.
const HEURISTIC_SOURCE: &str = "heuristic (last-modified)";

/// A response's freshness when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime (RFC 9111 §4.2.1), 0 when there is none or it is invalid.
    pub lifetime: Duration,
    /// Current age (RFC 9111 §4.2.3).
    pub age: Duration,
    /// Whether the lifetime came from the heuristic.
    pub heuristic: bool,
    /// Where the lifetime comes from: `no-cache`, `s-maxage`, `max-age`, `expires`,
    /// `heuristic (last-modified)` or `none` (reported by the admin `/explain`).
    pub source: &'static str,
}

impl Freshness {
    /// Remaining freshness.
    pub fn ttl(&self) -> Duration {
        self.lifetime.saturating_sub(self.age)
    }

    /// Whether the response has an explicit lifetime (`s-maxage`, `max-age` or, unless a targeted
    /// field governs, `Expires`).
    pub fn explicit(dirs: &Directives, headers: &HeaderMap, targeted: bool) -> bool {
        dirs.has("s-maxage")
            || dirs.has("max-age")
            || (!targeted && headers.contains_key(header::EXPIRES))
    }

    /// The freshness of a response with `status` and `headers`, governed by `dirs` (`targeted`:
    /// a targeted field governs, so `Expires` is ignored), received at `now`.
    pub fn of(
        status: u16,
        headers: &HeaderMap,
        dirs: &Directives,
        targeted: bool,
        now: SystemTime,
    ) -> Freshness {
        let date = headers.get(header::DATE).and_then(http_date).unwrap_or(now);
        let apparent = now.duration_since(date).unwrap_or_default();
        let (lifetime, source) = if dirs.unqualified("no-cache") {
            // every use needs a validation first (the qualified form only concerns the fields it
            // names, which are not stored: see `policy::Stored::apply`)
            (Duration::ZERO, "no-cache")
        } else if let Some(s) = dirs.seconds("s-maxage") {
            (Duration::from_secs(s), "s-maxage")
        } else if let Some(s) = dirs.seconds("max-age") {
            (Duration::from_secs(s), "max-age")
        } else if !targeted && headers.contains_key(header::EXPIRES) {
            // several Expires lines, or a malformed one, mean already expired (§5.3)
            let mut all = headers.get_all(header::EXPIRES).iter();
            let lifetime = match (all.next().and_then(http_date), all.next()) {
                (Some(expires), None) => expires.duration_since(date).unwrap_or_default(),
                _ => Duration::ZERO,
            };
            (lifetime, "expires")
        } else if heuristically_cacheable(status) || dirs.has("public") {
            // `public` marks any status explicitly cacheable (RFC 9111 §4.2.2)
            let lifetime = headers
                .get(header::LAST_MODIFIED)
                .and_then(http_date)
                .and_then(|lm| date.duration_since(lm).ok())
                .map(|d| d.mul_f64(HEURISTIC_FRACTION))
                .map(|d| Duration::from_secs(d.as_secs()))
                .unwrap_or_default();
            (lifetime, HEURISTIC_SOURCE)
        } else {
            (Duration::ZERO, "none")
        };
        let heuristic = source == HEURISTIC_SOURCE;
        match age_field(headers) {
            Some(age) => Freshness {
                lifetime,
                age: apparent.max(Duration::from_secs(age)),
                heuristic,
                source,
            },
            // an invalid Age: treat the response as stale (RFC 9111 §5.1 lets a cache ignore the
            // field; failing towards a revalidation is the safe side)
            None => Freshness {
                lifetime: Duration::ZERO,
                age: apparent,
                heuristic,
                source: "invalid Age (treated as stale)",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::header_map as h;

    fn fresh(status: u16, headers: &[(&str, &str)], now: SystemTime) -> Freshness {
        let map = h(headers);
        Freshness::of(status, &map, &Directives::cache_control(&map), false, now)
    }

    fn date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    #[test]
    fn expires_formats() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let at =
            |expires: &str| fresh(200, &[("date", &date(now)), ("expires", expires)], now).ttl();
        let hour = Duration::from_secs(3600);
        assert_eq!(at("Sun, 06 Nov 1994 09:49:37 GMT"), hour);
        // the two obsolete formats
        assert_eq!(at("Sunday, 06-Nov-94 09:49:37 GMT"), hour);
        assert_eq!(at("Sun Nov  6 09:49:37 1994"), hour);
        // anything else is already expired
        for invalid in [
            "Sun, 06  Nov  1994 09:49:37 GMT",
            "Sun, 06 Nov 1994 09:49:37 UTC",
            "0",
            "Sun, 06-Nov-1994 09:49:37 GMT",
        ] {
            assert_eq!(at(invalid), Duration::ZERO, "{invalid}");
        }
        // two Expires lines: expired
        let two = fresh(
            200,
            &[
                ("expires", "Sun, 06 Nov 1994 09:49:37 GMT"),
                ("expires", "Sun, 06 Nov 1994 09:49:37 GMT"),
            ],
            now,
        );
        assert_eq!(two.ttl(), Duration::ZERO);
    }

    #[test]
    fn age_must_be_one_non_negative_integer() {
        let now = SystemTime::now();
        let ttl = |age: &[&str]| {
            let mut headers = vec![("cache-control", "max-age=3600")];
            headers.extend(age.iter().map(|a| ("age", *a)));
            fresh(200, &headers, now).ttl().as_secs()
        };
        assert_eq!(ttl(&[]), 3600);
        assert_eq!(ttl(&["600"]), 3000);
        for invalid in [&["old, 0"][..], &["-1"], &["7200.0"], &["0", "0"], &["abc"]] {
            assert_eq!(ttl(invalid), 0, "{invalid:?}");
        }
    }

    #[test]
    fn precedence_and_heuristics() {
        let now = SystemTime::now();
        let lm = date(now - Duration::from_secs(10_000));
        let f = fresh(200, &[("cache-control", "max-age=5, s-maxage=50")], now);
        assert_eq!(f.ttl().as_secs(), 50);
        let f = fresh(200, &[("last-modified", &lm)], now);
        assert!(f.heuristic);
        assert!((999..=1000).contains(&f.ttl().as_secs()), "{f:?}");
        // not heuristically cacheable: no lifetime without an explicit one
        assert_eq!(
            fresh(500, &[("last-modified", &lm)], now).ttl(),
            Duration::ZERO
        );
        assert_eq!(
            fresh(500, &[("cache-control", "max-age=30")], now)
                .ttl()
                .as_secs(),
            30
        );
        // unless `public` marks it explicitly cacheable (RFC 9111 §4.2.2), whatever its status
        let f = fresh(
            599,
            &[("last-modified", &lm), ("cache-control", "public")],
            now,
        );
        assert!(
            f.heuristic && (999..=1000).contains(&f.ttl().as_secs()),
            "{f:?}"
        );
        // no-cache: stale at once, whatever the lifetime
        assert_eq!(
            fresh(200, &[("cache-control", "No-Cache, max-age=60")], now).ttl(),
            Duration::ZERO
        );
        assert_eq!(
            fresh(200, &[("cache-control", "no-cache=\"a\", max-age=60")], now)
                .ttl()
                .as_secs(),
            60
        );
        // immutable never extends freshness
        let f = fresh(
            200,
            &[("cache-control", "immutable"), ("expires", "0")],
            now,
        );
        assert_eq!(f.ttl(), Duration::ZERO);
        // the apparent age from Date counts
        let old = date(now - Duration::from_secs(100));
        let f = fresh(
            200,
            &[("cache-control", "max-age=300"), ("date", &old)],
            now,
        );
        assert!((199..=200).contains(&f.ttl().as_secs()), "{f:?}");
    }

    #[test]
    fn understood_statuses() {
        assert!(understood(200) && understood(404) && understood(503));
        assert!(!understood(206) && !understood(304) && !understood(299) && !understood(555));
    }
}
