//! The tiny origin of the peer comparison ([`crate::peers`]): a single-threaded hyper HTTP/1.1
//! server answering from memory, so that what is measured is the cache in front of it.
//!
//! - `/obj/<n>`: 1 KiB, `Cache-Control: public, max-age=3600`
//! - `/big/<n>`: 64 KiB, same caching
//! - `/nostore/<anything>`: 1 KiB, `Cache-Control: no-store` (pass-through)
//! - `/slow/<anything>`: like `/obj/`, answered after [`SLOW`] (the slow-origin stampede)
//! - `/__count`: how many requests it has answered (its own excluded), as text
//!
//! Bodies are `application/octet-stream` so that no peer compresses them.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Body size of `/obj/` and `/nostore/`.
pub const SMALL: usize = 1024;
/// Body size of `/big/`.
pub const BIG: usize = 64 * 1024;
/// How long `/slow/` takes to answer: an origin doing real work (a database query, a render).
pub const SLOW: std::time::Duration = std::time::Duration::from_millis(30);

struct Bodies {
    small: Bytes,
    big: Bytes,
    served: AtomicU64,
}

fn respond(bodies: &Bodies, path: &str) -> Response<Full<Bytes>> {
    let (body, cache_control) = if path.starts_with("/obj/") || path.starts_with("/slow/") {
        (bodies.small.clone(), "public, max-age=3600")
    } else if path.starts_with("/big/") {
        (bodies.big.clone(), "public, max-age=3600")
    } else if path.starts_with("/nostore/") {
        (bodies.small.clone(), "no-store")
    } else if path == "/__count" {
        let n = bodies.served.load(Ordering::Relaxed).to_string();
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Full::new(Bytes::from(n)))
            .expect("static response parts are valid");
    } else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CACHE_CONTROL, "no-store")
            .body(Full::new(Bytes::new()))
            .expect("static response parts are valid");
    };
    bodies.served.fetch_add(1, Ordering::Relaxed);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CACHE_CONTROL, cache_control)
        .body(Full::new(body))
        .expect("static response parts are valid")
}

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let pattern: Vec<u8> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    let bodies = Arc::new(Bodies {
        small: Bytes::copy_from_slice(&pattern[..SMALL]),
        big: Bytes::from(pattern),
        served: AtomicU64::new(0),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let slow = req.uri().path().starts_with("/slow/");
                let resp = respond(&bodies, req.uri().path());
                async move {
                    if slow {
                        tokio::time::sleep(SLOW).await;
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
