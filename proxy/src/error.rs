//! Errors the proxy answers itself, and the one place they become HTTP statuses.

use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType};

/// A response the proxy generates instead of the origin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeError {
    /// The request has no valid host or a target that is not a path.
    BadRequest,
    /// The request header block exceeds `limits.max_request_header_bytes`.
    HeaderTooLarge,
    /// The request target exceeds `limits.max_uri_bytes`.
    UriTooLong,
    /// `Cache-Control: only-if-cached` and nothing usable is stored.
    NotCached,
    /// The origin refused or dropped the connection.
    OriginUnavailable,
    /// The origin did not answer in time.
    OriginTimeout,
    /// The origin answered with a status pingora turned into an error.
    OriginStatus(u16),
    /// The client sent something the proxy could not read.
    Downstream,
    /// The client did not send its request (body) in time.
    ClientTimeout,
    /// The client connection is gone; nothing can be written.
    ClientGone,
    Internal,
}

impl EdgeError {
    /// Maps a pingora error (the default `fail_to_proxy` logic, with timeouts as 504).
    pub fn from_pingora(e: &Error) -> EdgeError {
        use ErrorType::*;
        match e.etype() {
            HTTPStatus(code) => return EdgeError::OriginStatus(*code),
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                return EdgeError::OriginTimeout
            }
            _ => {}
        }
        match e.esource() {
            ErrorSource::Upstream => EdgeError::OriginUnavailable,
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => EdgeError::ClientGone,
                ReadTimedout => EdgeError::ClientTimeout,
                _ => EdgeError::Downstream,
            },
            ErrorSource::Internal | ErrorSource::Unset => EdgeError::Internal,
        }
    }

    /// The HTTP status; 0 when no response can be written.
    pub fn status(self) -> u16 {
        match self {
            EdgeError::BadRequest | EdgeError::Downstream => 400,
            EdgeError::ClientTimeout => 408,
            EdgeError::HeaderTooLarge => 431,
            EdgeError::UriTooLong => 414,
            EdgeError::NotCached => 504,
            EdgeError::OriginUnavailable => 502,
            EdgeError::OriginTimeout => 504,
            EdgeError::OriginStatus(code) => code,
            EdgeError::ClientGone => 0,
            EdgeError::Internal => 500,
        }
    }

    /// A short machine-readable code (also the `Cache-Status` detail).
    pub fn code(self) -> &'static str {
        match self {
            EdgeError::BadRequest => "bad-request",
            EdgeError::HeaderTooLarge => "header-too-large",
            EdgeError::UriTooLong => "uri-too-long",
            EdgeError::NotCached => "not-cached",
            EdgeError::OriginUnavailable => "origin-unavailable",
            EdgeError::OriginTimeout => "origin-timeout",
            EdgeError::OriginStatus(_) => "origin-error",
            EdgeError::Downstream => "bad-request",
            EdgeError::ClientTimeout => "client-timeout",
            EdgeError::ClientGone => "client-gone",
            EdgeError::Internal => "internal",
        }
    }

    /// The JSON body: `{"error":{"code":"…","status":…}}`.
    pub fn body(self) -> Bytes {
        Bytes::from(
            serde_json::json!({"error": {"code": self.code(), "status": self.status()}})
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let refused = Error::new(ErrorType::ConnectRefused).into_up();
        assert_eq!(EdgeError::from_pingora(&refused).status(), 502);
        let timeout = Error::new(ErrorType::ReadTimedout).into_up();
        assert_eq!(EdgeError::from_pingora(&timeout).status(), 504);
        let slow_client = Error::new(ErrorType::ReadTimedout).into_down();
        assert_eq!(EdgeError::from_pingora(&slow_client).status(), 408);
        let status = Error::new(ErrorType::HTTPStatus(503));
        assert_eq!(EdgeError::from_pingora(&status).status(), 503);
        let gone = Error::new(ErrorType::ConnectionClosed).into_down();
        assert_eq!(EdgeError::from_pingora(&gone).status(), 0);
    }
}
