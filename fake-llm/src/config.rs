//! Start-up settings of the fake and the failure modes it can inject.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A failure the fake injects into a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this HTTP status (401, 429, 500, ...) and a provider-shaped error body.
    Status(u16),
    /// Stream about half of the chunks, then abort the connection without finishing the body.
    DropMidStream,
    /// Stream about half of the chunks, then send a frame whose JSON is broken.
    Malformed,
    /// Stream about half of the chunks, then send the provider's in-stream error event.
    StreamError,
}

impl FromStr for Failure {
    type Err = String;

    /// Accepts `401`, `429`, `500` (any status 400..=599), `drop-mid-stream`, `malformed`
    /// and `stream-error`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drop-mid-stream" => Ok(Failure::DropMidStream),
            "malformed" => Ok(Failure::Malformed),
            "stream-error" => Ok(Failure::StreamError),
            other => match other.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => Ok(Failure::Status(code)),
                _ => Err(format!(
                    "unknown failure {other:?}: expected an HTTP status 400..=599, \
                     drop-mid-stream, malformed or stream-error"
                )),
            },
        }
    }
}

/// Settings applied to every request unless the model name overrides them (see [`crate::Scenario`]).
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Delay before the response headers (the "time to first byte").
    pub latency: Duration,
    /// Number of content chunks a streamed answer is split into.
    pub chunks: usize,
    /// Gap between two streamed chunks.
    pub chunk_delay: Duration,
    /// Failure injected into every request, if any.
    pub failure: Option<Failure>,
}

impl Default for FakeConfig {
    /// Demo-friendly: about 120 ms to the first byte and 8 chunks 35 ms apart.
    fn default() -> Self {
        FakeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::from_millis(120),
            chunks: 8,
            chunk_delay: Duration::from_millis(35),
            failure: None,
        }
    }
}

impl FakeConfig {
    /// No artificial delays: what tests usually want.
    pub fn instant() -> Self {
        FakeConfig {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            ..FakeConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_failures() {
        assert_eq!("500".parse(), Ok(Failure::Status(500)));
        assert_eq!("drop-mid-stream".parse(), Ok(Failure::DropMidStream));
        assert_eq!("malformed".parse(), Ok(Failure::Malformed));
        assert!("200".parse::<Failure>().is_err());
        assert!("nope".parse::<Failure>().is_err());
    }
}
