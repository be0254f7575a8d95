//! The bounded store on quick_cache, weighed in bytes (body, serialized meta and headers, key
//! strings, groups and a fixed overhead), with the indexes that let purges touch only what they
//! reach, the tombstones against the purge-vs-fill race, and the purge vocabulary ([`Scope`]).

use super::entry::{Entry, FillInfo, HitView, TargetedFields};
use super::first_fill::FirstFills;
use super::index::Index;
use super::inflight::InflightFill;
use super::key::UrlKey;
use super::tombstones::Tombstones;
use super::vary::VaryFields;
use super::{HashMap, MapHasher};
use bytes::Bytes;
use http::HeaderName;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use pingora_error::{Error, ErrorType, Result};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Sizing of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub capacity_bytes: u64,
    pub shards: usize,
    pub max_object_bytes: usize,
    /// Budget for the bodies of all fills in progress.
    pub max_inflight_fill_bytes: u64,
    /// How long tombstones must survive (longer than any fill).
    pub tombstone_retention: Duration,
    /// Byte budget of the tombstones.
    pub tombstone_max_bytes: usize,
    /// Targeted cache-control fields the proxy obeys, highest priority first.
    pub targeted_fields: Vec<HeaderName>,
    /// Stream fills to the requests waiting on them (pingora's partial writes, `cache::inflight`).
    pub stream_fills: bool,
}

impl StoreOptions {
    /// Small defaults for unit tests.
    #[cfg(test)]
    pub fn for_tests(capacity_bytes: u64, shards: usize) -> StoreOptions {
        StoreOptions {
            capacity_bytes,
            shards,
            max_object_bytes: (capacity_bytes / shards as u64 / 2) as usize,
            max_inflight_fill_bytes: capacity_bytes / 2,
            tombstone_retention: Duration::from_secs(60),
            tombstone_max_bytes: 1 << 20,
            targeted_fields: vec![
                HeaderName::from_static("llmselect-cache-control"),
                HeaderName::from_static("cdn-cache-control"),
            ],
            stream_fills: false,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct EntryWeighter;

impl Weighter<HashBinary, Arc<Entry>> for EntryWeighter {
    fn weight(&self, _key: &HashBinary, val: &Arc<Entry>) -> u64 {
        val.weight()
    }
}

/// Records evictions; the index is cleaned afterwards, outside the cache's shard lock.
/// Entries evicted since the last drain, with their storage keys.
type EvictedQueue = Arc<Mutex<Vec<(HashBinary, Arc<Entry>)>>>;

#[derive(Clone, Default)]
struct EvictionHook {
    evicted: EvictedQueue,
    count: Arc<AtomicU64>,
}

impl Lifecycle<HashBinary, Arc<Entry>> for EvictionHook {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), key: HashBinary, val: Arc<Entry>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.evicted.lock().push((key, val));
    }
}

/// Now in Unix milliseconds, at least 1 (0 means "not soft-purged").
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
        .max(1)
}

/// What a purge should reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every variant of one URL.
    Url(UrlKey),
    /// Every variant of a path on any host.
    Path(String),
    /// Every URL whose path starts with the prefix, on any host.
    Prefix(String),
    /// A group on one host (mutations) or on every host (`host: None`, admin and bus).
    Group {
        host: Option<String>,
        name: String,
    },
    All,
}

struct State {
    index: Index,
    tombstones: Tombstones,
}

/// The store. Build one per proxy instance and leak it (pingora wants `&'static`).
pub struct Store {
    entries: Cache<HashBinary, Arc<Entry>, EntryWeighter, MapHasher, EvictionHook>,
    state: Mutex<State>,
    hook: EvictionHook,
    max_object: usize,
    max_weight: u64,
    next_id: AtomicU64,
    reported_evictions: AtomicU64,
    inflight: AtomicU64,
    max_inflight: u64,
    fields: TargetedFields,
    stream_fills: bool,
    /// Fills in progress by storage key, readable while they arrive (when `stream_fills`).
    fills: Mutex<HashMap<HashBinary, Arc<InflightFill>>>,
    /// The last refusal to store each URL (for the admin `/explain`), bounded.
    refusals: Cache<HashBinary, Refused>,
    /// Cold keys whose first fill is under way (requests wait for it in the front).
    first_fills: Arc<FirstFills>,
}

