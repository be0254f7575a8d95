//! Purge tombstones: what an invalidation recorded, so a fill that started before it (and would
//! store what the invalidation just removed) is not stored afterwards: the purge-vs-fill race.

use super::key::UrlKey;
use super::{HashMap, MapHasher};
use pingora_cache::key::HashBinary;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a tombstone covers. Paths and groups are kept as keyed 64-bit hashes, not as the strings
/// a client or origin sent: every record costs the same few bytes, whatever the input's length.
/// A collision can only make a fill be dropped (the safe direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tomb {
    Url(HashBinary),
    Path(u64),
    /// `(host or every host, group)`.
    Group(u64),
}

/// Bytes one record costs: the map slot (key, time, hash overhead) and the age-queue slot.
const TOMB_BYTES: usize = 96;
/// Per-prefix overhead on top of the prefix's length.
const PREFIX_BYTES: usize = 64;

/// What an invalidation recorded, so fills that started earlier are not stored.
///
/// Bounded twice: records older than the retention (longer than any fill may take) are pruned on
/// every insert, oldest first, and the total is capped at a byte budget. When the budget is
/// exceeded all records are dropped and the floor is raised to now: every fill that started
/// earlier is refused (when in doubt, a fill is dropped).
#[derive(Debug)]
pub struct Tombstones {
    latest: HashMap<Tomb, Instant>,
    /// Insertion order (times never decrease), for pruning by age.
    order: VecDeque<(Instant, Tomb)>,
    prefixes: Vec<(String, Instant)>,
    prefix_bytes: usize,
    /// Purge-all time, and the floor raised when tombstones had to be dropped early.
    floor: Option<Instant>,
    retention: Duration,
    max_bytes: usize,
    hasher: MapHasher,
}

impl Tombstones {
    pub fn new(retention: Duration, max_bytes: usize) -> Self {
        Tombstones {
            latest: HashMap::default(),
            order: VecDeque::new(),
            prefixes: Vec::new(),
            prefix_bytes: 0,
            floor: None,
            retention,
            max_bytes,
            hasher: Default::default(),
        }
    }

    fn hash(&self, parts: &[&str]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(parts)
    }

    fn path_tomb(&self, path: &str) -> Tomb {
        Tomb::Path(self.hash(&["path", path]))
    }

    fn group_tomb(&self, host: Option<&str>, group: &str) -> Tomb {
        Tomb::Group(self.hash(&["group", host.unwrap_or(""), group]))
    }

    pub fn url(&mut self, primary: HashBinary, at: Instant) {
        self.insert(Tomb::Url(primary), at);
    }

    pub fn path(&mut self, path: &str, at: Instant) {
        let t = self.path_tomb(path);
        self.insert(t, at);
    }

    pub fn group(&mut self, host: Option<&str>, group: &str, at: Instant) {
        let t = self.group_tomb(host, group);
        self.insert(t, at);
    }

    pub fn prefix(&mut self, prefix: &str, at: Instant) {
        self.prune(at);
        self.prefix_bytes += prefix.len() + PREFIX_BYTES;
        self.prefixes.push((prefix.to_string(), at));
        self.enforce_budget(at);
    }

    pub fn all(&mut self, at: Instant) {
        self.raise_floor(at);
        self.latest.clear();
        self.order.clear();
        self.prefixes.clear();
        self.prefix_bytes = 0;
    }

    fn insert(&mut self, tomb: Tomb, at: Instant) {
        self.prune(at);
        self.latest.insert(tomb, at);
        self.order.push_back((at, tomb));
        self.enforce_budget(at);
    }

    /// Drops the records that no fill can still need.
    fn prune(&mut self, now: Instant) {
        let expired = |t: &Instant| now.saturating_duration_since(*t) >= self.retention;
        while let Some((t, tomb)) = self.order.front().copied() {
            if !expired(&t) {
                break;
            }
            self.order.pop_front();
            // a later record of the same key keeps it alive
            if self.latest.get(&tomb) == Some(&t) {
                self.latest.remove(&tomb);
            }
        }
        if self.prefixes.first().is_some_and(|(_, t)| expired(t)) {
            self.prefixes.retain(|(_, t)| !expired(t));
            self.prefix_bytes = self
                .prefixes
                .iter()
                .map(|(p, _)| p.len() + PREFIX_BYTES)
                .sum();
        }
    }

