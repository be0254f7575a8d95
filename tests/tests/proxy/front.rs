//! The raw HTTP/1 front (`server::front`): plain fresh hits are written from bytes prepared at
//! store time, everything else is handed to pingora on the same connection. These tests tell the
//! two apart by `Date`: the front replays the stored one, pingora writes its own.

use crate::{env, env_with};
use llmselect_e2e::http::{raw_exchange, send};
use llmselect_e2e::proxy::TestProxy;
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::wait::eventually_true;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `Date` two minutes old (well within the routes' `max-age`), so a replayed one cannot be
/// mistaken for the proxy's clock.
pub(crate) fn origin_date() -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(120))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

pub(crate) fn addr(p: &TestProxy) -> SocketAddr {
    p.handle.as_ref().expect("running").listen_addr
}

/// One response read off a kept-alive connection: status, lowercase header lines, body.
pub(crate) struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one `Content-Length`-framed response (no body for `HEAD`).
pub(crate) async fn read_answer(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Answer {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    let length: usize = if head_request {
        0
    } else {
        answer
            .header("content-length")
            .expect("content-length")
            .parse()
            .unwrap()
    };
    while buf.len() < end + length {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    answer.body = String::from_utf8_lossy(&buf[end..end + length]).into_owned();
    buf.drain(..end + length);
    answer
}

fn cacheable(body: &str, date: &str) -> Route {
    Route::ok(body).cache("max-age=600").header("date", date)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_mixes_front_hits_and_pingora_requests_in_order() {
    let e = env().await;
    let date = origin_date();
    e.scripted()
        .route("GET", "/front/a", cacheable("alpha", &date));
    e.scripted()
        .route("GET", "/front/pass", Route::ok("passed").cache("no-store"));
    e.scripted()
        .route("POST", "/other/m", Route::ok("posted").cache("no-store"));
    // stored by an ordinary client first
    assert_eq!(send(e.proxy().get("/front/a")).await.x_cache(), "MISS");
    let fast_before = e.proxy().stats().await["fast_hits"].as_u64().unwrap();

    let mut s = TcpStream::connect(addr(e.proxy())).await.unwrap();
    let mut buf = Vec::new();
    let steps: [(&str, &str, &str, &str); 5] = [
        (
            "GET /front/a HTTP/1.1\r\nHost: t\r\n\r\n",
            "alpha",
            "HIT",
            "front",
        ),
        (
            "GET /front/pass HTTP/1.1\r\nHost: t\r\n\r\n",
            "passed",
            "MISS",
            "pingora",
        ),
        (
            "POST /other/m HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            "posted",
            "PASS",
            "pingora",
        ),
        (
            "GET /front/a HTTP/1.1\r\nHost: t\r\n\r\n",
            "alpha",
            "HIT",
            "front",
        ),
        (
            "HEAD /front/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "",
            "HIT",
            "front",
        ),
    ];
    // the key includes the host the warming client named
    let host = format!("Host: {}", addr(e.proxy()));
    for (request, body, x_cache, by) in steps {
        let request = request.replace("Host: t", &host);
        s.write_all(request.as_bytes()).await.unwrap();
        let a = read_answer(&mut s, &mut buf, request.starts_with("HEAD")).await;
        assert_eq!(a.status, 200, "{request}: {}", a.head);
        assert_eq!(a.body, body, "{request}");
        assert_eq!(a.header("x-cache"), Some(x_cache), "{request}: {}", a.head);
        let replayed = a.header("date") == Some(date.as_str());
        assert_eq!(
            replayed,
            by == "front",
            "{request} answered by {by}: {}",
            a.head
        );
        if by == "front" {
            assert_eq!(a.header("content-length"), Some("5"), "{}", a.head);
            assert!(a.header("age").is_some_and(|v| v.parse::<u64>().is_ok()));
            assert!(a
                .header("cache-status")
                .is_some_and(|v| v.starts_with("llmselect-edge; hit; ttl=")));
            assert!(a.header("server-timing").is_some() && a.header("x-response-time").is_some());
        }
    }
    // the last request asked to close: the front closes after its answer
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{rest:?}");
    assert_eq!(e.scripted().count("/front/a"), 1);
    assert_eq!(e.scripted().count("/front/pass"), 1);
    assert_eq!(e.scripted().count_method("POST", "/other/m"), 1);
    let fast_after = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    assert_eq!(fast_after, fast_before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_hits_and_misses_are_answered_in_order() {
    let e = env().await;
    e.scripted()
        .route("GET", "/front/h", cacheable("hit-body", &origin_date()));
    e.scripted()
        .route("GET", "/front/m", Route::ok("miss-{n}").cache("no-store"));
    assert_eq!(send(e.proxy().get("/front/h")).await.x_cache(), "MISS");
    // hit, miss, hit, miss in one write: the front answers the first, pingora the second (with
    // the rest as its pipelined prefix)
    let requests = "GET /front/h HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /front/m HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /front/h HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /front/m HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        .replace("Host: t", &format!("Host: {}", addr(e.proxy())));
    let out = raw_exchange(
        addr(e.proxy()),
        requests.as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    let order: Vec<usize> = ["hit-body", "miss-1", "hit-body", "miss-2"]
        .iter()
        .scan(0, |from, body| {
            let at = *from + out[*from..].find(body)?;
            *from = at + body.len();
            Some(at)
        })
        .collect();
    assert_eq!(order.len(), 4, "{out}");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 4, "{out}");
    assert_eq!(e.scripted().count("/front/h"), 1);
    assert_eq!(e.scripted().count("/front/m"), 2);
}

/// RFC 9111 §4 / RFC 9110 §6.6.1: a hit is the stored response with `Age`; its `Date` is the
/// origin's, not the time of the hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http1_hit_keeps_the_stored_date() {
    let e = env().await;
    let date = origin_date();
    e.scripted()
        .route("GET", "/dated-hit", cacheable("dated", &date));
    assert_eq!(send(e.proxy().get("/dated-hit")).await.x_cache(), "MISS");
    let hit = send(e.proxy().get("/dated-hit")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("date"), date);
    // Age counts from that Date: the origin's response was two minutes old when stored
    let age: u64 = hit.header("age").parse().unwrap();
    assert!((120..=130).contains(&age), "age {age}");
    let head = send(reqwest::Client::new().head(e.proxy().url("/dated-hit"))).await;
    assert_eq!(
        (head.x_cache(), head.header("date")),
        ("HIT", date.as_str())
    );
    assert_eq!(head.body, "");
}

/// Requests arriving while a cold key's first fill is under way wait for it in the front, not in
/// pingora: they are answered from the stored response (its `Date` replayed) and reported as
/// collapsed, with the wait as `lock` timing; the origin sees one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_a_cold_key_are_answered_by_the_front() {
    let e = env().await;
    let date = origin_date();
    e.scripted().route(
        "GET",
        "/front/cold",
        cacheable("cold-body", &date).delay(Duration::from_millis(600)),
    );
    let first = tokio::spawn(send(e.proxy().get("/front/cold")));
    eventually_true("the first request reached the origin", || async {
        e.scripted().count("/front/cold") == 1
    })
    .await;
    let fast_before = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    let waiters: Vec<_> = (0..20)
        .map(|_| tokio::spawn(send(e.proxy().get("/front/cold"))))
        .collect();
    for w in waiters {
        let r = w.await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "cold-body"));
        assert_eq!(r.x_cache(), "HIT");
        assert_eq!(r.header("date"), date, "answered by the front");
        assert!(
            r.header("cache-status")
                .starts_with("llmselect-edge; fwd=uri-miss; collapsed; ttl="),
            "{}",
            r.header("cache-status")
        );
        assert!(
            r.header("server-timing").contains("lock;dur="),
            "{}",
            r.header("server-timing")
        );
    }
    let first = first.await.unwrap();
    assert_eq!(
        (first.x_cache(), first.body.as_str()),
        ("MISS", "cold-body")
    );
    assert_eq!(e.scripted().count("/front/cold"), 1);
    let fast_after = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    assert_eq!(fast_after, fast_before + 20);
}

/// A cold key's fill that streams: the requests that waited for it in the front get the bytes
/// the origin has sent while the origin still holds the rest, from the front (the stored `Date`),
/// and the whole body once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_streams_a_cold_fill_to_its_waiters() {
    const FIRST: &str = "first half, sent|";
    const WHOLE: &str = "first half, sent|second half, held";
    let e = env_with(|c| c.cache.stream_fills = true).await;
    let date = origin_date();
    e.scripted().route(
        "GET",
        "/front/streamed",
        cacheable(WHOLE, &date)
            // a known length: the front frames what it streams by the stored `Content-Length`
            // (a chunked fill is pingora's to stream, `coalescing::a_streamed_fill_…`)
            .header("content-length", &WHOLE.len().to_string())
            .delay(Duration::from_millis(600))
            .hold_body(),
    );
    let first = tokio::spawn(send(e.proxy().get("/front/streamed")));
    eventually_true("the first request reached the origin", || async {
        e.scripted().count("/front/streamed") == 1
    })
    .await;
    let read_first_half = || async {
        let mut resp = e.proxy().get("/front/streamed").send().await.unwrap();
        let mut got = String::new();
        while got.len() < FIRST.len() {
            let chunk = resp.chunk().await.expect("body").expect("more body");
            got.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        (resp, got)
    };
    let started = tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join_all((0..10).map(|_| read_first_half())),
    )
    .await
    .expect("the first half reaches every waiter while the origin holds the rest");
    e.scripted().release_streams();
    for (resp, got) in started {
        assert_eq!(got, FIRST);
        assert_eq!(llmselect_e2e::http::header(&resp, "date"), date);
        assert_eq!(llmselect_e2e::http::header(&resp, "x-cache"), "HIT");
        let rest = resp.text().await.expect("the rest of the body");
        assert_eq!(format!("{got}{rest}"), WHOLE);
    }
    assert_eq!(first.await.unwrap().body, WHOLE);
    assert_eq!(e.scripted().count("/front/streamed"), 1);
}

