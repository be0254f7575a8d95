//! Per-request behaviour: the start-up [`FakeConfig`] overridden by markers in the model name.
//!
//! A model name may contain any of these markers (anywhere, e.g. `gpt-4o-slow-300` or `fail-429`):
//! `fail-<status>` (400..=599), `slow-<ms>` (latency before the first byte), `drop-mid-stream`,
//! `malformed`, `stream-error`. One running fake can so serve many scenarios at once.

use std::time::Duration;

use crate::config::{Failure, FakeConfig};

/// What one request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub latency: Duration,
    pub chunks: usize,
    pub chunk_delay: Duration,
    pub failure: Option<Failure>,
}

impl Scenario {
    /// The config's settings, overridden by the markers found in `model`.
    pub fn for_model(config: &FakeConfig, model: &str) -> Scenario {
        let mut scenario = Scenario {
            latency: config.latency,
            chunks: config.chunks.max(1),
            chunk_delay: config.chunk_delay,
            failure: config.failure,
        };
        if let Some(ms) = number_after(model, "slow-") {
            scenario.latency = Duration::from_millis(ms);
        }
        if let Some(code) = number_after(model, "fail-") {
            if let Ok(code) = u16::try_from(code) {
                if (400..=599).contains(&code) {
                    scenario.failure = Some(Failure::Status(code));
                }
            }
        }
        if model.contains("drop-mid-stream") {
            scenario.failure = Some(Failure::DropMidStream);
        } else if model.contains("malformed") {
            scenario.failure = Some(Failure::Malformed);
        } else if model.contains("stream-error") {
            scenario.failure = Some(Failure::StreamError);
        }
        scenario
    }
}

/// The decimal number right after the first `marker` in `s`.
fn number_after(s: &str, marker: &str) -> Option<u64> {
    let start = s.find(marker)? + marker.len();
    let digits: String = s[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_override_config() {
        let config = FakeConfig::instant();
        let plain = Scenario::for_model(&config, "gpt-4o");
        assert_eq!(plain.failure, None);
        assert_eq!(plain.latency, Duration::ZERO);

        let s = Scenario::for_model(&config, "gpt-4o-slow-250");
        assert_eq!(s.latency, Duration::from_millis(250));
        assert_eq!(
            Scenario::for_model(&config, "fail-429").failure,
            Some(Failure::Status(429))
        );
        assert_eq!(Scenario::for_model(&config, "fail-200").failure, None);
        assert_eq!(
            Scenario::for_model(&config, "drop-mid-stream").failure,
            Some(Failure::DropMidStream)
        );
        assert_eq!(
            Scenario::for_model(&config, "x-malformed").failure,
            Some(Failure::Malformed)
        );
    }
}
