//! Fills in progress that other requests read while they arrive (pingora's streaming partial
//! writes, `cache.stream_fills`).
//!
//! With partial writes pingora releases the cache lock as soon as the response header is stored,
//! and every request for the key — the fetching client included — reads the body through the
//! storage: a lookup finds the [`InflightFill`] and streams its chunks as the origin sends them,
//! so a thousand waiters on a cold key get their first byte when the origin sends it.
//!
//! A fill the store refuses while it arrives (its body outgrows `max_object_bytes` or the in-flight
//! budget) passes through: the readers already attached get the whole body, nobody new joins, it
//! is not stored, and only the chunks some reader still needs are held — a joined reader that
//! falls more than `max_object_bytes` behind is cut (the fetching client never is: pingora paces
//! the fill to it).
//!
//! A fill ends in one of two ways, and readers see which: `finish()` commits the entry and ends
//! every reader's body normally; a fill dropped without `finish()` (the origin failed or cut the
//! body, the object outgrew `max_object_bytes` or the in-flight budget) fails, and every reader
//! gets an error instead of a body that looks complete (cloudflare/pingora#932).

use super::entry::{FillInfo, HitView};
use super::storage::BufferedMiss;
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use pingora_cache::storage::{HandleHit, HandleMiss, MissFinishType};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, Storage};
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::watch;

/// How far a fill got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// This many chunks are available.
    Partial(usize),
    /// All chunks are available; the entry was committed (or refused by a purge).
    Complete(usize),
    Failed,
}

/// The chunks of a fill that readers may still need.
#[derive(Default)]
struct Held {
    chunks: VecDeque<Bytes>,
    /// Chunk index of `chunks[0]` (chunks before it were dropped: pass-through only).
    base: usize,
    bytes: usize,
    /// The next chunk index of every attached reader, by reader id.
    cursors: HashMap<u64, usize>,
    next_reader: u64,
    /// The fetching request's own reader: never cut (pingora paces the fill to its client).
    own_reader: Option<u64>,
    /// The response will not be stored (too big, or over the in-flight budget): nobody new joins,
    /// and chunks every attached reader has passed are dropped.
    passthrough: bool,
}

impl Held {
    fn end(&self) -> usize {
        self.base + self.chunks.len()
    }

    /// In pass-through, drops the chunks every reader has passed, and cuts the slowest readers
    /// while they are more than `max_lag` bytes (before the newest chunk) behind.
    fn trim(&mut self, max_lag: usize) {
        if !self.passthrough {
            return;
        }
        loop {
            let keep_from = self.cursors.values().copied().min().unwrap_or(self.end());
            while self.base < keep_from {
                let Some(c) = self.chunks.pop_front() else {
                    break;
                };
                self.bytes -= c.len();
                self.base += 1;
            }
            // the newest chunk is nobody's lag yet
            let newest = self.chunks.back().map_or(0, Bytes::len);
            if self.bytes - newest <= max_lag || self.cursors.is_empty() {
                return;
            }
            // the slowest readers fall out: their next read is an error
            let (before, own) = (self.cursors.len(), self.own_reader);
            self.cursors
                .retain(|id, next| *next > keep_from || Some(*id) == own);
            if self.cursors.len() == before {
                return;
            }
        }
    }
}

/// One fill in progress: its serialized meta and the chunks received so far.
pub struct InflightFill {
    /// Unique per fill: pingora's `streaming_write_tag`, big-endian.
    pub id: u64,
    pub meta: (Vec<u8>, Vec<u8>),
    /// `meta` decoded for the raw HTTP/1 front, which serves readers of the fill itself.
    pub view: Option<Arc<HitView>>,
    pub info: FillInfo,
    held: Mutex<Held>,
    progress: watch::Sender<Progress>,
    /// In pass-through, the most bytes held for the slowest reader before it is cut.
    max_lag: usize,
}

impl InflightFill {
    pub fn new(
        id: u64,
        meta: (Vec<u8>, Vec<u8>),
        view: Option<Arc<HitView>>,
        info: FillInfo,
        max_lag: usize,
    ) -> Arc<InflightFill> {
        Arc::new(InflightFill {
            id,
            meta,
            view,
            info,
            held: Mutex::new(Held::default()),
            progress: watch::channel(Progress::Partial(0)).0,
            max_lag,
        })
    }

    fn push(&self, data: Bytes) {
        let mut held = self.held.lock();
        if !data.is_empty() {
            held.bytes += data.len();
            held.chunks.push_back(data);
            held.trim(self.max_lag);
        }
        let n = held.end();
        self.set_progress(|p| {
            *p = Progress::Partial(n);
            true
        });
    }

    /// Changes the fill's progress with `modify` (which says whether it changed it) and wakes
    /// the readers. A fill nobody reads (a front fill without joiners) wakes nobody: tokio's
    /// `watch` wakes its eight `Notify` shards on every send, 1.5 k instructions a front fill
    /// (callgrind). A reader that subscribes later reads the value before it waits
    /// ([`InflightHit::next_chunk`]), so it misses nothing.
    fn set_progress(&self, modify: impl FnOnce(&mut Progress) -> bool) {
        self.progress.send_if_modified(|p| {
            // counted under the value's lock: a receiver counted after this reads the new value
            modify(p) && self.progress.receiver_count() > 0
        });
    }

