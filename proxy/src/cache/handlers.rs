//! Hit and miss handlers. Hits hand out slices of the stored `Bytes` (zero-copy) and can seek,
//! so Range requests are served from the store. Misses buffer the body and commit it whole at
//! `finish()`; a fill that fails or is cut off is dropped without `finish()` and never stored.

use super::storage::{FillInfo, Store};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::HashBinary;
use pingora_cache::storage::{HandleHit, HandleMiss, MissFinishType};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, Storage};
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;

/// Serves a stored body, or a byte range of it.
pub struct BodyHit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
    /// The stored version served (its `Entry::id`): a revalidation refreshes only this one.
    pub entry_id: u64,
    /// The entry was soft-purged (an admin or bus invalidation): never served stale on a
    /// request's `max-stale`.
    pub soft_purged: bool,
}

impl BodyHit {
    pub fn new(body: Bytes, entry_id: u64, soft_purged: bool) -> Self {
        let end = body.len();
        BodyHit {
            body,
            start: 0,
            end,
            done: false,
            entry_id,
            soft_purged,
        }
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
        Ok(Some(self.body.slice(self.start..self.end)))
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
        let len = self.body.len();
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

/// Buffers a fill and commits it at `finish()`. The buffered bytes are reserved in the store's
/// in-flight budget while the fill runs, and released when it ends either way.
pub struct BufferedMiss {
    store: &'static Store,
    combined: HashBinary,
    primary: HashBinary,
    meta: Option<(Vec<u8>, Vec<u8>)>,
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
    ) -> Self {
        BufferedMiss {
            store,
            combined,
            primary,
            meta: Some(meta),
            body: BytesMut::new(),
            info: Some(info),
            reserved: 0,
        }
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
        if self.body.len() + data.len() > self.store.max_object_bytes() {
            // pingora stops caching and keeps proxying the response
            return Error::e_explain(ErrorType::InternalError, "object exceeds max_object_bytes");
        }
        let n = data.len() as u64;
        if !self.store.reserve_inflight(n) {
            return Error::e_explain(
                ErrorType::InternalError,
                "fills in progress exceed max_inflight_fill_bytes",
            );
        }
        self.reserved += n;
        self.body.extend_from_slice(&data);
        Ok(())
    }

    /// Never fails on a soft rejection (a purge raced the fill): the client still gets its
    /// response; the entry is just not stored.
    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let (Some(meta), Some(info)) = (self.meta.take(), self.info.take()) else {
            return Ok(MissFinishType::Created(0));
        };
        let buf = std::mem::take(&mut self.body);
        // Store what is held, not what the buffer grew to.
        let body = if buf.capacity() > buf.len() + buf.len() / 8 + 64 {
            Bytes::copy_from_slice(&buf)
        } else {
            buf.freeze()
        };
        let weight = self
            .store
            .commit(self.combined, self.primary, meta, body, info);
        Ok(MissFinishType::Created(weight as usize))
    }
}