    fn enforce_budget(&mut self, now: Instant) {
        if self.bytes() > self.max_bytes {
            self.all(now);
        }
    }

    /// Whether a fill that started at `started` may be stored.
    pub fn allows(
        &self,
        started: Instant,
        primary: &HashBinary,
        url: &UrlKey,
        groups: &[String],
    ) -> bool {
        let after = |tomb: Tomb| self.latest.get(&tomb).is_none_or(|t| started > *t);
        if self.floor.is_some_and(|f| started <= f) {
            return false;
        }
        if !after(Tomb::Url(*primary)) || !after(self.path_tomb(&url.path)) {
            return false;
        }
        if self
            .prefixes
            .iter()
            .any(|(p, t)| started <= *t && url.path.starts_with(p.as_str()))
        {
            return false;
        }
        groups
            .iter()
            .all(|g| after(self.group_tomb(Some(&url.host), g)) && after(self.group_tomb(None, g)))
    }

    fn raise_floor(&mut self, at: Instant) {
        self.floor = Some(self.floor.map_or(at, |f| f.max(at)));
    }

    /// Bytes the records take (the figure bounded by the budget).
    pub fn bytes(&self) -> usize {
        self.order.len() * TOMB_BYTES + self.prefix_bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.latest.len() + self.prefixes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_stop_older_fills_only() {
        let mut t = Tombstones::new(Duration::from_secs(60), 1 << 20);
        let url = UrlKey::new("h", "/a");
        let p = url.primary_hash();
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        t.url(p, Instant::now());
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        assert!(!t.allows(before, &p, &url, &[]));
        assert!(t.allows(after, &p, &url, &[]));
        let other = UrlKey::new("h", "/b");
        assert!(t.allows(before, &other.primary_hash(), &other, &[]));

        t.group(Some("h"), "g", after);
        assert!(!t.allows(after, &other.primary_hash(), &other, &["g".into()]));
        let other_host = UrlKey::new("h2", "/b");
        assert!(t.allows(
            after,
            &other_host.primary_hash(),
            &other_host,
            &["g".into()]
        ));
        t.group(None, "g2", after);
        assert!(!t.allows(
            after,
            &other_host.primary_hash(),
            &other_host,
            &["g2".into()]
        ));

        t.prefix("/api/", after);
        let api = UrlKey::new("h", "/api/x");
        assert!(!t.allows(after, &api.primary_hash(), &api, &[]));
    }

    #[test]
    fn overflow_raises_floor() {
        let mut t = Tombstones::new(Duration::from_secs(60), 3 * TOMB_BYTES);
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        for i in 0..5 {
            let u = UrlKey::new("h", &format!("/{i}"));
            t.url(u.primary_hash(), Instant::now());
        }
        assert!(t.bytes() <= 3 * TOMB_BYTES);
        let u = UrlKey::new("h", "/unrelated");
        assert!(!t.allows(start, &u.primary_hash(), &u, &[]));
    }

    #[test]
    fn records_cost_the_same_whatever_their_length() {
        let mut t = Tombstones::new(Duration::from_secs(60), 1 << 20);
        let now = Instant::now();
        t.group(Some(&"h".repeat(9000)), &"g".repeat(100_000), now);
        t.path(&"/p".repeat(50_000), now);
        assert_eq!(t.bytes(), 2 * TOMB_BYTES);
    }

    #[test]
    fn old_records_are_pruned_on_insert() {
        let retention = Duration::from_millis(20);
        let mut t = Tombstones::new(retention, 1 << 20);
        let t0 = Instant::now();
        for i in 0..100 {
            t.group(None, &format!("g{i}"), t0);
        }
        t.prefix("/old", t0);
        assert_eq!(t.len(), 101);
        let later = t0 + retention * 2;
        t.group(None, "fresh", later);
        assert_eq!(t.len(), 1);
        assert_eq!(t.bytes(), TOMB_BYTES);
        // a key purged again keeps its latest record
        let mut t = Tombstones::new(retention, 1 << 20);
        t.group(None, "g", t0);
        t.group(None, "g", t0 + retention);
        t.group(None, "other", t0 + retention + Duration::from_millis(1));
        let u = UrlKey::new("h", "/x");
        assert!(!t.allows(t0 + retention, &u.primary_hash(), &u, &["g".into()]));
    }
}
