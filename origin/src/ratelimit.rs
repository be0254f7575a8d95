//! In-memory fixed-window rate limits (origin-api.md §2.7), keyed on the user id for authenticated
//! routes and on the client address otherwise.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// `N per [M] second|minute|hour|day` (also `N/minute`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSpec {
    pub limit: u32,
    pub window: Duration,
    /// The text shown in a 429, normalised like flask-limiter: `10 per 1 minute`.
    pub display: String,
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a rate like \"60 per minute\"");
        let s = s.trim().to_ascii_lowercase();
        let (count, rest) = if let Some((c, r)) = s.split_once(" per ") {
            (c, r)
        } else if let Some((c, r)) = s.split_once('/') {
            (c, r)
        } else {
            return Err(bad());
        };
        let limit: u32 = count.trim().parse().map_err(|_| bad())?;
        let mut words = rest.split_whitespace();
        let first = words.next().ok_or_else(bad)?;
        let (multiple, unit) = match first.parse::<u64>() {
            Ok(n) => (n, words.next().ok_or_else(bad)?),
            Err(_) => (1, first),
        };
        let unit_secs = match unit.trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3_600,
            "day" => 86_400,
            _ => return Err(bad()),
        };
        if limit == 0 || multiple == 0 || words.next().is_some() {
            return Err(bad());
        }
        let unit_name = match unit_secs {
            1 => "second",
            60 => "minute",
            3_600 => "hour",
            _ => "day",
        };
        Ok(RateSpec {
            limit,
            window: Duration::from_secs(multiple * unit_secs),
            display: format!("{limit} per {multiple} {unit_name}"),
        })
    }
}

/// (route group, client key).
type WindowKey = (&'static str, String);

/// One counter per (route group, client key) and window.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<WindowKey, (Instant, u32)>>,
}

impl RateLimiter {
    /// Counts one request; `false` when the window's limit is already used up.
    pub fn check(&self, group: &'static str, key: &str, spec: &RateSpec) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock();
        if windows.len() > 100_000 {
            windows
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(86_400));
        }
        let entry = windows.entry((group, key.to_string())).or_insert((now, 0));
        if now.duration_since(entry.0) >= spec.window {
            *entry = (now, 0);
        }
        if entry.1 >= spec.limit {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let r: RateSpec = "60 per minute".parse().unwrap();
        assert_eq!((r.limit, r.window.as_secs()), (60, 60));
        assert_eq!(r.display, "60 per 1 minute");
        let r: RateSpec = "5/2 hours".parse().unwrap();
        assert_eq!(r.window.as_secs(), 7_200);
        assert!("x per minute".parse::<RateSpec>().is_err());
        assert!("5 per fortnight".parse::<RateSpec>().is_err());
    }

    #[test]
    fn fixed_window_counts_per_key() {
        let limiter = RateLimiter::default();
        let spec: RateSpec = "2 per minute".parse().unwrap();
        assert!(limiter.check("login", "a", &spec));
        assert!(limiter.check("login", "a", &spec));
        assert!(!limiter.check("login", "a", &spec));
        assert!(limiter.check("login", "b", &spec));
        assert!(limiter.check("register", "a", &spec));
    }
}
