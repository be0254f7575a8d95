//! Secondary indexes over the store, so purges by URL, path, prefix or group touch only the
//! entries concerned: primary → variants, path → primaries, group → entries.

use super::entry::Entry;
use super::key::UrlKey;
use super::{HashMap, HashSet};
use pingora_cache::key::HashBinary;

#[derive(Debug, Default)]
struct Primary {
    url: Option<UrlKey>,
    variants: HashSet<HashBinary>,
}

/// primary → variants, path → primaries, group → entries.
///
/// The maps keyed by digests hash with the cache layer's fast hasher; those keyed by text a
/// client or an origin chooses (paths, groups) keep std's SipHash, whose collision resistance
/// does not rest on the attacker not knowing the hash function.
#[derive(Debug, Default)]
pub struct Index {
    primaries: HashMap<HashBinary, Primary>,
    paths: std::collections::HashMap<String, HashSet<HashBinary>>,
    groups: std::collections::HashMap<String, HashSet<HashBinary>>,
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

    #[cfg(test)]
    pub fn primary_count(&self) -> usize {
        self.primaries.len()
    }
}
