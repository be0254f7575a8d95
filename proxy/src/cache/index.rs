//! Secondary indexes over the store, so purges by URL, path, prefix or group touch only the
//! entries concerned: primary → variants, path → primaries, group → entries. Also the purge
//! tombstones that stop fills which started before an invalidation (the purge-vs-fill race).

use super::storage::Entry;
use crate::proxy::key::UrlKey;
use pingora_cache::key::HashBinary;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Primary {
    url: Option<UrlKey>,
    variants: HashSet<HashBinary>,
}

/// primary → variants, path → primaries, group → entries.
#[derive(Debug, Default)]
pub struct Index {
    primaries: HashMap<HashBinary, Primary>,
    paths: HashMap<String, HashSet<HashBinary>>,
    groups: HashMap<String, HashSet<HashBinary>>,
}

impl Index {
    /// Records a stored entry under `combined` (its storage key).
    pub fn add(&mut self, combined: HashBinary, entry: &Entry) {
        let p = self.primaries.entry(entry.primary).or_default();
        p.url = Some(entry.url.clone());
        p.variants.insert(combined);
        self.paths
            .entry(entry.url.path.clone())
            .or_default()
            .insert(entry.primary);
        for g in &entry.groups {
            self.groups.entry(g.clone()).or_default().insert(combined);
        }
    }

    /// Forgets an entry that left the store.
    pub fn remove(&mut self, combined: HashBinary, entry: &Entry) {
        if let Some(p) = self.primaries.get_mut(&entry.primary) {
            p.variants.remove(&combined);
            if p.variants.is_empty() {
                self.primaries.remove(&entry.primary);
                if let Some(set) = self.paths.get_mut(&entry.url.path) {
                    set.remove(&entry.primary);
                    if set.is_empty() {
                        self.paths.remove(&entry.url.path);
                    }
                }
            }
        }
        for g in &entry.groups {
            if let Some(set) = self.groups.get_mut(g) {
                set.remove(&combined);
                if set.is_empty() {
                    self.groups.remove(g);
                }
            }
        }
    }

    /// Storage keys of every variant of a primary.
    pub fn variants(&self, primary: &HashBinary) -> Vec<HashBinary> {
        self.primaries
            .get(primary)
            .map(|p| p.variants.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Storage keys of every variant stored for a path on any host.
    pub fn keys_for_path(&self, path: &str) -> Vec<HashBinary> {
        self.paths
            .get(path)
            .into_iter()
            .flatten()
            .flat_map(|p| self.variants(p))
            .collect()
    }

    /// Storage keys of every variant whose path starts with `prefix` (an admin operation: scans
    /// the distinct paths).
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<HashBinary> {
        self.paths
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .flat_map(|(_, s)| s.iter())
            .flat_map(|p| self.variants(p))
            .collect()
    }

    /// Storage keys of the entries in a group.
    pub fn group_members(&self, group: &str) -> Vec<HashBinary> {
        self.groups
            .get(group)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn clear(&mut self) {
        *self = Index::default();
    }

    pub fn primary_count(&self) -> usize {
        self.primaries.len()
    }
}

/// What an invalidation recorded, so fills that started earlier are not stored.
#[derive(Debug)]
pub struct Tombstones {
    urls: HashMap<HashBinary, Instant>,
    paths: HashMap<String, Instant>,
    /// `host\ngroup`; an empty host means every host.
    groups: HashMap<String, Instant>,
    prefixes: Vec<(String, Instant)>,
    /// Purge-all time, and the floor raised when tombstones had to be dropped early.
    floor: Option<Instant>,
    retention: Duration,
    max_len: usize,
}

/// The key of a group tombstone.
pub fn group_tombstone_key(host: Option<&str>, group: &str) -> String {
    format!("{}\n{group}", host.unwrap_or(""))
}

impl Tombstones {
    pub fn new(retention: Duration, max_len: usize) -> Self {
        Tombstones {
            urls: HashMap::new(),
            paths: HashMap::new(),
            groups: HashMap::new(),
            prefixes: Vec::new(),
            floor: None,
            retention,
            max_len,
        }
    }

    pub fn url(&mut self, primary: HashBinary, at: Instant) {
        self.urls.insert(primary, at);
        self.bound(at);
    }

    pub fn path(&mut self, path: &str, at: Instant) {
        self.paths.insert(path.to_string(), at);
        self.bound(at);
    }

    pub fn group(&mut self, host: Option<&str>, group: &str, at: Instant) {
        self.groups.insert(group_tombstone_key(host, group), at);
        self.bound(at);
    }

    pub fn prefix(&mut self, prefix: &str, at: Instant) {
        // every commit scans this list: keep only the ones that can still matter
        let retention = self.retention;
        self.prefixes
            .retain(|(_, t)| at.saturating_duration_since(*t) < retention);
        self.prefixes.push((prefix.to_string(), at));
        self.bound(at);
    }

    pub fn all(&mut self, at: Instant) {
        self.raise_floor(at);
        self.urls.clear();
        self.paths.clear();
        self.groups.clear();
        self.prefixes.clear();
    }

    /// Whether a fill that started at `started` may be stored.
    pub fn allows(
        &self,
        started: Instant,
        primary: &HashBinary,
        url: &UrlKey,
        groups: &[String],
    ) -> bool {
        let after = |t: Option<&Instant>| t.is_none_or(|t| started > *t);
        if self.floor.is_some_and(|f| started <= f) {
            return false;
        }
        if !after(self.urls.get(primary)) || !after(self.paths.get(&url.path)) {
            return false;
        }
        if self
            .prefixes
            .iter()
            .any(|(p, t)| started <= *t && url.path.starts_with(p.as_str()))
        {
            return false;
        }
        groups.iter().all(|g| {
            after(self.groups.get(&group_tombstone_key(Some(&url.host), g)))
                && after(self.groups.get(&group_tombstone_key(None, g)))
        })
    }

    fn raise_floor(&mut self, at: Instant) {
        self.floor = Some(self.floor.map_or(at, |f| f.max(at)));
    }

    /// Drops tombstones older than the retention; if still too many, drops all of them and
    /// raises the floor (when in doubt, a fill is dropped).
    fn bound(&mut self, now: Instant) {
        let len = self.urls.len() + self.paths.len() + self.groups.len() + self.prefixes.len();
        if len <= self.max_len {
            return;
        }
        let keep = |t: &Instant| now.saturating_duration_since(*t) < self.retention;
        self.urls.retain(|_, t| keep(t));
        self.paths.retain(|_, t| keep(t));
        self.groups.retain(|_, t| keep(t));
        self.prefixes.retain(|(_, t)| keep(t));
        let len = self.urls.len() + self.paths.len() + self.groups.len() + self.prefixes.len();
        if len > self.max_len {
            self.all(now);
        }
    }

    pub fn len(&self) -> usize {
        self.urls.len() + self.paths.len() + self.groups.len() + self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_stop_older_fills_only() {
        let mut t = Tombstones::new(Duration::from_secs(60), 100);
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
        let mut t = Tombstones::new(Duration::from_secs(60), 3);
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        for i in 0..5 {
            let u = UrlKey::new("h", &format!("/{i}"));
            t.url(u.primary_hash(), Instant::now());
        }
        assert!(t.len() <= 3);
        let u = UrlKey::new("h", "/unrelated");
        assert!(!t.allows(start, &u.primary_hash(), &u, &[]));
    }
}