/// Why the last response for a URL was not stored, and when.
#[derive(Debug, Clone)]
pub struct Refused {
    pub rule: &'static str,
    pub at: SystemTime,
}

/// URLs whose last refusal is remembered.
const REFUSALS_KEPT: usize = 4096;

impl Store {
    pub fn new(opts: StoreOptions) -> Result<Store> {
        // quick_cache halves the shard count until each shard expects 32 items: keep it explicit.
        let estimated = ((opts.capacity_bytes / 4096) as usize).clamp(32 * opts.shards, 1 << 22);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(estimated)
            .weight_capacity(opts.capacity_bytes)
            .shards(opts.shards)
            .build()
            .map_err(|e| {
                Error::explain(ErrorType::InternalError, format!("store options: {e:?}"))
            })?;
        let hook = EvictionHook::default();
        let entries =
            Cache::with_options(options, EntryWeighter, MapHasher::default(), hook.clone());
        // quick_cache silently refuses items heavier than a shard's hot section.
        let max_weight = (entries.shard_capacity() as f64 * 0.97) as u64;
        Ok(Store {
            entries,
            state: Mutex::new(State {
                index: Index::default(),
                tombstones: Tombstones::new(opts.tombstone_retention, opts.tombstone_max_bytes),
            }),
            hook,
            max_object: opts.max_object_bytes,
            max_weight,
            next_id: AtomicU64::new(1),
            reported_evictions: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            max_inflight: opts.max_inflight_fill_bytes,
            stream_fills: opts.stream_fills,
            fills: Mutex::new(HashMap::default()),
            fields: TargetedFields {
                own: super::policy::own_fields(&opts.targeted_fields),
                obeyed: opts.targeted_fields,
            },
            refusals: Cache::new(REFUSALS_KEPT),
            first_fills: Arc::default(),
        })
    }

