//! Opaque keyset cursors: base64url of `<kind>|<user id>|<sort key µs>|<id>`. A cursor of another
//! kind or another user is rejected like a malformed one (400).

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::error::AppError;
use crate::http::request::RequestCtx;

pub fn encode(kind: &str, user_id: i64, at: &DateTime<Utc>, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}|{user_id}|{}|{id}", at.timestamp_micros()))
}

/// Decodes a cursor of `kind` issued to `user_id` into `(sort key, id text)`.
pub fn decode(cursor: &str, kind: &str, user_id: i64) -> Result<(DateTime<Utc>, String), AppError> {
    let invalid = || AppError::bad_request("Invalid cursor");
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(4, '|');
    let (Some(k), Some(uid), Some(micros), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if k != kind || uid.parse::<i64>().ok() != Some(user_id) {
        return Err(invalid());
    }
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(invalid)?;
    Ok((at, id.to_string()))
}

/// A keyset position: `(sort key, id)`.
pub type Position<I> = (DateTime<Utc>, I);

/// The list request's `cursor` parameter of `kind` issued to `user_id`: `None` when absent or
/// blank, else its trimmed text (for the ETag) and the keyset position `(sort key, id)` it
/// decodes to. A cursor whose id is not an `I` is invalid like a malformed one (400).
pub fn from_query<I: FromStr>(
    ctx: &RequestCtx,
    kind: &str,
    user_id: i64,
) -> Result<Option<(String, Position<I>)>, AppError> {
    let Some(text) = ctx
        .query_param("cursor")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let (at, id) = decode(&text, kind, user_id)?;
    let id = id
        .parse()
        .map_err(|_| AppError::bad_request("Invalid cursor"))?;
    Ok(Some((text, (at, id))))
}

/// The cursor of the page after `items` when the page is full (`limit` items); `key` gives an
/// item's keyset position `(sort key, id)`.
pub fn after_page<T>(
    kind: &str,
    user_id: i64,
    limit: i64,
    items: &[T],
    key: impl Fn(&T) -> (DateTime<Utc>, String),
) -> Option<String> {
    match items.last() {
        Some(last) if items.len() as i64 == limit => {
            let (at, id) = key(last);
            Some(encode(kind, user_id, &at, &id))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_764_042_435_123_456).unwrap();
        let c = encode("conv", 7, &at, "abc");
        assert_eq!(decode(&c, "conv", 7).unwrap(), (at, "abc".to_string()));
        assert!(decode(&c, "cmp", 7).is_err());
        assert!(decode(&c, "conv", 8).is_err());
        assert!(decode("!!!", "conv", 7).is_err());
        assert!(decode(&URL_SAFE_NO_PAD.encode("conv|7|x|y"), "conv", 7).is_err());
    }
}
