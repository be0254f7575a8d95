//! Compression: compressible responses are stored encoded once per `Accept-Encoding` bucket,
//! hits serve the stored bytes, validators stay per representation.

use crate::{env, env_with};
use llmselect_e2e::scripted_origin::Route;
use reqwest::header::HeaderMap;
use std::io::Read;

/// A response read as bytes (the client decodes nothing).
struct Raw {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn vary(&self) -> Vec<String> {
        self.headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect()
    }
}

async fn fetch(req: reqwest::RequestBuilder) -> Raw {
    let resp = req.send().await.expect("request reaches the proxy");
    Raw {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.expect("body").to_vec(),
    }
}

fn decode(coding: &str, body: &[u8]) -> String {
    let mut out = String::new();
    match coding {
        "br" => brotli::Decompressor::new(body, 4096).read_to_string(&mut out),
        "gzip" => flate2::read::GzDecoder::new(body).read_to_string(&mut out),
        other => panic!("unexpected coding {other:?}"),
    }
    .expect("a complete encoded stream");
    out
}

/// A 20-row JSON list, well above the 1 KiB threshold.
fn list_body() -> String {
    let rows: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"id":"00000000-0000-0000-0000-{i:012}","title":"Conversation {i}","model":"gpt-4o-mini","created_at":"2026-11-30T12:00:00Z"}}"#
            )
        })
        .collect();
    format!(r#"{{"items":[{}],"next":null}}"#, rows.join(","))
}