    /// Reserves `n` bytes of the in-flight fill budget; `false` (nothing reserved) when that
    /// would exceed it.
    pub fn reserve_inflight(&self, n: u64) -> bool {
        let mut current = self.inflight.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(n);
            if next > self.max_inflight {
                return false;
            }
            match self.inflight.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Returns bytes reserved with [`Self::reserve_inflight`].
    pub fn release_inflight(&self, n: u64) {
        self.inflight.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes of fills in progress.
    pub fn inflight_bytes(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Bytes held by purge tombstones.
    pub fn tombstone_bytes(&self) -> usize {
        self.state.lock().tombstones.bytes()
    }

    /// Cold keys whose first fill is under way.
    pub fn first_fills(&self) -> &Arc<FirstFills> {
        &self.first_fills
    }

    /// The view a fast hit reads, decoded from a serialized meta.
    pub fn decode_view(&self, meta: &(Vec<u8>, Vec<u8>)) -> Option<Arc<HitView>> {
        HitView::decode(meta, &self.fields).map(Arc::new)
    }

    /// The view a fast hit reads, of a live meta (a fill's, just serialized).
    pub fn view_of(&self, meta: &CacheMeta) -> Arc<HitView> {
        Arc::new(HitView::of(meta, &self.fields))
    }

    /// The view of a fill's meta, its header taken out of `meta` (see [`HitView::of_parts`]).
    pub fn view_of_taken(&self, meta: &mut CacheMeta, vary: VaryFields) -> Arc<HitView> {
        let stored = super::entry::take_header(meta.response_header_mut());
        Arc::new(HitView::of_parts(stored, vary, meta, &self.fields.own))
    }

    /// Whether fills are streamed to the requests waiting on them.
    pub fn streams_fills(&self) -> bool {
        self.stream_fills
    }

    /// A new unique id (entries and fills share the sequence).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes a fill in progress under its storage key (replacing an older one).
    pub fn begin_fill(&self, combined: HashBinary, fill: Arc<InflightFill>) {
        self.fills.lock().insert(combined, fill);
    }

    /// Removes the fill `id` from the in-flight map (a newer fill of the key stays).
    pub fn end_fill(&self, combined: &HashBinary, id: u64) {
        let mut fills = self.fills.lock();
        if fills.get(combined).is_some_and(|f| f.id == id) {
            fills.remove(combined);
        }
    }

    /// The fill in progress under a storage key that a new reader may join: not failed, not
    /// passing through uncached, and not started before an invalidation that touches it (its
    /// commit would be refused).
    pub fn joinable_fill(&self, combined: &HashBinary) -> Option<Arc<InflightFill>> {
        let fill = self.fills.lock().get(combined).cloned()?;
        if !fill.joinable() {
            return None;
        }
        let info = &fill.info;
        let allowed = self.state.lock().tombstones.allows(
            info.started,
            &info.url.primary_hash(),
            &info.url,
            &info.groups,
        );
        allowed.then_some(fill)
    }

    /// Whether a fill is in progress under a storage key, in any state.
    pub fn filling(&self, combined: &HashBinary) -> bool {
        self.fills.lock().contains_key(combined)
    }

    /// The fill `id` under a storage key, whatever its state (the fetching request's own reader).
    pub fn own_fill(&self, combined: &HashBinary, id: u64) -> Option<Arc<InflightFill>> {
        self.fills
            .lock()
            .get(combined)
            .filter(|f| f.id == id)
            .cloned()
    }

    pub fn max_object_bytes(&self) -> usize {
        self.max_object
    }

    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }

    pub fn capacity(&self) -> u64 {
        self.entries.capacity()
    }

    pub fn evictions(&self) -> u64 {
        self.hook.count.load(Ordering::Relaxed)
    }

    /// Evictions since the previous call (what a counter metric must advance by).
    pub fn unreported_evictions(&self) -> u64 {
        let now = self.evictions();
        now.saturating_sub(self.reported_evictions.swap(now, Ordering::Relaxed))
    }

    /// Remembers why the response for `primary` was not stored.
    pub fn record_refusal(&self, primary: HashBinary, rule: &'static str) {
        self.refusals.insert(
            primary,
            Refused {
                rule,
                at: SystemTime::now(),
            },
        );
    }

    /// The last refusal to store `primary`, if remembered.
    pub fn refusal(&self, primary: &HashBinary) -> Option<Refused> {
        self.refusals.get(primary)
    }

    /// Every stored variant of a primary, with its storage key.
    pub fn variants_of(&self, primary: &HashBinary) -> Vec<(HashBinary, Arc<Entry>)> {
        let keys = self.state.lock().index.variants(primary);
        keys.into_iter()
            .filter_map(|k| self.entries.peek(&k).map(|e| (k, e)))
            .collect()
    }

    /// Whether an entry is committed under a storage key, fresh or not (not counted as a use).
    pub fn holds(&self, combined: &HashBinary) -> bool {
        self.entries.peek(combined).is_some()
    }

    /// The committed entry under a storage key.
    pub fn get(&self, combined: &HashBinary) -> Option<Arc<Entry>> {
        self.entries.get(combined)
    }

    /// [`Self::commit_decoded`], decoding `meta` here (tests).
    #[cfg(test)]
    pub fn commit(
        &self,
        combined: HashBinary,
        primary: HashBinary,
        meta: (Vec<u8>, Vec<u8>),
        body: Bytes,
        info: FillInfo,
    ) -> u64 {
        let view = self.decode_view(&meta);
        self.commit_decoded(combined, primary, meta, view, body, info)
    }

    /// Commits a finished fill unless an invalidation that touches it happened after it
    /// started. Returns the weight stored (0 when dropped). `view` is `meta` decoded
    /// ([`Self::decode_view`]): a streamed fill decoded it already for its readers.
    pub fn commit_decoded(
        &self,
        combined: HashBinary,
        primary: HashBinary,
        meta: (Vec<u8>, Vec<u8>),
        view: Option<Arc<HitView>>,
        body: Bytes,
        info: FillInfo,
    ) -> u64 {
        let entry = Arc::new(Entry::new(
            self.next_id(),
            meta,
            view,
            body,
            primary,
            info.url,
            info.groups,
        ));
        let weight = entry.weight();
        if weight > self.max_weight {
            return 0;
        }
        let mut state = self.state.lock();
        if !state
            .tombstones
            .allows(info.started, &primary, &entry.url, &entry.groups)
        {
            return 0;
        }
        if let Some(old) = self.entries.peek(&combined) {
            state.index.remove(combined, &old);
        }
        state.index.add(combined, &entry);
        self.entries.insert(combined, entry);
        self.drain_evicted(&mut state);
        weight
    }

    /// Replaces the meta of a stored entry after a 304, keeping its body. `false` when the entry
    /// is gone, when it is no longer the version that was revalidated (`info.revalidates`), or
    /// when the revalidation started before an invalidation that touches it.
    pub fn refresh(&self, combined: HashBinary, meta: (Vec<u8>, Vec<u8>), info: FillInfo) -> bool {
        let Some(revalidated) = info.revalidates else {
            return false;
        };
        let Some(old) = self.entries.peek(&combined) else {
            return false;
        };
        if old.id != revalidated {
            return false;
        }
        let view = self.decode_view(&meta);
        let entry = Arc::new(Entry::new(
            self.next_id(),
            meta,
            view,
            old.body.clone(),
            old.primary,
            info.url,
            info.groups,
        ));
        if entry.weight() > self.max_weight {
            return false;
        }
        let mut state = self.state.lock();
        if !state
            .tombstones
            .allows(info.started, &entry.primary, &entry.url, &entry.groups)
        {
            return false;
        }
        // purged or replaced while we were revalidating
        let Some(current) = self.entries.peek(&combined) else {
            return false;
        };
        if current.id != revalidated {
            return false;
        }
        state.index.remove(combined, &current);
        state.index.add(combined, &entry);
        self.entries.insert(combined, entry);
        self.drain_evicted(&mut state);
        true
    }

    /// Removes (or, when `soft`, marks stale) everything `scope` reaches and records a tombstone
    /// so in-flight fills that started earlier are not stored. Returns the entries affected.
    pub fn invalidate(&self, scope: &Scope, soft: bool) -> usize {
        let now = Instant::now();
        let mut state = self.state.lock();
        let keys: Vec<HashBinary> = match scope {
            Scope::Url(url) => {
                let primary = url.primary_hash();
                state.tombstones.url(primary, now);
                state.index.variants(&primary)
            }
            Scope::Path(path) => {
                state.tombstones.path(path, now);
                state.index.keys_for_path(path)
            }
            Scope::Prefix(prefix) => {
                state.tombstones.prefix(prefix, now);
                state.index.keys_with_prefix(prefix)
            }
            Scope::Group { host, name } => {
                state.tombstones.group(host.as_deref(), name, now);
                let members = state.index.group_members(name);
                match host {
                    None => members,
                    Some(h) => members
                        .into_iter()
                        .filter(|k| self.entries.peek(k).is_some_and(|e| &e.url.host == h))
                        .collect(),
                }
            }
            Scope::All => {
                state.tombstones.all(now);
                if soft {
                    self.entries.iter().map(|(k, _)| k).collect()
                } else {
                    let n = self.entries.len();
                    self.entries.clear();
                    state.index.clear();
                    self.hook.evicted.lock().clear();
                    return n;
                }
            }
        };
        let mut affected = 0;
        if soft {
            let at_ms = now_ms();
            for k in keys {
                if let Some(e) = self.entries.peek(&k) {
                    e.mark_soft_expired(at_ms);
                    affected += 1;
                }
            }
        } else {
            for k in keys {
                if let Some((_, e)) = self.entries.remove(&k) {
                    state.index.remove(k, &e);
                    affected += 1;
                }
            }
        }
        affected
    }

    /// Removes every variant of a primary; returns how many were stored.
    pub fn remove_variants(&self, primary: &HashBinary) -> usize {
        let mut state = self.state.lock();
        let mut n = 0;
        for k in state.index.variants(primary) {
            if let Some((_, e)) = self.entries.remove(&k) {
                state.index.remove(k, &e);
                n += 1;
            }
        }
        n
    }

    /// Marks one storage key stale (pingora's soft purge); `false` when nothing is stored there.
    pub fn soft_expire(&self, combined: &HashBinary) -> bool {
        match self.get(combined) {
            Some(entry) => {
                entry.mark_soft_expired(now_ms());
                true
            }
            None => false,
        }
    }

    /// Removes one storage key (pingora's own purge path).
    pub fn remove_exact(&self, combined: &HashBinary) -> bool {
        let mut state = self.state.lock();
        match self.entries.remove(combined) {
            Some((k, e)) => {
                state.index.remove(k, &e);
                true
            }
            None => false,
        }
    }

    /// Empties the store (used when an instance shuts down).
    pub fn clear(&self) {
        let mut state = self.state.lock();
        self.entries.clear();
        state.index.clear();
        self.hook.evicted.lock().clear();
    }

    fn drain_evicted(&self, state: &mut State) {
        let evicted = std::mem::take(&mut *self.hook.evicted.lock());
        for (k, e) in evicted {
            // a newer entry under the same key keeps its index records
            if self.entries.peek(&k).is_none() {
                state.index.remove(k, &e);
            }
        }
    }

    /// Distinct primaries in the index (for tests).
    #[cfg(test)]
    pub fn indexed_urls(&self) -> usize {
        self.state.lock().index.primary_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::CacheMeta;
    use pingora_http::ResponseHeader;

    fn store(capacity: u64, shards: usize) -> Store {
        Store::new(StoreOptions {
            max_object_bytes: (capacity as usize) / shards / 2,
            ..StoreOptions::for_tests(capacity, shards)
        })
        .unwrap()
    }

    fn meta() -> (Vec<u8>, Vec<u8>) {
        let now = SystemTime::now();
        let h = ResponseHeader::build(200, None).unwrap();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, h)
            .serialize()
            .unwrap()
    }

    fn fill(s: &Store, path: &str, groups: &[&str], body: usize) -> (HashBinary, u64) {
        let url = UrlKey::new("h", path);
        let p = url.primary_hash();
        let w = s.commit(
            p,
            p,
            meta(),
            Bytes::from(vec![b'x'; body]),
            FillInfo {
                started: Instant::now(),
                url,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                revalidates: None,
            },
        );
        (p, w)
    }

    #[test]
    fn weight_counts_meta_and_overhead() {
        let s = store(1 << 20, 4);
        let (_, w) = fill(&s, "/a", &["g"], 1000);
        assert!(w > 1000 + crate::cache::entry::ENTRY_OVERHEAD, "{w}");
        assert_eq!(s.weight(), w);
    }

    #[test]
    fn stays_under_capacity_when_overfilled() {
        let cap = 256 * 1024;
        let s = store(cap, 4);
        for i in 0..200 {
            fill(&s, &format!("/{i}"), &["all"], 2048);
            assert!(s.weight() <= cap);
        }
        assert!(s.evictions() > 0);
        assert!(s.entries() < 200);
        // the index followed the evictions
        assert_eq!(s.indexed_urls(), s.entries());
    }

    #[test]
    fn oversize_for_shard_is_not_stored() {
        let s = store(64 * 1024, 4);
        let (p, w) = fill(&s, "/big", &[], 20 * 1024);
        assert_eq!(w, 0);
        assert!(s.get(&p).is_none());
    }

    #[test]
    fn group_and_prefix_purges() {
        let s = store(1 << 20, 4);
        fill(&s, "/api/a", &["g1"], 10);
        fill(&s, "/api/b", &["g1", "g2"], 10);
        fill(&s, "/other", &["g2"], 10);
        let g1 = Scope::Group {
            host: Some("h".into()),
            name: "g1".into(),
        };
        assert_eq!(s.invalidate(&g1, false), 2);
        assert_eq!(s.entries(), 1);
        let other_host = Scope::Group {
            host: Some("x".into()),
            name: "g2".into(),
        };
        assert_eq!(s.invalidate(&other_host, false), 0);
        assert_eq!(s.invalidate(&Scope::Prefix("/oth".into()), false), 1);
        assert_eq!(s.entries(), 0);
    }

    #[test]
    fn soft_purge_keeps_body_but_expires() {
        let s = store(1 << 20, 4);
        let (p, _) = fill(&s, "/s", &[], 10);
        assert_eq!(s.invalidate(&Scope::Path("/s".into()), true), 1);
        let e = s.get(&p).unwrap();
        assert!(e.is_soft_expired());
        assert_eq!(e.body.len(), 10);
    }

    #[test]
    fn fill_started_before_purge_is_dropped() {
        let s = store(1 << 20, 4);
        let url = UrlKey::new("h", "/race");
        let p = url.primary_hash();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        s.invalidate(&Scope::Url(url.clone()), false);
        let info = FillInfo {
            started,
            url: url.clone(),
            groups: vec![],
            revalidates: None,
        };
        assert_eq!(s.commit(p, p, meta(), Bytes::from_static(b"old"), info), 0);
        let info = FillInfo {
            started: Instant::now(),
            url,
            groups: vec![],
            revalidates: None,
        };
        assert!(s.commit(p, p, meta(), Bytes::from_static(b"new"), info) > 0);
    }

    #[test]
    fn refresh_applies_only_to_the_revalidated_version() {
        let s = store(1 << 20, 4);
        let (p, _) = fill(&s, "/v", &[], 10);
        let v1 = s.get(&p).unwrap().id;
        // another fill replaced the entry while a 304 for v1 was on its way
        fill(&s, "/v", &[], 20);
        let v2 = s.get(&p).unwrap().id;
        assert_ne!(v1, v2);
        let info = |id| FillInfo {
            started: Instant::now(),
            url: UrlKey::new("h", "/v"),
            groups: vec![],
            revalidates: id,
        };
        assert!(!s.refresh(p, meta(), info(Some(v1))));
        assert!(!s.refresh(p, meta(), info(None)));
        assert_eq!(s.get(&p).unwrap().id, v2);
        assert!(s.refresh(p, meta(), info(Some(v2))));
        let refreshed = s.get(&p).unwrap();
        assert_ne!(refreshed.id, v2);
        assert_eq!(refreshed.body.len(), 20);
    }

    #[test]
    fn inflight_budget() {
        let s = store(1 << 20, 4);
        assert!(s.reserve_inflight(1000));
        assert!(!s.reserve_inflight(StoreOptions::for_tests(1 << 20, 4).max_inflight_fill_bytes));
        s.release_inflight(1000);
        assert_eq!(s.inflight_bytes(), 0);
    }

    #[test]
    fn purge_all() {
        let s = store(1 << 20, 4);
        fill(&s, "/1", &[], 1);
        fill(&s, "/2", &[], 1);
        assert_eq!(s.invalidate(&Scope::All, false), 2);
        assert_eq!(s.entries(), 0);
        assert_eq!(s.indexed_urls(), 0);
    }
}
