//! One-off HTTP/1.1 requests for setup and bookkeeping (logins, metrics scrapes, admin stats):
//! a fresh connection each ([`KeepAlive`] for tight polling), never on a measured path.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, SET_COOKIE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The request: `Host`, an optional bearer token and an optional JSON body.
fn build(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    json: Option<&serde_json::Value>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string());
    if let Some(token) = bearer {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match json {
        Some(v) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(v)?)
        }
        None => Bytes::new(),
    };
    Ok(builder.body(Full::new(body))?)
}

/// Sends one request on a new connection.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    json: Option<&serde_json::Value>,
) -> anyhow::Result<Reply> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(build(addr, method, path, bearer, json)?)
        .await?;
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

pub async fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> anyhow::Result<Reply> {
    request(addr, Method::GET, path, bearer, None).await
}

/// Logs in and returns the access JWT (from the `access_token_cookie` Set-Cookie).
pub async fn login(addr: SocketAddr, username: &str, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"username": username, "password": password});
    let reply = request(addr, Method::POST, "/api/v1/auth/login", None, Some(&body)).await?;
    anyhow::ensure!(
        reply.status.is_success(),
        "login of {username} failed: {} {}",
        reply.status,
        reply.text()
    );
    reply
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("access_token_cookie="))
        .map(|c| c.split(';').next().unwrap_or("").to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow::anyhow!("login of {username}: no access_token_cookie"))
}

/// One keep-alive connection for repeated bookkeeping requests (tight polling of a node's
/// `/stats`), reconnecting when the server closes it.
pub struct KeepAlive {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, sender: None }
    }

    /// Sends one request on the kept connection (a new one if it was closed).
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json: Option<&serde_json::Value>,
    ) -> anyhow::Result<Reply> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        let request = build(self.addr, method, path, bearer, json)?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        self.sender = Some(sender);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str, bearer: Option<&str>) -> anyhow::Result<Reply> {
        self.request(Method::GET, path, bearer, None).await
    }
}