fn json_route(body: &str) -> Route {
    Route::ok(body)
        .header("content-type", "application/json")
        .cache("public, max-age=60")
        .etag("\"v1\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_stored_encoded_per_bucket_and_hits_serve_the_stored_bytes() {
    let e = env().await;
    let body = list_body();
    e.scripted().route("GET", "/list", json_route(&body));
    let p = e.proxy();
    let br = || {
        p.get("/list")
            .header("accept-encoding", "gzip, deflate, br")
    };

    let miss = fetch(br()).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.header("content-encoding"), "br");
    assert_eq!(miss.header("etag"), "\"v1-br\"");
    assert!(miss.vary().contains(&"accept-encoding".to_string()));
    assert_eq!(decode("br", &miss.body), body);
    assert!(
        miss.body.len() * 3 < body.len(),
        "{} bytes",
        miss.body.len()
    );

    // another spelling of the same bucket: a fast-path hit with the very bytes stored
    let fast = || async { p.stats().await["fast_hits"].as_u64().unwrap() };
    let fast_before = fast().await;
    let hit = fetch(
        p.get("/list")
            .header("accept-encoding", "BR;q=1.0, gzip;q=0.8,deflate"),
    )
    .await;
    assert_eq!(hit.header("x-cache"), "HIT");
    assert_eq!(fast().await, fast_before + 1);
    assert_eq!(hit.header("content-encoding"), "br");
    assert_eq!(hit.header("content-length"), miss.body.len().to_string());
    assert_eq!(hit.body, miss.body);
    // pingora's hit path (`If-Match`, which a GET hit satisfies, keeps the request there) sends
    // the same response
    let full = fetch(br().header("if-match", "*")).await;
    assert_eq!(full.header("x-cache"), "HIT");
    assert_eq!(fast().await, fast_before + 1, "served by pingora's path");
    for name in [
        "content-encoding",
        "content-length",
        "etag",
        "vary",
        "accept-ranges",
    ] {
        assert_eq!(full.header(name), hit.header(name), "{name}");
    }
    assert_eq!(full.body, hit.body);
    assert_eq!(e.scripted().count("/list"), 1);

    // a client that accepts nothing gets the identity form, from its own variant
    let plain = fetch(p.get("/list")).await;
    assert_eq!(plain.header("content-encoding"), "");
    assert_eq!(plain.header("etag"), "\"v1\"");
    assert!(plain.vary().contains(&"accept-encoding".to_string()));
    assert_eq!(String::from_utf8(plain.body).unwrap(), body);
    let plain_hit = fetch(p.get("/list").header("accept-encoding", "identity")).await;
    assert_eq!(plain_hit.header("x-cache"), "HIT");
    assert_eq!(String::from_utf8(plain_hit.body).unwrap(), body);

    // gzip-only clients: a third bucket
    let gz = fetch(p.get("/list").header("accept-encoding", "gzip")).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    assert_eq!(gz.header("etag"), "\"v1-gzip\"");
    assert_eq!(decode("gzip", &gz.body), body);
    assert_eq!(e.scripted().count("/list"), 3);

    // each validator names its own representation
    let nm = fetch(br().header("if-none-match", "\"v1-br\"")).await;
    assert_eq!(nm.status, 304);
    let nm_plain = fetch(p.get("/list").header("if-none-match", "\"v1\"")).await;
    assert_eq!(nm_plain.status, 304);
    let other_tag = fetch(br().header("if-none-match", "\"v1\"")).await;
    assert_eq!(other_tag.status, 200);
    assert_eq!(other_tag.body, miss.body);

    let metrics = p.metrics_text().await;
    for line in [
        format!(
            "proxy_compression_bytes_total{{coding=\"br\",side=\"in\"}} {}",
            body.len()
        ),
        format!(
            "proxy_compression_bytes_total{{coding=\"br\",side=\"out\"}} {}",
            miss.body.len()
        ),
    ] {
        assert!(metrics.contains(&line), "missing {line}");
    }

    // ranges apply to the encoded representation
    let range = fetch(br().header("range", "bytes=0-9")).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.body, miss.body[..10]);
    assert_eq!(e.scripted().count("/list"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidating_an_encoded_variant_sends_the_origin_its_own_tag() {
    let e = env().await;
    let body = list_body();
    e.scripted().route("GET", "/list", json_route(&body));
    let p = e.proxy();
    let br = || p.get("/list").header("accept-encoding", "br");
    let first = fetch(br()).await;
    assert_eq!(first.header("etag"), "\"v1-br\"");

    let revalidated = fetch(br().header("cache-control", "no-cache")).await;
    assert_eq!(e.scripted().count("/list"), 2);
    let seen = e
        .scripted()
        .last("/list")
        .expect("revalidation reached the origin");
    assert_eq!(seen.headers["if-none-match"], "\"v1\"");
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.header("etag"), "\"v1-br\"");
    assert_eq!(revalidated.header("content-encoding"), "br");
    assert_eq!(revalidated.body, first.body);

    // the refreshed entry keeps the encoded tag and body
    let hit = fetch(br()).await;
    assert_eq!(hit.header("x-cache"), "HIT");
    assert_eq!(hit.header("etag"), "\"v1-br\"");
    assert_eq!(decode("br", &hit.body), body);
    assert_eq!(e.scripted().count("/list"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_must_not_be_compressed_passes_untouched() {
    let e = env().await;
    let big = list_body();
    let s = e.scripted();
    s.route(
        "GET",
        "/nt",
        json_route(&big).cache("public, max-age=60, no-transform"),
    );
    s.route("GET", "/small", json_route("{\"ok\":true}"));
    s.route(
        "GET",
        "/png",
        Route::ok(&big)
            .header("content-type", "image/png")
            .cache("public, max-age=60")
            .etag("\"v1\""),
    );
    s.route(
        "GET",
        "/pre",
        json_route(&big).header("content-encoding", "gzip"),
    );
    s.route(
        "GET",
        "/events",
        Route::ok("")
            .sse(&["one", "two"], false)
            .cache("public, max-age=60"),
    );
    let p = e.proxy();
    let ae = |path: &str| p.get(path).header("accept-encoding", "br, gzip");
    for path in ["/nt", "/small", "/png"] {
        let r = fetch(ae(path)).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-encoding"), "", "{path}");
        assert!(!r.vary().contains(&"accept-encoding".to_string()), "{path}");
        assert_eq!(r.header("etag"), "\"v1\"", "{path}");
    }
    // an origin-encoded response is relayed as it came
    let pre = fetch(ae("/pre")).await;
    assert_eq!(pre.header("content-encoding"), "gzip");
    assert_eq!(pre.body, big.as_bytes());
    assert_eq!(pre.header("etag"), "\"v1\"");
    let ev = fetch(ae("/events")).await;
    assert_eq!(ev.header("content-encoding"), "");
    assert_eq!(
        String::from_utf8(ev.body).unwrap(),
        "data: one\n\ndata: two\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_can_be_switched_off() {
    let e = env_with(|c| c.compression.enabled = false).await;
    let body = list_body();
    e.scripted().route("GET", "/list", json_route(&body));
    let r = fetch(e.proxy().get("/list").header("accept-encoding", "br, gzip")).await;
    assert_eq!(r.header("content-encoding"), "");
    assert!(r.vary().is_empty());
    assert_eq!(String::from_utf8(r.body).unwrap(), body);
}

/// Requests coalesced on a compressed fill (streamed fills, the default) all get the encoded
/// body the one origin response was compressed into; the origin's body is chunked (sent in two
/// parts), so of unknown length, and the hits after it are framed by the stored length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_coalesced_on_a_compressed_fill_share_it() {
    let e = env().await;
    let body = list_body();
    e.scripted().route(
        "GET",
        "/slow",
        json_route(&body).body_pause(std::time::Duration::from_millis(300)),
    );
    let p = e.proxy();
    let clients = (0..20).map(|_| fetch(p.get("/slow").header("accept-encoding", "br")));
    let all = futures::future::join_all(clients).await;
    for r in &all {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), "br");
        assert_eq!(r.header("etag"), "\"v1-br\"");
        assert_eq!(decode("br", &r.body), body);
    }
    assert_eq!(e.scripted().count("/slow"), 1);
    let hit = fetch(p.get("/slow").header("accept-encoding", "br")).await;
    assert_eq!(hit.header("x-cache"), "HIT");
    assert_eq!(hit.header("content-length"), all[0].body.len().to_string());
    assert_eq!(hit.body, all[0].body);
}