/// A conditional request on a fresh hit is answered by the front: `304` when `If-None-Match` or
/// `If-Modified-Since` matches (the stored `Date` and validators, no body), the whole hit when it
/// does not; the same `304` as pingora's hit path sends, apart from `Date`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_hits_are_answered_by_the_front() {
    let e = env().await;
    let date = origin_date();
    e.scripted().route(
        "GET",
        "/front/validated",
        cacheable("validated", &date)
            .etag("\"v1\"")
            .header("last-modified", &date)
            .header("content-type", "text/plain"),
    );
    let get = || e.proxy().get("/front/validated");
    assert_eq!(send(get()).await.x_cache(), "MISS");
    let fast = || async { e.proxy().stats().await["fast_hits"].as_u64().unwrap() };
    let before = fast().await;

    let by_etag = send(get().header("if-none-match", "W/\"x\", \"v1\"")).await;
    let by_date = send(get().header("if-modified-since", date.as_str())).await;
    let changed = send(get().header("if-none-match", "\"v0\"")).await;
    assert_eq!(fast().await, before + 3, "all three answered by the front");
    for r in [&by_etag, &by_date] {
        assert_eq!(r.status, 304, "{:?}", r.headers);
        assert_eq!(r.body, "");
        assert_eq!(r.x_cache(), "HIT");
        assert_eq!(r.header("date"), date);
        assert_eq!(r.header("etag"), "\"v1\"");
        assert_eq!(r.header("last-modified"), date);
        assert_eq!(r.header("content-length"), "");
        assert_eq!(r.header("content-type"), "");
        assert!(r.header("age").parse::<u64>().is_ok());
    }
    assert_eq!((changed.status, changed.body.as_str()), (200, "validated"));
    assert_eq!(changed.header("date"), date);

    // pingora's hit path (`If-Match` keeps the request there) sends the same 304 but its `Date`
    let pingora = send(
        get()
            .header("if-none-match", "\"v1\"")
            .header("if-match", "\"v1\""),
    )
    .await;
    assert_eq!(fast().await, before + 3, "answered by pingora");
    assert_eq!(pingora.status, 304);
    let varying = ["x-response-time", "server-timing", "age", "date"];
    assert_eq!(
        by_etag.stable_headers(&varying),
        pingora.stable_headers(&varying)
    );
    assert_eq!(e.scripted().count("/front/validated"), 1);
}