    /// The response will not be stored: keep streaming it to the readers already attached.
    fn pass_through(&self) {
        let mut held = self.held.lock();
        held.passthrough = true;
        held.trim(self.max_lag);
    }

    fn end(&self, progress: Progress) {
        // never turn a complete fill into a failed one (a drop after finish)
        self.set_progress(|p| {
            if matches!(p, Progress::Partial(_)) {
                *p = progress;
                true
            } else {
                false
            }
        });
    }

    fn complete(&self) {
        let n = self.held.lock().end();
        self.end(Progress::Complete(n));
    }

    fn fail(&self) {
        self.end(Progress::Failed);
    }

    /// Whether a new reader may join: not failed, not passing through.
    pub fn joinable(&self) -> bool {
        *self.progress.borrow() != Progress::Failed && !self.held.lock().passthrough
    }

    /// A reader of the body from its first byte; `None` once the first chunks were dropped.
    pub fn reader(self: &Arc<Self>) -> Option<InflightHit> {
        self.new_reader(false)
    }

    /// The fetching request's own reader (never cut for lagging).
    pub fn own_reader(self: &Arc<Self>) -> Option<InflightHit> {
        self.new_reader(true)
    }

    fn new_reader(self: &Arc<Self>, own: bool) -> Option<InflightHit> {
        let mut held = self.held.lock();
        if held.base > 0 {
            return None;
        }
        let reader = held.next_reader;
        held.next_reader += 1;
        held.cursors.insert(reader, 0);
        if own {
            held.own_reader = Some(reader);
        }
        Some(InflightHit {
            fill: self.clone(),
            progress: self.progress.subscribe(),
            reader,
            next: 0,
            pos: 0,
            range: None,
        })
    }
}

/// Reads a fill in progress, waiting for chunks as they arrive.
pub struct InflightHit {
    fill: Arc<InflightFill>,
    progress: watch::Receiver<Progress>,
    reader: u64,
    /// Index of the next chunk.
    next: usize,
    /// Body offset of the next chunk.
    pos: usize,
    /// The byte range to serve (`end` exclusive), after a `seek`.
    range: Option<(usize, Option<usize>)>,
}

impl Drop for InflightHit {
    fn drop(&mut self) {
        let mut held = self.fill.held.lock();
        held.cursors.remove(&self.reader);
        held.trim(self.fill.max_lag);
    }
}

impl InflightHit {
    /// The next chunk of the fill, waiting for it; `None` at the end of the body.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let progress = *self.progress.borrow_and_update();
            if progress == Progress::Failed {
                return Error::e_explain(ErrorType::InternalError, "the fill failed");
            }
            {
                let mut held = self.fill.held.lock();
                if !held.cursors.contains_key(&self.reader) || self.next < held.base {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "reader fell too far behind an uncacheable fill",
                    );
                }
                if self.next < held.end() {
                    let chunk = held.chunks[self.next - held.base].clone();
                    self.next += 1;
                    held.cursors.insert(self.reader, self.next);
                    held.trim(self.fill.max_lag);
                    return Ok(Some(chunk));
                }
            }
            if matches!(progress, Progress::Complete(_)) {
                return Ok(None);
            }
            if self.progress.changed().await.is_err() {
                // the fill was dropped without a final state
                return Error::e_explain(ErrorType::InternalError, "the fill went away");
            }
        }
    }
}

#[async_trait]
impl HandleHit for InflightHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let Some(chunk) = self.next_chunk().await? else {
                return Ok(None);
            };
            let chunk_start = self.pos;
            self.pos += chunk.len();
            let Some((start, end)) = self.range else {
                return Ok(Some(chunk));
            };
            let end = end.unwrap_or(usize::MAX);
            if chunk_start >= end {
                return Ok(None);
            }
            let from = start.saturating_sub(chunk_start).min(chunk.len());
            let to = end.saturating_sub(chunk_start).min(chunk.len());
            if from < to {
                return Ok(Some(chunk.slice(from..to)));
            }
        }
    }

    fn can_seek(&self) -> bool {
        true
    }

    /// Serves `start..end` (`end` exclusive) from the fill's first byte.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if end.is_some_and(|e| e < start) {
            return Error::e_explain(ErrorType::InternalError, "seek start beyond end");
        }
        let mut held = self.fill.held.lock();
        if held.base > 0 {
            return Error::e_explain(ErrorType::InternalError, "the fill's start was dropped");
        }
        held.cursors.insert(self.reader, 0);
        self.next = 0;
        self.pos = 0;
        self.range = Some((start, end));
        Ok(())
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// The miss handler of a streamed fill: the buffered fill (limits, commit) plus the chunks
/// published to readers. Removes itself from the store's in-flight map when it ends.
pub struct StreamingMiss {
    inner: Option<Box<BufferedMiss>>,
    fill: Arc<InflightFill>,
    tag: [u8; 8],
    on_end: Box<dyn Fn(&InflightFill) + Send + Sync>,
}

