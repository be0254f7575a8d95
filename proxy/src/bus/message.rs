//! The wire format of one invalidation on the bus: a JSON object, the same whether the origin's
//! outbox relay or a proxy's admin purge published it.
//!
//! ```json
//! {"groups": ["user:42:conversations"], "paths": ["/api/v1/conversations/9f2c"],
//!  "urls": [], "prefixes": [], "all": false, "soft": false}
//! ```
//!
//! Every field is optional. Groups, paths and prefixes apply on every host; `urls` are absolute
//! (`http://host/path`). The message id (`Nats-Msg-Id`) is the origin's outbox id (a decimal
//! number, commit-ordered) or `admin-…` for an admin purge.

use crate::cache::key::{normalise_path_query, UrlKey};
use crate::cache::Scope;
use serde::{Deserialize, Serialize};

/// Largest message accepted (an invalidation names a few groups and URLs).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Unknown fields are ignored (a newer publisher may add some); what is known is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

/// Why a message was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    #[error("not an invalidation: {0}")]
    Json(String),
    #[error("invalid url {0:?}")]
    Url(String),
    #[error("paths and prefixes must start with '/': {0:?}")]
    Path(String),
    #[error("names nothing to invalidate")]
    Empty,
}

impl Invalidation {
    /// Parses and checks a message body.
    pub fn parse(body: &[u8]) -> Result<Invalidation, MessageError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge(body.len()));
        }
        let msg: Invalidation =
            serde_json::from_slice(body).map_err(|e| MessageError::Json(e.to_string()))?;
        msg.scopes()?;
        Ok(msg)
    }

    /// The message from the scopes of an admin purge.
    pub fn from_scopes(scopes: &[Scope], soft: bool) -> Invalidation {
        let mut msg = Invalidation {
            soft,
            ..Invalidation::default()
        };
        for scope in scopes {
            match scope {
                Scope::Url(u) => msg.urls.push(u.primary()),
                Scope::Path(p) => msg.paths.push(p.clone()),
                Scope::Prefix(p) => msg.prefixes.push(p.clone()),
                Scope::Group { name, .. } => msg.groups.push(name.clone()),
                Scope::All => msg.all = true,
            }
        }
        msg
    }

    /// What the message invalidates on this node.
    pub fn scopes(&self) -> Result<Vec<Scope>, MessageError> {
        if self.all {
            return Ok(vec![Scope::All]);
        }
        let mut scopes = Vec::new();
        for g in &self.groups {
            scopes.push(Scope::Group {
                host: None,
                name: g.clone(),
            });
        }
        for p in &self.paths {
            if !p.starts_with('/') {
                return Err(MessageError::Path(p.clone()));
            }
            scopes.push(Scope::Path(normalise_path_query(p)));
        }
        for p in &self.prefixes {
            if !p.starts_with('/') {
                return Err(MessageError::Path(p.clone()));
            }
            scopes.push(Scope::Prefix(p.clone()));
        }
        for u in &self.urls {
            let key = UrlKey::from_absolute(u).ok_or_else(|| MessageError::Url(u.clone()))?;
            scopes.push(Scope::Url(key));
        }
        if scopes.is_empty() {
            return Err(MessageError::Empty);
        }
        Ok(scopes)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
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
    fn round_trip_and_scopes() {
        let m = Invalidation::parse(
            br#"{"groups":["g"],"paths":["/a?b=1&a=2"],"urls":["http://h:81/x"],"prefixes":["/p"]}"#,
        )
        .unwrap();
        let scopes = m.scopes().unwrap();
        assert_eq!(scopes.len(), 4);
        assert!(scopes.contains(&Scope::Path("/a?a=2&b=1".into())));
        assert!(scopes.contains(&Scope::Url(UrlKey::new("h:81", "/x"))));
        let again = Invalidation::parse(&m.to_json()).unwrap();
        assert_eq!(again, m);
        let all = Invalidation::from_scopes(&[Scope::All], true);
        assert_eq!(all.to_json(), br#"{"all":true,"soft":true}"#.to_vec());
    }

    #[test]
    fn bad_messages_are_refused() {
        for body in [
            &b"not json"[..],
            br#"{}"#,
            br#"{"paths":["relative"]}"#,
            br#"{"urls":["ftp://x/y"]}"#,
            br#"{"groups":"not a list"}"#,
        ] {
            assert!(Invalidation::parse(body).is_err(), "{body:?}");
        }
        assert!(Invalidation::parse(&vec![b' '; MAX_MESSAGE_BYTES + 1]).is_err());
        // a field from a newer publisher does not hide what this node understands
        let newer = Invalidation::parse(br#"{"groups":["g"],"priority":1}"#).unwrap();
        assert_eq!(newer.groups, ["g"]);
        assert_eq!(outbox_id(Some("42")), Some(42));
        assert_eq!(outbox_id(Some("admin-x")), None);
    }
}
