//! The fault-injection origin: a small hyper server whose behaviour the scenarios switch at run
//! time (answer, hang with sockets open, down), on a fixed port so it can be "restarted".
//!
//! Routes: `/obj/<bytes>/<key>` a cacheable body of that size (`max-age=600`);
//! `/sie/<key>` cacheable for 1 s with `stale-if-error=600`; `/slow/<ms>` answers after that
//! long (uncacheable); anything else a small uncacheable `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ANSWER: u8 = 0;
const HANG: u8 = 1;

/// See the module documentation.
pub struct FaultOrigin {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    pub requests: Arc<AtomicU64>,
    server: Option<JoinHandle<()>>,
}

impl FaultOrigin {
    pub async fn start() -> anyhow::Result<FaultOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut o = FaultOrigin {
            addr,
            mode: Arc::new(AtomicU8::new(ANSWER)),
            requests: Arc::new(AtomicU64::new(0)),
            server: None,
        };
        o.serve(listener);
        Ok(o)
    }

    fn serve(&mut self, listener: TcpListener) {
        let mode = self.mode.clone();
        let requests = self.requests.clone();
        self.server = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let mode = mode.clone();
                let requests = requests.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let mode = mode.clone();
                        requests.fetch_add(1, Ordering::Relaxed);
                        async move { Ok::<_, Infallible>(answer(req, &mode).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }));
    }

    /// Accepts and reads, never answers (a stopped process with its sockets open).
    pub fn hang(&self) {
        self.mode.store(HANG, Ordering::Release);
    }

    pub fn answer(&self) {
        self.mode.store(ANSWER, Ordering::Release);
    }

    /// Killed: the listener and every connection closed.
    pub fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    /// Restarted on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let listener = TcpListener::bind(self.addr).await?;
        self.answer();
        self.serve(listener);
        Ok(())
    }
}

impl Drop for FaultOrigin {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn answer(req: Request<Incoming>, mode: &AtomicU8) -> Response<Full<Bytes>> {
    while mode.load(Ordering::Acquire) == HANG {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (cache, body) = match parts.as_slice() {
        ["obj", size, _key] => {
            let n: usize = size.parse().unwrap_or(0).min(16 << 20);
            ("public, max-age=600", Bytes::from(vec![b'x'; n]))
        }
        ["sie", key] => (
            "public, max-age=1, stale-if-error=600",
            Bytes::from(format!("fresh {key}")),
        ),
        ["slow", ms] => {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ("no-store", Bytes::from_static(b"slow done"))
        }
        _ => ("no-store", Bytes::from_static(b"ok")),
    };
    Response::builder()
        .header("cache-control", cache)
        .header("content-type", "application/octet-stream")
        .body(Full::new(body))
        .expect("static response")
}