impl StreamingMiss {
    pub fn new(
        inner: BufferedMiss,
        fill: Arc<InflightFill>,
        on_end: Box<dyn Fn(&InflightFill) + Send + Sync>,
    ) -> Self {
        StreamingMiss {
            tag: fill.id.to_be_bytes(),
            inner: Some(Box::new(inner)),
            fill,
            on_end,
        }
    }
}

impl Drop for StreamingMiss {
    fn drop(&mut self) {
        // without finish(): readers get an error, never a truncated body
        self.fill.fail();
        (self.on_end)(&self.fill);
    }
}

#[async_trait]
impl HandleMiss for StreamingMiss {
    /// A body the store refuses (larger than `max_object_bytes`, or over the in-flight budget)
    /// is not an error: the fill passes through to the readers already attached, uncached.
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        if let Some(inner) = self.inner.as_mut() {
            if inner.write_body(data.clone(), eof).await.is_err() {
                // releases the fill's reservation; nothing will be committed
                self.inner = None;
                self.fill.pass_through();
            }
        }
        self.fill.push(data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let Some(inner) = self.inner.take() else {
            // passed through: complete for its readers, not stored
            self.fill.complete();
            return Ok(MissFinishType::Created(0));
        };
        let result = inner.finish().await;
        match &result {
            Ok(_) => self.fill.complete(),
            Err(_) => self.fill.fail(),
        }
        result
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::UrlKey;
    use std::time::Instant;

    fn fill() -> Arc<InflightFill> {
        let info = FillInfo {
            started: Instant::now(),
            url: UrlKey::new("h", "/f"),
            groups: vec![],
            revalidates: None,
        };
        InflightFill::new(1, (vec![], vec![]), None, info, 4)
    }

    #[tokio::test]
    async fn readers_follow_the_fill_and_see_its_end() {
        let f = fill();
        let mut early = f.reader().unwrap();
        f.push(Bytes::from_static(b"a"));
        assert_eq!(early.read_body().await.unwrap().unwrap(), "a");
        let waiting = tokio::spawn(async move {
            let next = early.read_body().await.unwrap();
            let end = early.read_body().await.unwrap();
            (next, end)
        });
        f.push(Bytes::from_static(b"b"));
        f.complete();
        let (next, end) = waiting.await.unwrap();
        assert_eq!(next.unwrap(), "b");
        assert!(end.is_none());
        // a late reader gets everything from the start
        let mut late = f.reader().unwrap();
        assert_eq!(late.read_body().await.unwrap().unwrap(), "a");
        assert_eq!(late.read_body().await.unwrap().unwrap(), "b");
        assert!(late.read_body().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_reader_seeks_a_range_across_chunks() {
        let f = fill();
        for c in ["012", "345", "678"] {
            f.push(Bytes::from_static(c.as_bytes()));
        }
        f.complete();
        let mut r = f.reader().unwrap();
        r.seek(2, Some(5)).unwrap();
        let mut got = Vec::new();
        while let Some(b) = r.read_body().await.unwrap() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"234");
        r.seek(7, None).unwrap();
        assert_eq!(r.read_body().await.unwrap().unwrap(), "78");
        assert!(r.read_body().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_uncached_fill_keeps_only_what_its_readers_still_need() {
        let f = fill();
        let mut fast = f.reader().unwrap();
        let mut slow = f.reader().unwrap();
        f.pass_through();
        assert!(!f.joinable());
        f.push(Bytes::from_static(b"ab"));
        assert_eq!(fast.read_body().await.unwrap().unwrap(), "ab");
        assert_eq!(slow.read_body().await.unwrap().unwrap(), "ab");
        // both passed the first chunk: it is dropped, and nobody can start from the beginning
        assert!(f.reader().is_none());
        assert_eq!(f.held.lock().bytes, 0);
        // the slow reader falls more than 4 bytes behind: it is cut, the fast one goes on
        for c in ["cd", "ef", "gh", "ij"] {
            f.push(Bytes::from_static(c.as_bytes()));
            assert_eq!(fast.read_body().await.unwrap().unwrap(), c);
        }
        assert!(slow.read_body().await.is_err());
        // the fetching client's own reader is never cut
        let g = fill();
        let mut own = g.own_reader().unwrap();
        g.pass_through();
        for c in ["ab", "cd", "ef", "gh"] {
            g.push(Bytes::from_static(c.as_bytes()));
        }
        assert_eq!(own.read_body().await.unwrap().unwrap(), "ab");
        f.complete();
        assert!(fast.read_body().await.unwrap().is_none());
        assert_eq!(f.held.lock().bytes, 0);
    }

    #[tokio::test]
    async fn a_failed_fill_is_an_error_not_an_end() {
        let f = fill();
        let mut r = f.reader().unwrap();
        f.push(Bytes::from_static(b"a"));
        f.fail();
        // what arrived before the failure is not served as a complete body
        assert!(r.read_body().await.is_err());
        // and a failure never follows completion
        let g = fill();
        g.complete();
        g.fail();
        assert!(g.reader().unwrap().read_body().await.unwrap().is_none());
    }
}
