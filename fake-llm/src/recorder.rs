//! Per-path request counters and the last request seen on each path.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Inner {
    counts: HashMap<String, u64>,
    last: HashMap<String, RecordedRequest>,
}

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    pub fn record(&self, request: RecordedRequest) {
        let mut inner = self.inner.lock();
        *inner.counts.entry(request.path.clone()).or_default() += 1;
        inner.last.insert(request.path.clone(), request);
    }

    pub fn requests(&self, path: &str) -> u64 {
        self.inner.lock().counts.get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.inner.lock().counts.values().sum()
    }

    pub fn last(&self, path: &str) -> Option<RecordedRequest> {
        self.inner.lock().last.get(path).cloned()
    }

    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        inner.counts.clear();
        inner.last.clear();
    }
}
