//! The scripted origin: a programmable hyper 1.x server for proxy tests on `127.0.0.1:0`, with
//! per-route responses, headers, delays and ETags, per-request counters and recorded headers, and
//! failure switches (every request 500, refuse connections, slow bodies, held SSE streams).

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// A programmed response. `{n}` in the body is replaced by the route's request count, `{user}`
/// by the request's [`identity`].
#[derive(Debug, Clone)]
pub struct Route {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Sleep before answering (a slow origin).
    pub delay: Duration,
    /// Send the body in two halves with this pause between them (a slow body).
    pub body_pause: Option<Duration>,
    /// Answer `If-None-Match` with a 304 when it matches (the ETag header is added).
    pub etag: Option<String>,
    /// Serve `text/event-stream` events instead of `body`.
    pub sse: Option<Vec<String>>,
    /// Hold an SSE stream after its first event until [`ScriptedOrigin::release_streams`].
    pub hold_after_first_event: bool,
    /// Send the first half of the body, then hold the rest until
    /// [`ScriptedOrigin::release_streams`].
    pub hold_body: bool,
}

impl Route {
    pub fn ok(body: &str) -> Route {
        Route {
            status: 200,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
            body_pause: None,
            etag: None,
            sse: None,
            hold_after_first_event: false,
            hold_body: false,
        }
    }

