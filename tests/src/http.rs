//! HTTP helpers shared by every suite: [`send`] reads a whole response into a [`Resp`]; [`header`]
//! reads one header of a response that is still streaming (or whose body is read otherwise).

use reqwest::header::HeaderMap;
use serde_json::Value;

/// A response read to its end: what the tests look at.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// Header `name` ("" when absent or not text).
    pub fn header(&self, name: &str) -> &str {
        header_str(&self.headers, name)
    }

    /// The proxy's `X-Cache`.
    pub fn x_cache(&self) -> &str {
        self.header("x-cache")
    }

    /// The header fields except `varying` (lower-case names), sorted: what two writers of the
    /// same response must agree on.
    pub fn stable_headers(&self, varying: &[&str]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(k, _)| !varying.contains(&k.as_str()))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        v.sort();
        v
    }

    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", self.body))
    }
}

/// Sends `req` and reads the whole answer.
pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let resp = req.send().await.expect("request reaches the server");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Resp {
        status,
        headers,
        body,
    }
}

/// Header `name` of a response whose body is not read into a [`Resp`] ("" when absent).
pub fn header(r: &reqwest::Response, name: &str) -> String {
    header_str(r.headers(), name).to_string()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Sends `request` as raw bytes on a fresh connection to `addr` and returns everything the server
/// sends until it closes the connection or `timeout` passes. No client normalises the target: what
/// is written is what the server parses (traversal attempts, partial bodies).
pub async fn raw_exchange(
    addr: std::net::SocketAddr,
    request: &[u8],
    timeout: std::time::Duration,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write the request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `stream` into `out` until `done(out)` holds; each read must come within 10 s and
/// the connection must stay open until then.
pub async fn read_until(
    stream: &mut tokio::net::TcpStream,
    out: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) {
    use tokio::io::AsyncReadExt;
    while !done(out) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("more bytes within 10 s")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(out));
        out.extend_from_slice(&chunk[..n]);
    }
}

/// The status code of a raw HTTP/1.1 response (0 when there is none).
pub fn raw_status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
