//! Reliability under abuse and faults (issue 16): slow and numerous clients, a hung origin,
//! pipelining and graceful shutdown. The short, CI-sized form of `scripts/reliability.sh`.

use crate::{env_with, get};
use llmselect_e2e::http::{raw_exchange, raw_status, send};
use llmselect_e2e::proxy::TestProxy;
use llmselect_e2e::scripted_origin::Route;
use llmselect_e2e::wait::eventually_true;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(p: &TestProxy) -> SocketAddr {
    p.handle.as_ref().expect("running").listen_addr
}

/// Writes `chunk` every 50 ms or so until the server answers or closes the connection: returns
/// its answer ("" when it closed without one), `None` when it never did (10 s).
async fn trickle_until_answered(s: &mut TcpStream, chunk: &[u8]) -> Option<String> {
    for _ in 0..200 {
        if s.write_all(chunk).await.is_err() {
            return Some(String::new());
        }
        let mut probe = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut probe)).await {
            Ok(Ok(n)) => return Some(String::from_utf8_lossy(&probe[..n]).into_owned()),
            Ok(Err(_)) => return Some(String::new()),
            Err(_) => {}
        }
    }
    None
}

/// Reads until the peer closes (or `limit` passes); returns what arrived and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_header_is_cut_at_the_deadline_while_others_are_served() {
    let e = env_with(|c| c.clients.header_timeout_ms = 400).await;
    e.scripted().route("GET", "/ok", Route::ok("fine"));
    let mut slow = TcpStream::connect(addr(e.proxy())).await.unwrap();
    slow.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // one header byte every 50 ms: each read is quick, the header never ends; meanwhile an
    // ordinary client is served as usual
    let others = async {
        for _ in 0..5 {
            assert_eq!(get(e.proxy(), "/ok").await.body, "fine");
        }
    };
    let (answer, ()) = tokio::join!(trickle_until_answered(&mut slow, b"x"), others);
    let answer = answer.expect("the trickling client was never disconnected");
    assert!(answer.is_empty() || raw_status(&answer) == 408, "{answer}");
    assert!(e
        .proxy()
        .metrics_text()
        .await
        .contains("proxy_client_timeouts_total{phase=\"header\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_503_and_a_freed_slot_serves_again() {
    let e = env_with(|c| c.clients.max_connections = 3).await;
    e.scripted().route("GET", "/ok", Route::ok("fine"));
    let a = addr(e.proxy());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(a).await.unwrap());
    }
    eventually_true("the three idle connections are counted", || async {
        e.proxy().handle.as_ref().unwrap().client_load().0 == 3
    })
    .await;
    let refused = raw_exchange(
        a,
        b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&refused), 503, "{refused}");
    assert!(refused.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(e.scripted().count("/ok"), 0);
    assert!(e.proxy().metrics_text().await.lines().any(|l| l
        .starts_with("proxy_client_connections_refused_total{reason=\"limit\"}")
        && !l.ends_with(" 0")));
    held.pop();
    eventually_true("a freed slot serves again", || async {
        let r = raw_exchange(
            a,
            b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        raw_status(&r) == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_keepalive_secs() {
    let e = env_with(|c| c.clients.keepalive_secs = 1).await;
    e.scripted().route("GET", "/ok", Route::ok("fine"));
    let mut s = TcpStream::connect(addr(e.proxy())).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut s, Duration::from_secs(20)).await;
    assert_eq!(raw_status(&text), 200, "{text}");
    assert!(text.to_ascii_lowercase().contains("keep-alive"), "{text}");
    assert!(closed, "the idle connection stayed open");
    // a client that asks for close is not kept alive
    let mut s = TcpStream::connect(addr(e.proxy())).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut s, Duration::from_secs(20)).await;
    assert_eq!(raw_status(&text), 200, "{text}");
    assert!(
        closed && text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_body_gets_408() {
    let e = env_with(|c| c.clients.body_timeout_ms = 300).await;
    e.scripted().route("POST", "/upload", Route::ok("stored"));
    let mut s = TcpStream::connect(addr(e.proxy())).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let text = trickle_until_answered(&mut s, b"0123456789")
        .await
        .expect("the slow body was never answered");
    assert_eq!(raw_status(&text), 408, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let e = env_with(|_| {}).await;
    e.scripted().route("GET", "/one", Route::ok("first"));
    e.scripted().route("GET", "/two", Route::ok("second"));
    let out = raw_exchange(
        addr(e.proxy()),
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let first = out.find("first").expect("the first response");
    let second = out.find("second").expect("the pipelined second response");
    assert!(first < second, "{out}");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert_eq!(e.scripted().count("/two"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_origin_costs_ordinary_requests_read_ms_then_504_or_stale() {
    let e = env_with(|c| c.timeouts.read_ms = 300).await;
    let hang = Duration::from_secs(30);
    e.scripted()
        .route("GET", "/slow", Route::ok("late").delay(hang));
    let started = Instant::now();
    let r = get(e.proxy(), "/slow").await;
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < hang, "the proxy waited for the origin");
    // a stale entry with stale-if-error is served instead of the 504
    e.scripted().route(
        "GET",
        "/sie",
        Route::ok("good {n}")
            .cache("max-age=10, stale-if-error=600")
            .header("age", "10"),
    );
    assert_eq!(get(e.proxy(), "/sie").await.body, "good 1");
    e.scripted().route(
        "GET",
        "/sie",
        Route::ok("late {n}")
            .cache("max-age=10, stale-if-error=600")
            .delay(hang),
    );
    let r = get(e.proxy(), "/sie").await;
    assert_eq!((r.status, r.body.as_str()), (200, "good 1"));
    assert!(e.proxy().metrics_text().await.lines().any(|l| l
        .starts_with("proxy_origin_timeouts_total{class=\"ordinary\"}")
        && !l.ends_with(" 0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_routes_keep_the_long_window() {
    let e = env_with(|c| c.timeouts.read_ms = 200).await;
    let slow = Route::ok("answer").delay(Duration::from_millis(1200));
    e.scripted().route("POST", "/api/v1/chat", slow.clone());
    e.scripted().route("GET", "/api/v1/comparisons", slow);
    let chat = send(e.proxy().client.post(e.proxy().url("/api/v1/chat"))).await;
    assert_eq!((chat.status, chat.body.as_str()), (200, "answer"));
    // a path that only shares a prefix is an ordinary route
    assert_eq!(get(e.proxy(), "/api/v1/comparisons").await.status, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_then_exits_at_once() {
    let e = env_with(|_| {}).await;
    e.scripted().route(
        "GET",
        "/slow",
        Route::ok("done").delay(Duration::from_millis(1500)),
    );
    let mut p = e.start_proxy(|c| c.server.grace_period_secs = 60).await;
    let a = addr(&p);
    let client = p.client.clone();
    let url = p.url("/slow");
    let in_flight = tokio::spawn(async move { send(client.get(url)).await });
    eventually_true("the slow request reached the origin", || async {
        e.scripted().count("/slow") == 1
    })
    .await;
    let handle = p.handle.take().unwrap();
    let started = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || handle.shutdown_graceful());
    // while draining: new connections are refused
    eventually_true("new connections are refused while draining", || async {
        let r = raw_exchange(
            a,
            b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        raw_status(&r) == 503 || r.is_empty()
    })
    .await;
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "done"));
    assert!(r.header("connection").eq_ignore_ascii_case("close"));
    stopping.await.unwrap();
    // well before the 60 s grace period: it ended when the request did
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(TcpStream::connect(a).await.is_err(), "still listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_proxy_stops_gracefully_without_waiting_the_grace_period() {
    let e = env_with(|_| {}).await;
    let mut p = e.start_proxy(|c| c.server.grace_period_secs = 60).await;
    // an idle keep-alive connection does not hold it up
    let mut idle = TcpStream::connect(addr(&p)).await.unwrap();
    idle.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let _ = idle.read(&mut buf).await;
    let handle = p.handle.take().unwrap();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || handle.shutdown_graceful())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
}
