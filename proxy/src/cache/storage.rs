//! pingora's side of the store: the `Storage` adapter over [`Store`] and its hit and miss
//! handlers (kept together, as pingora-cache keeps `memory.rs`). Hits hand out slices of the
//! stored `Bytes` (zero-copy) and can seek, so Range requests are served from the store. Misses
//! buffer the body and commit it whole at `finish()`; a fill that fails or is cut off is dropped
//! without `finish()` and never stored.

use super::encoding;
use super::entry::{Entry, FillInfo, HitView};
use super::inflight::{InflightFill, StreamingMiss};
use super::key::UrlKey;
use super::store::Store;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta, Storage};
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Store {
    /// The handler of a fill that may be stored (`meta` carries its [`FillInfo`]; `serialized`
    /// is `meta` serialized), and the fill's in-flight form when fills are streamed: published
    /// for readers from here on, and the key's first fill marked moved on
    /// (`cache::first_fill`). The front's fill (`server::fill`) starts its fills here, as
    /// pingora does through `get_miss_handler`. `view`: the fill's view when the caller built it
    /// (`Store::view_of_taken`); otherwise it is made from `meta`.
    pub fn begin_miss(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        serialized: (Vec<u8>, Vec<u8>),
        view: Option<Arc<HitView>>,
    ) -> Result<(MissHandler, Option<Arc<InflightFill>>)> {
        let info = match meta.extensions().get::<FillInfo>() {
            Some(i) => i.clone(),
            None => FillInfo {
                // No fill start recorded (the proxy always records one): assume it started
                // long ago, so any recent invalidation drops it.
                started: Instant::now()
                    .checked_sub(Duration::from_secs(3600))
                    .unwrap_or_else(Instant::now),
                url: key
                    .primary_key_str()
                    .and_then(UrlKey::from_absolute)
                    .ok_or_else(|| {
                        Error::explain(ErrorType::InternalError, "fill without FillInfo")
                    })?,
                groups: Vec::new(),
                revalidates: None,
            },
        };
        let combined = key.combined_bin();
        let length = match &view {
            Some(view) => view.content_length,
            None => meta
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok()),
        };
        let buffered = BufferedMiss::new(
            self,
            combined,
            key.primary_bin(),
            serialized.clone(),
            info.clone(),
            length,
        );
        if !self.streams_fills() {
            return Ok((Box::new(buffered), None));
        }
        let view = Some(view.unwrap_or_else(|| self.view_of(meta)));
        let buffered = buffered.with_view(view.clone());
        let fill = InflightFill::new(
            self.next_id(),
            serialized,
            view,
            info,
            self.max_object_bytes(),
        );
        self.begin_fill(combined, fill.clone());
        // readers may join from here on: requests waiting for a cold key's first fill read it
        self.first_fills().moved(&key.primary_bin());
        let store: &'static Store = self;
        let miss = StreamingMiss::new(
            buffered,
            fill.clone(),
            Box::new(move |f| store.end_fill(&combined, f.id)),
        );
        Ok((Box::new(miss), Some(fill)))
    }
}

fn meta_of(entry: &Entry) -> Result<CacheMeta> {
    let mut meta = CacheMeta::deserialize(&entry.meta.0, &entry.meta.1)?;
    if let Some(at) = entry.soft_expiry() {
        meta.expire_at(at);
    }
    Ok(meta)
}

