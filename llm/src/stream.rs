//! Turning a provider's SSE response body into a stream of text deltas.

use std::collections::VecDeque;

use futures::stream::{self, BoxStream, StreamExt};
use serde_json::Value;

use crate::error::LlmError;
use crate::sse::{SseEvent, SseParser};
use crate::Provider;

/// What one SSE event means to an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A non-empty piece of the answer.
    Delta(String),
    /// Nothing to emit (metadata, pings, empty deltas).
    Skip,
    /// The provider's end marker; later bytes are ignored.
    Done,
}

/// Why an SSE event ends the stream with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The frame could not be understood.
    Malformed(String),
    /// The provider reported an error in the stream.
    Upstream(String),
}

impl Decoded {
    /// `Delta` for non-empty text, `Skip` otherwise. An owned `String` is moved, not copied.
    pub fn delta(text: impl AsRef<str> + Into<String>) -> Decoded {
        if text.as_ref().is_empty() {
            Decoded::Skip
        } else {
            Decoded::Delta(text.into())
        }
    }
}

impl FrameError {
    /// An in-stream error object: its `message`, or `error event` when it has none.
    pub fn upstream(error: &Value) -> FrameError {
        FrameError::Upstream(
            error["message"]
                .as_str()
                .unwrap_or("error event")
                .to_owned(),
        )
    }
}

/// The JSON payload of a `data:` frame.
pub fn parse_frame(data: &str) -> Result<Value, FrameError> {
    serde_json::from_str(data.trim())
        .map_err(|e| FrameError::Malformed(format!("invalid JSON in stream frame: {e}")))
}

/// A provider's event decoder.
pub type Decoder = fn(&SseEvent) -> Result<Decoded, FrameError>;

struct State {
    provider: Provider,
    api_key: String,
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    decode: Decoder,
    pending: VecDeque<Result<String, LlmError>>,
    finished: bool,
}

impl State {
    /// Decodes `events` into `pending`; stops at the end marker or the first error.
    fn push_events(&mut self, events: impl IntoIterator<Item = SseEvent>) {
        for event in events {
            if self.finished {
                return;
            }
            match (self.decode)(&event) {
                Ok(Decoded::Delta(text)) => self.pending.push_back(Ok(text)),
                Ok(Decoded::Skip) => {}
                Ok(Decoded::Done) => self.finished = true,
                Err(FrameError::Malformed(message)) => {
                    self.fail(LlmError::malformed(self.provider, message))
                }
                Err(FrameError::Upstream(message)) => {
                    let message = crate::redact::redact_payload(&message, &self.api_key);
                    self.fail(LlmError::Upstream {
                        provider: self.provider,
                        message,
                    })
                }
            }
        }
    }

    fn fail(&mut self, err: LlmError) {
        self.pending.push_back(Err(err));
        self.finished = true;
    }
}

/// The deltas of a 2xx SSE response. The stream ends after the end marker, at the end of the
/// body, or right after its first `Err`.
pub fn delta_stream(
    provider: Provider,
    api_key: &str,
    response: reqwest::Response,
    decode: Decoder,
) -> BoxStream<'static, Result<String, LlmError>> {
    let state = State {
        provider,
        api_key: api_key.to_owned(),
        body: response.bytes_stream().boxed(),
        parser: SseParser::new(),
        decode,
        pending: VecDeque::new(),
        finished: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.pending.pop_front() {
                return Some((item, state));
            }
            if state.finished {
                return None;
            }
            match state.body.next().await {
                Some(Ok(chunk)) => {
                    let events = state.parser.feed(&chunk);
                    state.push_events(events);
                }
                Some(Err(err)) => {
                    let err = LlmError::from_reqwest(state.provider, err, &state.api_key);
                    state.fail(err);
                }
                None => {
                    let last = state.parser.finish();
                    state.push_events(last);
                    state.finished = true;
                }
            }
        }
    })
    .boxed()
}
