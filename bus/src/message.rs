//! The wire format of one invalidation: a JSON object, the same whether the origin's outbox
//! relay or a proxy's admin purge published it.
//!
//! ```json
//! {"groups": ["user:42:conversations"], "paths": ["/api/v1/conversations/9f2c"],
//!  "urls": [], "prefixes": [], "all": false, "soft": false}
//! ```
//!
//! Every field is optional and empty ones are omitted. Groups, paths and prefixes apply on every
//! host; `urls` are absolute (`http://host/path`). Unknown fields are ignored (a newer publisher
//! may add some). The message id (`Nats-Msg-Id`) is the origin's outbox id (a decimal number,
//! commit-ordered) or `admin-…` for an admin purge.

use serde::{Deserialize, Serialize};

/// Largest message accepted (an invalidation names a few groups and URLs).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    /// Cache groups, as in `Cache-Group-Invalidation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Origin-relative paths (with their query), each starting with `/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Absolute URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Path prefixes, each starting with `/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Everything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Mark stale instead of removing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

/// Why a message body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    TooLarge(usize),
    Json(String),
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::TooLarge(n) => write!(f, "message of {n} bytes is too large"),
            MessageError::Json(e) => write!(f, "not an invalidation: {e}"),
        }
    }
}

impl std::error::Error for MessageError {}

impl Invalidation {
    /// Parses a message body (at most [`MAX_MESSAGE_BYTES`]).
    pub fn from_json(body: &[u8]) -> Result<Invalidation, MessageError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge(body.len()));
        }
        serde_json::from_slice(body).map_err(|e| MessageError::Json(e.to_string()))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether it names nothing to invalidate.
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.groups.is_empty()
            && self.paths.is_empty()
            && self.urls.is_empty()
            && self.prefixes.is_empty()
    }
}

/// The outbox id of an origin message (`Nats-Msg-Id` in decimal), if it is one.
pub fn outbox_id(msg_id: Option<&str>) -> Option<u64> {
    msg_id?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_omitted_and_unknown_ones_ignored() {
        let m = Invalidation {
            groups: vec!["g".into()],
            paths: vec!["/a".into()],
            ..Invalidation::default()
        };
        assert_eq!(m.to_json(), br#"{"groups":["g"],"paths":["/a"]}"#.to_vec());
        let newer = Invalidation::from_json(br#"{"groups":["g"],"priority":1}"#).unwrap();
        assert_eq!(newer.groups, ["g"]);
        assert!(Invalidation::from_json(b"{}").unwrap().is_empty());
        assert!(Invalidation::from_json(b"not json").is_err());
        assert!(Invalidation::from_json(&vec![b' '; MAX_MESSAGE_BYTES + 1]).is_err());
        assert_eq!(outbox_id(Some("42")), Some(42));
        assert_eq!(outbox_id(Some("admin-x")), None);
    }
}
