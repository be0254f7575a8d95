//! Fills in progress that other requests read while they arrive (pingora's streaming partial
//! writes, enabled by `cache.stream_fills`).
//!
//! With partial writes pingora releases the cache lock as soon as the response header is stored,
//! and every request for the key — the fetching client included — reads the body through the
//! storage: a lookup finds the [`InflightFill`] and streams its chunks as the origin sends them,
//! so a thousand waiters on a cold key get their first byte when the origin sends it.
//!
//! A fill ends in one of two ways, and readers see which: `finish()` commits the entry and ends
//! every reader's body normally; a fill dropped without `finish()` (the origin failed or cut the
//! body, the object outgrew `max_object_bytes` or the in-flight budget) fails, and every reader
//! gets an error instead of a body that looks complete (cloudflare/pingora#932).

use super::entry::FillInfo;
use super::storage::BufferedMiss;
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use pingora_cache::storage::{HandleHit, HandleMiss, MissFinishType};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, Storage};
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;
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

/// One fill in progress: its serialized meta and the chunks received so far.
pub struct InflightFill {
    /// Unique per fill: pingora's `streaming_write_tag`, big-endian.
    pub id: u64,
    pub meta: (Vec<u8>, Vec<u8>),
    pub info: FillInfo,
    chunks: Mutex<Vec<Bytes>>,
    progress: watch::Sender<Progress>,
}

impl InflightFill {
    pub fn new(id: u64, meta: (Vec<u8>, Vec<u8>), info: FillInfo) -> Arc<InflightFill> {
        Arc::new(InflightFill {
            id,
            meta,
            info,
            chunks: Mutex::new(Vec::new()),
            progress: watch::channel(Progress::Partial(0)).0,
        })
    }

    fn push(&self, data: Bytes) {
        let mut chunks = self.chunks.lock();
        if !data.is_empty() {
            chunks.push(data);
        }
        let n = chunks.len();
        self.progress.send_replace(Progress::Partial(n));
    }

    fn end(&self, progress: Progress) {
        // never turn a complete fill into a failed one (a drop after finish)
        self.progress.send_if_modified(|p| {
            if matches!(p, Progress::Partial(_)) {
                *p = progress;
                true
            } else {
                false
            }
        });
    }

    fn complete(&self) {
        let n = self.chunks.lock().len();
        self.end(Progress::Complete(n));
    }

    fn fail(&self) {
        self.end(Progress::Failed);
    }

    /// Whether the fill failed (a lookup then ignores it).
    pub fn failed(&self) -> bool {
        *self.progress.borrow() == Progress::Failed
    }

    /// A reader of the body from its first byte.
    pub fn reader(self: &Arc<Self>) -> InflightHit {
        InflightHit {
            fill: self.clone(),
            progress: self.progress.subscribe(),
            next: 0,
            pos: 0,
            range: None,
        }
    }
}

/// Reads a fill in progress, waiting for chunks as they arrive.
pub struct InflightHit {
    fill: Arc<InflightFill>,
    progress: watch::Receiver<Progress>,
    /// Index of the next chunk.
    next: usize,
    /// Body offset of the next chunk.
    pos: usize,
    /// The byte range to serve (`end` exclusive), after a `seek`.
    range: Option<(usize, Option<usize>)>,
}

impl InflightHit {
    /// The next chunk of the fill, waiting for it; `None` at the end of the body.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let progress = *self.progress.borrow_and_update();
            let available = match progress {
                Progress::Partial(n) | Progress::Complete(n) => n,
                Progress::Failed => {
                    return Error::e_explain(ErrorType::InternalError, "the fill failed");
                }
            };
            if self.next < available {
                let chunk = self.fill.chunks.lock()[self.next].clone();
                self.next += 1;
                return Ok(Some(chunk));
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
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        let Some(inner) = self.inner.as_mut() else {
            return Error::e_explain(ErrorType::InternalError, "fill already finished");
        };
        if let Err(e) = inner.write_body(data.clone(), eof).await {
            self.fill.fail();
            return Err(e);
        }
        self.fill.push(data);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let inner = self
            .inner
            .take()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "fill already finished"))?;
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
        InflightFill::new(1, (vec![], vec![]), info)
    }

    #[tokio::test]
    async fn readers_follow_the_fill_and_see_its_end() {
        let f = fill();
        let mut early = f.reader();
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
        let mut late = f.reader();
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
        let mut r = f.reader();
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
    async fn a_failed_fill_is_an_error_not_an_end() {
        let f = fill();
        let mut r = f.reader();
        f.push(Bytes::from_static(b"a"));
        f.fail();
        // what arrived before the failure is not served as a complete body
        assert!(r.read_body().await.is_err());
        // and a failure never follows completion
        let g = fill();
        g.complete();
        g.fail();
        assert!(g.reader().read_body().await.unwrap().is_none());
    }
}
