//! A client stream with a deadline on each request header block.
//!
//! The stream cannot parse HTTP, and does not need to: it watches the bytes go by. A header
//! block ends at the first empty line after some content. The deadline starts at accept, and on
//! a kept-alive connection again with the first byte read after a response was written; it is
//! lifted when the header block ends. A read still waiting when it passes gets a best-effort
//! `408` written and fails, which makes pingora close the connection. Between requests pingora's
//! own keep-alive timeout applies; request bodies have their own deadline in the proxy hooks.
//!
//! HTTP/2 (prior knowledge or ALPN `h2`) and upgraded connections (after a `101`) are passed
//! through untouched: their frames have no empty lines, and pingora applies its own timeouts.
//! An interim response (`100 Continue`, `103 Early Hints`) does not end the request: the body a
//! client sends after `100 Continue` is under the body deadlines, not taken for a header block.

use crate::metrics;
use async_trait::async_trait;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a header block: `content` once a byte other than CR/LF was seen, `line_start`
    /// right after a line feed.
    Header { content: bool, line_start: bool },
    /// The header block is complete; the request is being handled.
    Request,
    /// A response was (at least partly) written; the next bytes start a new request.
    Responded,
    /// Not HTTP/1 (HTTP/2, or after a `101`), or the deadline fired: no more bookkeeping.
    Passthrough,
}

/// See the module documentation.
pub struct DeadlineStream {
    inner: Stream,
    timeout: Duration,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    /// Bytes of a possible HTTP/2 preface matched so far (first request only).
    preface: Option<usize>,
}

impl std::fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl DeadlineStream {
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        DeadlineStream {
            inner,
            timeout,
            phase: if h2 {
                Phase::Passthrough
            } else {
                Phase::Header {
                    content: false,
                    line_start: false,
                }
            },
            deadline: Box::pin(tokio::time::sleep(timeout)),
            preface: Some(0),
        }
    }

    /// The first bytes of a response: the next bytes read start a new request, unless the
    /// connection switches protocols (`101`: what follows is not HTTP/1).
    fn responding(&mut self, first: &[u8]) {
        if self.phase == Phase::Request && !is_interim(first) {
            self.phase = if first.starts_with(b"HTTP/1.1 101") {
                Phase::Passthrough
            } else {
                Phase::Responded
            };
        }
    }

    /// Follows the header block through freshly read `bytes`.
    fn observe(&mut self, bytes: &[u8]) {
        if let Some(matched) = self.preface {
            let n = bytes.len().min(H2_PREFACE.len() - matched);
            if bytes[..n] == H2_PREFACE[matched..matched + n] {
                if matched + n == H2_PREFACE.len() {
                    self.phase = Phase::Passthrough;
                    self.preface = None;
                    return;
                }
                self.preface = Some(matched + n);
            } else {
                self.preface = None;
            }
        }
        if self.phase == Phase::Responded && !bytes.is_empty() {
            self.phase = Phase::Header {
                content: false,
                line_start: false,
            };
            self.deadline.as_mut().reset(Instant::now() + self.timeout);
        }
        let Phase::Header {
            mut content,
            mut line_start,
        } = self.phase
        else {
            return;
        };
        // From line feed to line feed (memchr), not byte by byte: a line counts as content as
        // soon as it has a byte other than CR, which is almost always its first.
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', bytes) {
            if bytes[start..end].iter().any(|&b| b != b'\r') {
                content = true;
                line_start = false;
            }
            if content && line_start {
                self.phase = Phase::Request;
                self.preface = None;
                return;
            }
            line_start = true;
            start = end + 1;
        }
        if bytes[start..].iter().any(|&b| b != b'\r') {
            content = true;
            line_start = false;
        }
        self.phase = Phase::Header {
            content,
            line_start,
        };
    }
}