#[async_trait]
impl Storage for Store {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let combined = key.combined_bin();
        if self.streams_fills() {
            // a fill in progress is newer than anything committed under the key
            if let Some((fill, reader)) = self
                .joinable_fill(&combined)
                .and_then(|f| f.reader().map(|r| (f, r)))
            {
                let meta = CacheMeta::deserialize(&fill.meta.0, &fill.meta.1)?;
                return Ok(Some((meta, Box::new(reader))));
            }
        }
        let Some(entry) = self.get(&combined) else {
            return Ok(None);
        };
        let meta = meta_of(&entry)?;
        Ok(Some((meta, Box::new(BodyHit::new(entry)))))
    }

    /// The fetching request's own reader of its fill (pingora calls this right after
    /// `get_miss_handler` when partial writes are on; it must find the fill).
    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let id = streaming_write_tag
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no streaming write tag"))?;
        let fill = self.own_fill(&key.combined_bin(), id).ok_or_else(|| {
            Error::explain(ErrorType::InternalError, "fill in progress not found")
        })?;
        let reader = fill
            .own_reader()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "fill already trimmed"))?;
        // pingora-cache 0.9.1 drops the meta returned here (`set_miss_handler`, its only
        // caller, keeps just the reader): a stand-in from the fill's view spares decoding the
        // serialized meta, an eighth of a miss's instructions.
        let meta = match &fill.view {
            Some(view) => CacheMeta::new(view.fresh_until, view.created, 0, 0, view.header.clone()),
            None => CacheMeta::deserialize(&fill.meta.0, &fill.meta.1)?,
        };
        Ok(Some((meta, Box::new(reader))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(self.begin_miss(key, meta, meta.serialize()?, None)?.0)
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = target.key();
        // The primary slot stands for the whole URL: drop every variant with it.
        let removed = if key.variance_bin().is_none() {
            self.remove_variants(&key.primary_bin()) > 0 || self.remove_exact(&key.combined_bin())
        } else {
            self.remove_exact(&key.combined_bin())
        };
        Ok(if removed {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if self.soft_expire(&target.key().combined_bin()) {
            Ok(PurgeOutcome::Expired)
        } else {
            Ok(PurgeOutcome::NotFound)
        }
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        // Without the fill's record the revalidated version is unknown: keep the old entry.
        let Some(info) = meta.extensions().get::<FillInfo>().cloned() else {
            return Ok(false);
        };
        Ok(self.refresh(key.combined_bin(), meta.serialize()?, info))
    }

    fn support_streaming_partial_write(&self) -> bool {
        self.streams_fills()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Serves a stored body, or a byte range of it. It keeps the entry it serves, so the proxy hooks
/// can tell which stored version a revalidation refreshes (`Entry::id`), whether it was
/// soft-purged and whether it belongs to a group.
pub struct BodyHit {
    entry: Arc<Entry>,
    start: usize,
    end: usize,
    done: bool,
}

impl BodyHit {
    pub fn new(entry: Arc<Entry>) -> Self {
        let end = entry.body.len();
        BodyHit {
            entry,
            start: 0,
            end,
            done: false,
        }
    }

    /// The stored entry this handler serves.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }
}

#[async_trait]
impl HandleHit for BodyHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done || self.start >= self.end {
            self.done = true;
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.entry.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    /// `end` is exclusive.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.entry.body.len();
        let end = end.unwrap_or(len).min(len);
        if start > end {
            return Error::e_explain(ErrorType::InternalError, "seek start beyond end");
        }
        self.start = start;
        self.end = end;
        self.done = false;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Buffers a fill and commits it at `finish()`. The buffer's capacity is reserved in the store's
/// in-flight budget while the fill runs, and released when it ends either way.
pub struct BufferedMiss {
    store: &'static Store,
    combined: HashBinary,
    primary: HashBinary,
    meta: Option<(Vec<u8>, Vec<u8>)>,
    /// `meta` decoded already (a streamed fill decodes it for its readers): the entry reuses it
    /// instead of decoding the same bytes again.
    view: Option<Option<Arc<HitView>>>,
    body: BytesMut,
    info: Option<FillInfo>,
    reserved: u64,
}

impl BufferedMiss {
    pub fn new(
        store: &'static Store,
        combined: HashBinary,
        primary: HashBinary,
        meta: (Vec<u8>, Vec<u8>),
        info: FillInfo,
        length: Option<usize>,
    ) -> Self {
        // A declared length sizes the buffer once (no regrowth, no copy at the end) when the
        // object may be stored and the budget has room for it.
        let presized = length
            .filter(|n| *n > 0 && *n <= store.max_object_bytes())
            .filter(|n| store.reserve_inflight(*n as u64));
        BufferedMiss {
            store,
            combined,
            primary,
            meta: Some(meta),
            view: None,
            body: presized.map_or_else(BytesMut::new, BytesMut::with_capacity),
            info: Some(info),
            reserved: presized.unwrap_or(0) as u64,
        }
    }

    /// `view`: the fill's meta, decoded already.
    fn with_view(mut self, view: Option<Arc<HitView>>) -> Self {
        self.view = Some(view);
        self
    }
}

impl Drop for BufferedMiss {
    fn drop(&mut self) {
        self.store.release_inflight(self.reserved);
    }
}

#[async_trait]
impl HandleMiss for BufferedMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        let needed = self.body.len() + data.len();
        if needed > self.store.max_object_bytes() {
            // pingora stops caching and keeps proxying the response
            return Error::e_explain(ErrorType::InternalError, "object exceeds max_object_bytes");
        }
        if needed > self.body.capacity() {
            // The budget is charged with what the buffer really holds (its capacity), grown by
            // doubling up to the object limit.
            let target = needed.max((self.body.capacity() * 2).min(self.store.max_object_bytes()));
            let grow = (target - self.body.capacity()) as u64;
            if !self.store.reserve_inflight(grow) {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "fills in progress exceed max_inflight_fill_bytes",
                );
            }
            self.reserved += grow;
            // an exact allocation (`reserve` may round up past the object limit)
            let mut grown = BytesMut::with_capacity(target);
            grown.extend_from_slice(&self.body);
            self.body = grown;
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    /// Never fails on a soft rejection (a purge raced the fill): the client still gets its
    /// response; the entry is just not stored.
    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let (Some(mut meta), Some(info)) = (self.meta.take(), self.info.take()) else {
            return Ok(MissFinishType::Created(0));
        };
        let buf = std::mem::take(&mut self.body);
        let mut view = self.view.take();
        // the view, when there is one, tells without decoding the meta
        let framing = match &view {
            Some(Some(v)) => encoding::lacks_stored_length(&v.header),
            _ => true,
        };
        if let Some(framed) = framing
            .then(|| encoding::stored_length(&meta, buf.len()))
            .flatten()
        {
            meta = framed;
            view = None;
        }
        // Store what is held, not what the buffer grew to.
        let body = if buf.capacity() > buf.len() + buf.len() / 8 + 64 {
            Bytes::copy_from_slice(&buf)
        } else {
            buf.freeze()
        };
        let view = view.unwrap_or_else(|| self.store.decode_view(&meta));
        let weight = self
            .store
            .commit_decoded(self.combined, self.primary, meta, view, body, info);
        // stored or refused, the fill is over: requests waiting for a cold key's first fill
        // look at the store now (`cache::first_fill`)
        self.store.first_fills().moved(&self.primary);
        Ok(MissFinishType::Created(weight as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::{Scope, StoreOptions};
    use pingora_http::ResponseHeader;
    use std::time::SystemTime;

    #[test]
    fn a_soft_purged_entry_is_served_to_pingora_as_expired() {
        let s = Store::new(StoreOptions::for_tests(1 << 20, 4)).unwrap();
        let url = UrlKey::new("h", "/s");
        let p = url.primary_hash();
        let now = SystemTime::now();
        let h = ResponseHeader::build(200, None).unwrap();
        let meta = CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, h)
            .serialize()
            .unwrap();
        let info = FillInfo {
            started: Instant::now(),
            url: url.clone(),
            groups: vec![],
            revalidates: None,
        };
        assert!(s.commit(p, p, meta, Bytes::from_static(b"body"), info) > 0);
        assert!(meta_of(&s.get(&p).unwrap())
            .unwrap()
            .is_fresh(SystemTime::now()));
        s.invalidate(&Scope::Url(url), true);
        let e = s.get(&p).unwrap();
        assert!(!meta_of(&e).unwrap().is_fresh(SystemTime::now()));
        assert_eq!(e.body, Bytes::from_static(b"body"));
    }
}
