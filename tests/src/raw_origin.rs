//! A raw-socket origin for what a hyper server cannot be made to send (interim `1xx` responses
//! in the same write as the final one): it answers every request head it reads with the same
//! bytes, on keep-alive connections.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Binds `127.0.0.1:0` and answers each request head (requests without a body) with `answer`,
/// written in one write; `{n}` in it becomes the request's number (1, 2, …) over all
/// connections. Serves until the test's runtime ends.
pub async fn spawn(answer: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw origin");
    let addr = listener.local_addr().expect("raw origin address");
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        let bytes = answer.replace("{n}", &n.to_string());
                        if conn.write_all(bytes.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}
