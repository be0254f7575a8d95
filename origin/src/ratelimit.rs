//! In-memory fixed-window rate limits (origin-api.md §2.7), keyed on the user id for authenticated
//! routes and on the client address otherwise (IPv6 clients by their /64), plus a per-username
//! limit on login attempts (password guessing spread over many addresses). Memory is bounded:
//! see [`RateLimiter`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
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

/// How often expired windows are swept even when the table is not full.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One key's fixed window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    length: Duration,
}

impl Window {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) >= self.length
    }
}

#[derive(Debug)]
struct Windows {
    map: HashMap<WindowKey, Window>,
    last_sweep: Instant,
}

impl Windows {
    /// Drops every window that has passed (its key would start afresh anyway).
    fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, w| !w.expired(now));
        self.last_sweep = now;
    }

    /// Drops at least `n` windows, the oldest first (the ones closest to their end).
    fn evict_oldest(&mut self, n: usize) {
        let n = n.clamp(1, self.map.len().max(1));
        let mut starts: Vec<Instant> = self.map.values().map(|w| w.start).collect();
        if starts.is_empty() {
            return;
        }
        let (_, cutoff, _) = starts.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        self.map.retain(|_, w| w.start > cutoff);
    }
}

/// Fixed-window counters per (route group, client key), bounded in memory: windows that have
/// passed are swept (every minute, and whenever the table is full), and at most `max_keys` keys
/// are kept: when a new key finds the table full of live windows, the oldest tenth is evicted
/// (a flood of distinct keys can only reset the windows closest to their end anyway).
#[derive(Debug)]
pub struct RateLimiter {
    max_keys: usize,
    windows: Mutex<Windows>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(DEFAULT_MAX_KEYS)
    }
}

/// Default of `rate_limit.max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl RateLimiter {
    pub fn new(max_keys: usize) -> RateLimiter {
        RateLimiter {
            max_keys: max_keys.max(1),
            windows: Mutex::new(Windows {
                map: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.windows.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts one request; `false` when the window's limit is already used up.
    pub fn check(&self, group: &'static str, key: &str, spec: &RateSpec) -> bool {
        self.check_at(Instant::now(), group, key, spec)
    }

    fn check_at(&self, now: Instant, group: &'static str, key: &str, spec: &RateSpec) -> bool {
        let mut windows = self.windows.lock();
        if now.saturating_duration_since(windows.last_sweep) >= SWEEP_EVERY {
            windows.sweep(now);
        }
        let key = (group, key.to_string());
        if !windows.map.contains_key(&key) && windows.map.len() >= self.max_keys {
            windows.sweep(now);
            if windows.map.len() >= self.max_keys {
                windows.evict_oldest(self.max_keys / 10 + 1);
            }
        }
        let fresh = Window {
            start: now,
            count: 0,
            length: spec.window,
        };
        let entry = windows.map.entry(key).or_insert(fresh);
        if entry.expired(now) {
            *entry = fresh;
        }
        if entry.count >= spec.limit {
            return false;
        }
        entry.count += 1;
        true
    }
}

/// The rate-limit key of a client address: an IPv4 address as is (also when IPv4-mapped), an
/// IPv6 address by its /64, the smallest block a single subscriber is usually given (keying the
/// full address would give one client 2^64 separate budgets).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("ip6:{prefix}/64")
            }
        },
    }
}

/// The per-username login key: the lower-cased name, cut to 64 characters (real usernames have
/// at most 50), so that a huge username in a request cannot grow the table's memory.
pub fn username_key(username: &str) -> String {
    let name: String = username.to_lowercase().chars().take(64).collect();
    format!("username:{name}")
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

    #[test]
    fn passed_windows_are_swept_and_restart() {
        let limiter = RateLimiter::new(1_000);
        let spec: RateSpec = "1 per minute".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(limiter.check_at(t0, "api", &format!("k{i}"), &spec));
        }
        assert!(!limiter.check_at(t0, "api", "k0", &spec));
        assert_eq!(limiter.len(), 100);
        // After the window (and the sweep interval) the old keys are gone, not just reset.
        let later = t0 + SWEEP_EVERY + Duration::from_secs(1);
        assert!(limiter.check_at(later, "api", "k0", &spec), "a new window");
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn the_key_count_is_capped_and_the_oldest_windows_go_first() {
        let limiter = RateLimiter::new(100);
        let spec: RateSpec = "1 per hour".parse().unwrap();
        let t0 = Instant::now();
        assert!(limiter.check_at(t0, "login", "oldest", &spec));
        for i in 0..10_000u32 {
            let t = t0 + Duration::from_millis(u64::from(i) + 1);
            assert!(limiter.check_at(t, "login", &format!("flood{i}"), &spec));
            assert!(limiter.len() <= 100, "{} keys", limiter.len());
        }
        // The newest keys are still limited; the oldest was evicted.
        let t = t0 + Duration::from_secs(11);
        assert!(!limiter.check_at(t, "login", "flood9999", &spec));
        assert!(limiter.check_at(t, "login", "oldest", &spec));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), "ip6:2001:db8:1:2::/64");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(client_key("10.1.2.3".parse().unwrap()), "ip:10.1.2.3");
        assert_eq!(
            client_key("::ffff:10.1.2.3".parse().unwrap()),
            "ip:10.1.2.3"
        );
    }

    #[test]
    fn username_keys_are_case_insensitive_and_bounded() {
        assert_eq!(username_key("Alice"), username_key("alice"));
        assert_eq!(
            username_key(&"x".repeat(10_000)).len(),
            "username:".len() + 64
        );
    }
}