/// A fresh hit whose request carries directives that ask for nothing more than a fresh response
/// (`Pragma: foo`, `max-stale`, a `max-age` above the entry's age, `only-if-cached`) is still the
/// front's (the stored `Date` kept); one that asks for more (`max-age=0`, `no-cache`) goes to
/// pingora and on to the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_directives_that_a_fresh_hit_satisfies_keep_the_front_hit() {
    let e = env().await;
    let date = origin_date();
    e.scripted()
        .route("GET", "/front/directives", cacheable("directed", &date));
    assert_eq!(
        send(e.proxy().get("/front/directives")).await.x_cache(),
        "MISS"
    );
    let fast_before = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    let satisfied = [
        ("pragma", "foo"),
        ("cache-control", "max-stale=60"),
        ("cache-control", "max-age=3600, only-if-cached"),
        ("cache-control", "min-fresh=10"),
    ];
    for (name, value) in satisfied {
        let r = send(e.proxy().get("/front/directives").header(name, value)).await;
        assert_eq!(
            (r.x_cache(), r.body.as_str()),
            ("HIT", "directed"),
            "{name}: {value}"
        );
        assert_eq!(r.header("date"), date, "{name}: {value}");
    }
    let fast_after = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    assert_eq!(fast_after, fast_before + satisfied.len() as u64);
    for (name, value) in [
        ("cache-control", "max-age=0"),
        ("cache-control", "no-cache"),
    ] {
        let r = send(e.proxy().get("/front/directives").header(name, value)).await;
        assert_ne!(r.x_cache(), "HIT", "{name}: {value}");
    }
    assert_eq!(e.scripted().count("/front/directives"), 3);
    let fast_end = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    assert_eq!(fast_end, fast_after);
}

