//! Server-sent-event bodies: events are queued on an mpsc channel by a producer task and relayed as
//! they arrive, with a `: keep-alive` comment whenever the channel stays quiet for one interval.
//! Dropping the body (client gone) closes the channel, which the producer notices on its next send
//! (or through [`tokio::sync::mpsc::Sender::closed`]).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::http::response::{invalidation_headers, BoxError, Response};

const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// The sending side of an SSE response.
#[derive(Clone)]
pub struct EventSender(mpsc::Sender<Bytes>);

impl EventSender {
    /// Queues `data: <json>\n\n`; false when the client has gone away.
    pub async fn send(&self, event: &Value) -> bool {
        let frame = format!("data: {event}\n\n");
        self.0.send(Bytes::from(frame)).await.is_ok()
    }

    /// Resolves when the response body was dropped (client disconnected).
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

/// A `200 text/event-stream` response announcing `groups` in `Cache-Group-Invalidation` (and the
/// outbox id of a write committed before the headers in `LLMSelect-Invalidation-Id`), and the
/// sender feeding its body. The body ends when every sender is dropped.
pub fn sse_response(
    groups: &[String],
    invalidation_id: Option<i64>,
    keepalive: Duration,
) -> (Response, EventSender) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout(keepalive, rx.recv()).await {
            Ok(Some(bytes)) => Some((bytes, rx)),
            Ok(None) => None,
            Err(_) => Some((Bytes::from_static(KEEPALIVE), rx)),
        }
    })
    .map(|bytes| Ok::<_, BoxError>(Frame::data(bytes)));
    let mut response = http::Response::new(StreamBody::new(stream).boxed_unsync());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    invalidation_headers(headers, groups, invalidation_id);
    (response, EventSender(tx))
}
