//! What an invalidation message (the shared wire format, [`llmselect_bus::Invalidation`]) means
//! on this node: the [`Scope`]s it purges, and the message an admin purge publishes.

use crate::cache::key::{normalise_path_query, UrlKey};
use crate::cache::Scope;
pub(crate) use llmselect_bus::{outbox_id, Invalidation};

/// Why a message cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{0}")]
    Format(String),
    #[error("invalid url {0:?}")]
    Url(String),
    #[error("paths and prefixes must start with '/': {0:?}")]
    Path(String),
    #[error("names nothing to invalidate")]
    Empty,
}

/// Parses a message body into what it purges here.
pub fn parse(body: &[u8]) -> Result<(Vec<Scope>, bool), MessageError> {
    let msg = Invalidation::from_json(body).map_err(|e| MessageError::Format(e.to_string()))?;
    Ok((scopes(&msg)?, msg.soft))
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

/// What a message invalidates on this node: groups, paths and prefixes on every host.
pub fn scopes(msg: &Invalidation) -> Result<Vec<Scope>, MessageError> {
    if msg.all {
        return Ok(vec![Scope::All]);
    }
    let mut scopes = Vec::new();
    for g in &msg.groups {
        scopes.push(Scope::Group {
            host: None,
            name: g.clone(),
        });
    }
    for p in &msg.paths {
        if !p.starts_with('/') {
            return Err(MessageError::Path(p.clone()));
        }
        scopes.push(Scope::Path(normalise_path_query(p)));
    }
    for p in &msg.prefixes {
        if !p.starts_with('/') {
            return Err(MessageError::Path(p.clone()));
        }
        scopes.push(Scope::Prefix(p.clone()));
    }
    for u in &msg.urls {
        let key = UrlKey::from_absolute(u).ok_or_else(|| MessageError::Url(u.clone()))?;
        scopes.push(Scope::Url(key));
    }
    if scopes.is_empty() {
        return Err(MessageError::Empty);
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_scopes() {
        let (scopes, soft) = parse(
            br#"{"groups":["g"],"paths":["/a?b=1&a=2"],"urls":["http://h:81/x"],"prefixes":["/p"]}"#,
        )
        .unwrap();
        assert!(!soft);
        assert_eq!(scopes.len(), 4);
        assert!(scopes.contains(&Scope::Path("/a?a=2&b=1".into())));
        assert!(scopes.contains(&Scope::Url(UrlKey::new("h:81", "/x"))));
        let back = from_scopes(&scopes, true);
        assert_eq!(parse(&back.to_json()).unwrap(), (scopes, true));
        let all = from_scopes(&[Scope::All], true);
        assert_eq!(all.to_json(), br#"{"all":true,"soft":true}"#.to_vec());
    }

    #[test]
    fn messages_that_cannot_be_applied_are_refused() {
        for body in [
            &b"not json"[..],
            br#"{}"#,
            br#"{"paths":["relative"]}"#,
            br#"{"urls":["ftp://x/y"]}"#,
            br#"{"groups":"not a list"}"#,
        ] {
            assert!(parse(body).is_err(), "{body:?}");
        }
        // a field from a newer publisher does not hide what this node understands
        let (scopes, _) = parse(br#"{"groups":["g"],"priority":1}"#).unwrap();
        assert_eq!(scopes.len(), 1);
    }
}
