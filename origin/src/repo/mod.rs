//! Repository functions: one named statement each, taking a [`Db`](crate::db::Db) over a client or
//! a transaction. Every write to a user's conversations or comparisons bumps `users.cache_version`
//! in the same statement (a data-modifying CTE), so list ETags change exactly when lists do.

pub mod api_keys;
pub mod comparisons;
pub mod conversations;
pub mod outbox;
pub mod users;

use chrono::{DateTime, Utc};

/// UTC ISO-8601 with exactly 6 fractional digits and a `Z` (origin-api.md §2.4).
pub fn fmt_ts(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Like [`fmt_ts`] without the zone suffix (the markdown export's "Last Updated").
pub fn fmt_ts_naive(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Escapes `\`, `%` and `_` and wraps the term for a substring `ILIKE`.
pub fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_always_have_six_digits() {
        let t = Utc.with_ymd_and_hms(2025, 11, 25, 3, 47, 15).unwrap();
        assert_eq!(fmt_ts(&t), "2025-11-25T03:47:15.000000Z");
        assert_eq!(fmt_ts_naive(&t), "2025-11-25T03:47:15.000000");
    }

    #[test]
    fn like_escaping() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