/// Whether written bytes start an interim (1xx) response other than `101`, after which the same
/// request goes on.
fn is_interim(first: &[u8]) -> bool {
    first.len() >= 12
        && first.starts_with(b"HTTP/1.")
        && first[9] == b'1'
        && &first[9..12] != b"101"
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    this.observe(new);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if !matches!(this.phase, Phase::Header { .. }) {
                    return Poll::Pending;
                }
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Deadline passed with the header incomplete: say so if the socket takes it.
                this.phase = Phase::Passthrough;
                metrics::record_client_timeout("header");
                let _ = Pin::new(&mut this.inner).poll_write(cx, TIMEOUT_RESPONSE);
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request header deadline passed",
                )))
            }
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.responding(buf);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.responding(first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora_core::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> DeadlineStream {
        let (a, _b) = tokio::io::duplex(64);
        DeadlineStream::new(Box::new(a), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn the_header_ends_at_the_first_empty_line_after_content() {
        let mut s = stream();
        s.observe(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n");
        assert!(matches!(s.phase, Phase::Header { .. }));
        s.observe(b"\r");
        s.observe(b"\n");
        assert_eq!(s.phase, Phase::Request);
        // bare LF line ends too
        let mut s = stream();
        s.observe(b"GET / HTTP/1.1\nHost: a\n\n");
        assert_eq!(s.phase, Phase::Request);
    }

    /// The rule, one byte at a time: where the header block ends (`None`: not in `bytes`).
    fn header_end_bytewise(bytes: &[u8]) -> Option<usize> {
        let (mut content, mut line_start) = (false, false);
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\r' => {}
                b'\n' if content && line_start => return Some(i),
                b'\n' => line_start = true,
                _ => (content, line_start) = (true, false),
            }
        }
        None
    }

    #[tokio::test]
    async fn the_header_end_is_found_however_the_bytes_are_split() {
        let inputs: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody",
            b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nX: \r\r\n\r\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"\n\n\r\n",
            b"GET /\n\rX\n\r\n",
        ];
        for input in inputs {
            let expected = header_end_bytewise(input);
            for split in 0..=input.len() {
                for second in split..=input.len() {
                    let mut s = stream();
                    let mut found = None;
                    let parts = [&input[..split], &input[split..second], &input[second..]];
                    let mut offset = 0;
                    for part in parts {
                        if found.is_none() {
                            s.observe(part);
                            if s.phase == Phase::Request {
                                found = Some(offset + part.len());
                            }
                        }
                        offset += part.len();
                    }
                    // the request is seen complete within the part holding the final LF
                    match expected {
                        Some(end) => {
                            let part_end = [split, second, input.len()]
                                .into_iter()
                                .find(|&p| p > end)
                                .unwrap();
                            assert_eq!(found, Some(part_end), "{input:?} {split} {second}");
                        }
                        None => assert_eq!(found, None, "{input:?} {split} {second}"),
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn a_later_request_rearms_the_deadline_but_an_upgrade_does_not() {
        let mut s = stream();
        s.observe(b"GET / HTTP/1.1\r\n\r\n");
        s.responding(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(s.phase, Phase::Responded);
        s.observe(b"GET /next");
        assert!(matches!(s.phase, Phase::Header { content: true, .. }));
        s.observe(b" HTTP/1.1\r\n\r\n");
        s.responding(b"HTTP/1.1 101 Switching Protocols\r\n");
        assert_eq!(s.phase, Phase::Passthrough);
        s.observe(b"frames");
        assert_eq!(s.phase, Phase::Passthrough);
    }

    #[tokio::test]
    async fn a_body_after_100_continue_is_not_a_new_header_block() {
        let mut s = stream();
        s.observe(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
        s.responding(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(s.phase, Phase::Request);
        s.observe(b"body");
        assert_eq!(s.phase, Phase::Request);
        s.responding(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(s.phase, Phase::Responded);
    }

    #[tokio::test]
    async fn an_h2_preface_turns_the_deadline_off() {
        let mut s = stream();
        s.observe(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(s.phase, Phase::Passthrough);
    }
}