    pub fn status(status: u16, body: &str) -> Route {
        Route {
            status,
            ..Route::ok(body)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn cache(self, cache_control: &str) -> Route {
        self.header("cache-control", cache_control)
    }

    pub fn delay(mut self, d: Duration) -> Route {
        self.delay = d;
        self
    }

    pub fn body_pause(mut self, d: Duration) -> Route {
        self.body_pause = Some(d);
        self
    }

    pub fn etag(mut self, etag: &str) -> Route {
        self.etag = Some(etag.to_string());
        self
    }

    /// Send the first half of the body and hold the rest until
    /// [`ScriptedOrigin::release_streams`] (the connection is cut instead by
    /// [`ScriptedOrigin::refuse_connections`]).
    pub fn hold_body(mut self) -> Route {
        self.hold_body = true;
        self
    }

    pub fn sse(mut self, events: &[&str], hold: bool) -> Route {
        self.sse = Some(events.iter().map(|e| e.to_string()).collect());
        self.hold_after_first_event = hold;
        self.header("content-type", "text/event-stream")
    }
}

/// What the origin saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<(String, String), Route>>,
    counts: Mutex<HashMap<(String, String), usize>>,
    seen: Mutex<Vec<SeenRequest>>,
    fail_500: AtomicBool,
    release: Notify,
    released: AtomicBool,
    streams_finished: AtomicUsize,
    /// Open connections, aborted by `refuse_connections`.
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// The running origin. Dropping it stops the listener.
pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl ScriptedOrigin {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub async fn start() -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(State::default());
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        ScriptedOrigin {
            addr,
            state,
            accept: Mutex::new(Some(accept)),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Programs the response for `method` (or `*`) and `path` (path and query as sent).
    pub fn route(&self, method: &str, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .insert((method.to_string(), path.to_string()), route);
    }

    /// Requests the origin received for `path` with any method.
    pub fn count(&self, path: &str) -> usize {
        self.state
            .counts
            .lock()
            .iter()
            .filter(|((_, p), _)| p == path)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Requests received for `method path`.
    pub fn count_method(&self, method: &str, path: &str) -> usize {
        self.state
            .counts
            .lock()
            .get(&(method.to_string(), path.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().clone()
    }

    /// The last request received for `path`.
    pub fn last(&self, path: &str) -> Option<SeenRequest> {
        self.state
            .seen
            .lock()
            .iter()
            .rev()
            .find(|r| r.path == path)
            .cloned()
    }

    /// Answer every request with 500 (`no-store`) while set.
    pub fn fail_with_500(&self, on: bool) {
        self.state.fail_500.store(on, Ordering::SeqCst);
    }

    /// Stops listening and drops open (keep-alive) connections: new connections are refused.
    pub fn refuse_connections(&self) {
        if let Some(h) = self.accept.lock().take() {
            h.abort();
        }
        for c in self.state.connections.lock().drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same port after [`Self::refuse_connections`] (retrying while the
    /// aborted accept loop still holds the old listener).
    pub async fn accept_connections(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 500 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("rebind origin: {e}"),
            }
        };
        *self.accept.lock() = Some(tokio::spawn(accept_loop(listener, self.state.clone())));
    }

    /// Lets held SSE streams continue.
    pub fn release_streams(&self) {
        self.state.released.store(true, Ordering::SeqCst);
        self.state.release.notify_waiters();
    }

    /// SSE streams that sent their last event.
    pub fn streams_finished(&self) -> usize {
        self.state.streams_finished.load(Ordering::SeqCst)
    }

    /// Reads `resp`, the response to a route with `.sse(events, true)`: its first event must
    /// arrive while this origin still holds the stream; then the stream is released and the
    /// other events must follow. Proves that nothing between here and the client buffers.
    pub async fn expect_incremental_stream(&self, mut resp: reqwest::Response, events: &[&str]) {
        let frame = |e: &&str| format!("data: {e}\n\n");
        let first = resp.chunk().await.expect("first chunk").expect("an event");
        assert_eq!(String::from_utf8_lossy(&first), frame(&events[0]));
        assert_eq!(
            self.streams_finished(),
            0,
            "the first event arrived while the origin still holds the stream"
        );
        self.release_streams();
        let mut rest = Vec::new();
        while let Some(c) = resp.chunk().await.expect("next chunk") {
            rest.extend_from_slice(&c);
        }
        let expected: String = events[1..].iter().map(frame).collect();
        assert_eq!(String::from_utf8_lossy(&rest), expected);
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        self.refuse_connections();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let conn_state = state.clone();
        let task = tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = conn_state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        let mut conns = state.connections.lock();
        conns.retain(|c| !c.is_finished());
        conns.push(task.abort_handle());
    }
}

/// Who a request is, read the way the LLMSelect origin reads it: `Authorization` wins, else the
/// first `access_token_cookie` of the `Cookie` headers, else nobody. Substituted for `{user}`.
pub fn identity(headers: &HeaderMap) -> String {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        return format!("auth:{}", String::from_utf8_lossy(auth.as_bytes()));
    }
    let cookie = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == "access_token_cookie")
        .map(|(_, v)| v.trim().to_string());
    match cookie {
        Some(c) => format!("cookie:{c}"),
        None => "anonymous".into(),
    }
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = req.headers().clone();
    // drain the request body
    let _ = req.into_body().collect().await;
    let n = {
        let mut counts = state.counts.lock();
        let c = counts
            .entry((method.to_string(), path.clone()))
            .or_default();
        *c += 1;
        *c
    };
    state.seen.lock().push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
    });
    if state.fail_500.load(Ordering::SeqCst) {
        return Response::builder()
            .status(500)
            .header("cache-control", "no-store")
            .header("x-origin-count", n.to_string())
            .body(full("origin failure"))
            .expect("valid response");
    }
    let route = {
        let routes = state.routes.lock();
        routes
            .get(&(method.to_string(), path.clone()))
            .or_else(|| routes.get(&("*".to_string(), path.clone())))
            .cloned()
    };
    let Some(route) = route else {
        return Response::builder()
            .status(404)
            .header("cache-control", "no-store")
            .body(full("no route"))
            .expect("valid response");
    };
    if !route.delay.is_zero() {
        tokio::time::sleep(route.delay).await;
    }
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(route.status).unwrap_or(StatusCode::OK))
        .header("x-origin-count", n.to_string());
    for (k, v) in &route.headers {
        builder = builder.header(k.as_str(), v.replace("{n}", &n.to_string()));
    }
    if let Some(etag) = &route.etag {
        builder = builder.header("etag", etag.as_str());
        let matches = headers
            .get_all("if-none-match")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim() == etag || v.trim() == "*");
        if matches && (method == Method::GET || method == Method::HEAD) {
            return builder
                .status(304)
                .body(full(Bytes::new()))
                .expect("valid response");
        }
    }
    if let Some(events) = route.sse.clone() {
        let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
        let hold = route.hold_after_first_event;
        let st = state.clone();
        tokio::spawn(async move {
            for (i, e) in events.iter().enumerate() {
                let frame = Frame::data(Bytes::from(format!("data: {e}\n\n")));
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
                if i == 0 && hold {
                    let notified = st.release.notified();
                    if !st.released.load(Ordering::SeqCst) {
                        notified.await;
                    }
                }
            }
            st.streams_finished.fetch_add(1, Ordering::SeqCst);
        });
        return builder
            .body(StreamBody::new(rx).boxed())
            .expect("valid response");
    }
    let body = route
        .body
        .replace("{n}", &n.to_string())
        .replace("{user}", &identity(&headers));
    if route.hold_body {
        let bytes = Bytes::from(body);
        let half = bytes.len() / 2;
        let (first, second) = (bytes.slice(..half), bytes.slice(half..));
        let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
        let st = state.clone();
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(first))).await;
            let notified = st.release.notified();
            if !st.released.load(Ordering::SeqCst) {
                notified.await;
            }
            let _ = tx.send(Ok(Frame::data(second))).await;
        });
        return builder
            .body(StreamBody::new(rx).boxed())
            .expect("valid response");
    }
    if let Some(pause) = route.body_pause {
        let bytes = Bytes::from(body);
        let half = bytes.len() / 2;
        let (first, second) = (bytes.slice(..half), bytes.slice(half..));
        let (mut tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(first))).await;
            tokio::time::sleep(pause).await;
            let _ = tx.send(Ok(Frame::data(second))).await;
        });
        return builder
            .body(StreamBody::new(rx).boxed())
            .expect("valid response");
    }
    builder.body(full(body)).expect("valid response")
}