/// Range requests on a fresh hit are answered by the front with pingora's range filter: one range
/// is a `206` of that part, an unsatisfiable one a `416`, a stale `If-Range` the whole response,
/// all keeping the stored `Date`; several ranges (`multipart/byteranges`) are pingora's. The
/// front's `206` is pingora's apart from `Date`, `Age` and the timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_fresh_hits_are_answered_by_the_front() {
    let e = env().await;
    let date = origin_date();
    e.scripted().route(
        "GET",
        "/front/ranged",
        cacheable("0123456789", &date)
            .etag("\"r1\"")
            .header("content-type", "text/plain"),
    );
    assert_eq!(send(e.proxy().get("/front/ranged")).await.x_cache(), "MISS");
    let fast_before = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    let get = |range: &str| {
        e.proxy()
            .get("/front/ranged")
            .header("range", range.to_string())
    };

    let part = send(get("bytes=2-5")).await;
    assert_eq!((part.status, part.body.as_str()), (206, "2345"));
    assert_eq!(part.header("content-range"), "bytes 2-5/10");
    assert_eq!(part.header("content-length"), "4");
    assert_eq!(
        (part.x_cache(), part.header("date")),
        ("HIT", date.as_str())
    );

    let suffix = send(get("bytes=-3")).await;
    assert_eq!((suffix.status, suffix.body.as_str()), (206, "789"));

    let beyond = send(get("bytes=20-")).await;
    assert_eq!((beyond.status, beyond.body.as_str()), (416, ""));
    assert_eq!(beyond.header("content-range"), "bytes */10");
    assert_eq!(beyond.header("date"), date);

    let stale_if_range = send(get("bytes=2-5").header("if-range", "\"old\"")).await;
    assert_eq!(
        (stale_if_range.status, stale_if_range.body.as_str()),
        (200, "0123456789")
    );
    assert_eq!(stale_if_range.header("date"), date);
    let fresh_if_range = send(get("bytes=2-5").header("if-range", "\"r1\"")).await;
    assert_eq!(
        (fresh_if_range.status, fresh_if_range.body.as_str()),
        (206, "2345")
    );

    let fast_after = e.proxy().stats().await["fast_hits"].as_u64().unwrap();
    assert_eq!(fast_after, fast_before + 5);

    // several ranges: one multipart/byteranges answer, framed as its head says
    let multi = send(get("bytes=0-1,4-5")).await;
    assert_eq!(multi.status, 206);
    let boundary = multi
        .header("content-type")
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("a multipart answer")
        .to_string();
    let part_head = |range: &str| {
        format!(
            "\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes {range}/10\r\n\r\n"
        )
    };
    assert_eq!(
        multi.body,
        format!(
            "{}01{}45\r\n--{boundary}--\r\n",
            part_head("0-1"),
            part_head("4-5")
        )
    );
    assert_eq!(multi.header("content-length"), multi.body.len().to_string());
    assert_eq!(
        (multi.x_cache(), multi.header("date")),
        ("HIT", date.as_str())
    );
    assert_eq!(
        e.proxy().stats().await["fast_hits"].as_u64().unwrap(),
        fast_after + 1
    );
    // pingora's hit path writes the same parts (If-Match keeps a request off the front); only
    // the boundary differs
    let multi_by_pingora = send(get("bytes=0-1,4-5").header("if-match", "\"r1\"")).await;
    let pingora_boundary = multi_by_pingora
        .header("content-type")
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("a multipart answer")
        .to_string();
    assert_eq!(
        multi_by_pingora.body.replace(&pingora_boundary, &boundary),
        multi.body
    );
    // pingora's hit path for the same single range (If-Match keeps a request off the front)
    let by_pingora = send(get("bytes=2-5").header("if-match", "\"r1\"")).await;
    assert_eq!((by_pingora.status, by_pingora.body.as_str()), (206, "2345"));
    let varying = [
        "date",
        "age",
        "x-response-time",
        "server-timing",
        "cache-status",
    ];
    assert_eq!(
        part.stable_headers(&varying),
        by_pingora.stable_headers(&varying)
    );
    assert_eq!(e.scripted().count("/front/ranged"), 1);
}
