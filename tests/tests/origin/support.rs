//! Helpers shared by the origin tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use llmselect_e2e::http::header;
use llmselect_e2e::origin::{TestOrigin, TestUser};
use llmselect_e2e::stack::Stack;
use reqwest::Method;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The origin with the default test configuration and one registered, logged-in user
/// ([`Stack::origin`], [`Stack::user`]).
pub async fn origin_with_user(username: &str) -> Stack {
    Stack::builder().origin(|_| {}).user(username).start().await
}

/// GET `path` as `user`; asserts a 200 and returns the JSON body.
pub async fn get_json(o: &TestOrigin, user: &TestUser, path: &str) -> Value {
    let r = o.get_as(user, path).send().await.expect("GET");
    assert_eq!(r.status(), 200, "GET {path}");
    json(r).await
}

/// `GET path` as `user`.
pub async fn get(o: &TestOrigin, user: &TestUser, path: &str) -> reqwest::Response {
    o.get_as(user, path).send().await.expect("GET")
}

/// `GET path` as `user` with `If-None-Match: etag`.
pub async fn get_if_none_match(
    o: &TestOrigin,
    user: &TestUser,
    path: &str,
    etag: &str,
) -> reqwest::Response {
    o.get_as(user, path)
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("conditional GET")
}

/// `GET path` without credentials.
pub async fn get_anonymous(o: &TestOrigin, path: &str) -> reqwest::Response {
    o.http.get(o.url(path)).send().await.expect("GET")
}

/// `GET path` on the operations listener (`/metrics`, detailed `/health`).
pub async fn get_ops(o: &TestOrigin, path: &str) -> reqwest::Response {
    o.http.get(o.ops_url(path)).send().await.expect("GET (ops)")
}

/// A `method` request without a body as `user`.
pub async fn send_as(
    o: &TestOrigin,
    user: &TestUser,
    method: Method,
    path: &str,
) -> reqwest::Response {
    o.request_as(user, method, path)
        .send()
        .await
        .expect("request")
}

/// A `method` request with the JSON `body` as `user`.
pub async fn send_json(
    o: &TestOrigin,
    user: &TestUser,
    method: Method,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    o.request_as(user, method, path)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// `GET path` as `user`, expecting a 200: the statements it cost (`Server-Timing`) and its JSON.
pub async fn get_counted(o: &TestOrigin, user: &TestUser, path: &str) -> (u32, Value) {
    let r = o.get_as(user, path).send().await.expect("GET");
    assert_eq!(r.status(), 200, "GET {path}");
    (statements(&r), json(r).await)
}

/// `GET /api/v1/auth/me` with `Authorization: Bearer <token>`.
pub async fn me_with_bearer(o: &TestOrigin, token: &str) -> reqwest::Response {
    o.http
        .get(o.url("/api/v1/auth/me"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("GET /api/v1/auth/me")
}

/// String field `field` of every element of the array `key` of a list body, in order (for
/// example the ids of `conversations`).
pub fn strings(body: &Value, key: &str, field: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} array"))
        .iter()
        .map(|item| item[field].as_str().expect("string field").to_string())
        .collect()
}

/// Integer field `field` of every element of the array `key` of a list body, in order.
pub fn ints(body: &Value, key: &str, field: &str) -> Vec<i64> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} array"))
        .iter()
        .map(|item| item[field].as_i64().expect("integer field"))
        .collect()
}

/// The statement count from `Server-Timing: db;desc="N statements"`.
pub fn statements(r: &reqwest::Response) -> u32 {
    let st = header(r, "server-timing");
    let start = st.find("desc=\"").expect("server-timing db entry") + 6;
    let rest = &st[start..];
    rest[..rest.find(' ').expect("count")]
        .parse()
        .expect("number")
}

pub async fn json(r: reqwest::Response) -> Value {
    r.json().await.expect("JSON body")
}

/// A TCP forwarder between the origin and PostgreSQL that the test can cut and restore, to
/// simulate losing the database without touching the shared server.
pub struct Forwarder {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind forwarder");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Forwarder {
            addr,
            up,
            cut,
            task,
        }
    }

    /// Refuses new connections and closes the open ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A minimal HTTP server answering every request with `body` (JSON) and counting requests; stands
/// in for a provider's model-list endpoint.
pub struct MiniHttp {
    pub addr: SocketAddr,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl MiniHttp {
    pub async fn start(body: &'static str) -> MiniHttp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hits2 = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let hits = hits2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        MiniHttp { addr, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for MiniHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
