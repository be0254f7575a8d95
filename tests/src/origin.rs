//! Starts the real origin in-process on an ephemeral loopback port against a fresh database, with
//! helpers to create users, make authenticated requests and read its database and metrics. Tests
//! usually start it through [`crate::stack::Stack`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use llmselect_origin::{App, Config};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Method, RequestBuilder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::db::TestDb;

/// A running origin. Dropping it stops the server, then drops its database (unless the database
/// is a [`TestDb::shared`] handle).
pub struct TestOrigin {
    pub addr: SocketAddr,
    pub base_url: String,
    /// The operations listener (`/metrics`, detailed `/health`), also on an ephemeral port.
    pub metrics_addr: SocketAddr,
    pub config: Config,
    pub http: reqwest::Client,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    handle: Mutex<Option<JoinHandle<anyhow::Result<()>>>>,
    /// Declared last so it is dropped after the server.
    pub db: TestDb,
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub username: String,
    pub password: String,
    /// The access JWT (from `access_token_cookie`).
    pub token: String,
    pub csrf_access: String,
    pub refresh_token: String,
    pub csrf_refresh: String,
}

impl TestUser {
    /// `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// A request of `method` to `url` with this user's bearer token.
    pub fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: String,
    ) -> reqwest::RequestBuilder {
        client
            .request(method, url)
            .header("Authorization", self.bearer())
    }

    /// `Cookie` header value with the access cookie (as the SPA sends it).
    pub fn access_cookie(&self) -> String {
        format!(
            "access_token_cookie={}; csrf_access_token={}",
            self.token, self.csrf_access
        )
    }
}

/// Starts an origin on a fresh database; `configure` may adjust the test configuration
/// (`Config::for_database`: migrations on start, no rate limits, cheap password hashing).
pub async fn spawn_origin(configure: impl FnOnce(&mut Config)) -> TestOrigin {
    spawn_origin_on(TestDb::new().await, configure).await
}

/// Like [`spawn_origin`] on a database the caller created.
pub async fn spawn_origin_on(db: TestDb, configure: impl FnOnce(&mut Config)) -> TestOrigin {
    let mut config = Config::for_database(db.url());
    configure(&mut config);
    let app = App::build(config.clone()).await.expect("origin builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestOrigin {
        addr,
        base_url: format!("http://{addr}"),
        metrics_addr,
        config,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client"),
        shutdown: Mutex::new(Some(tx)),
        handle: Mutex::new(Some(handle)),
        db,
    }
}

/// The value of cookie `name` among the `Set-Cookie` headers.
pub fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl TestOrigin {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `path` on the operations listener (`/metrics`, `/health`).
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{}", self.metrics_addr, path)
    }

    pub async fn register(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/auth/register"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("register request")
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Registers and logs in `username` (password `password-<username>`).
    pub async fn user(&self, username: &str) -> TestUser {
        let password = format!("password-{username}");
        let r = self.register(username, &password).await;
        assert_eq!(
            r.status(),
            201,
            "register {username}: {}",
            r.text().await.unwrap_or_default()
        );
        let r = self.login(username, &password).await;
        assert_eq!(r.status(), 200, "login {username}");
        let h = r.headers();
        let get = |n| set_cookie_value(h, n).unwrap_or_else(|| panic!("cookie {n} set"));
        TestUser {
            username: username.to_string(),
            password,
            token: get("access_token_cookie"),
            csrf_access: get("csrf_access_token"),
            refresh_token: get("refresh_token_cookie"),
            csrf_refresh: get("csrf_refresh_token"),
        }
    }

    /// The body of `GET /metrics` (operations listener).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.ops_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// A GET with the user's bearer token.
    pub fn get_as(&self, user: &TestUser, path: &str) -> reqwest::RequestBuilder {
        self.request_as(user, reqwest::Method::GET, path)
    }

    /// A request of `method` with the user's bearer token.
    pub fn request_as(&self, user: &TestUser, method: Method, path: &str) -> RequestBuilder {
        user.request(&self.http, method, self.url(path))
    }

    /// Creates a conversation for `user` and returns its id.
    pub async fn create_conversation(&self, user: &TestUser, title: Option<&str>) -> String {
        let r = self
            .request_as(user, reqwest::Method::POST, "/api/v1/conversations")
            .json(&serde_json::json!({"provider": "openai", "model": "gpt-4o", "title": title}))
            .send()
            .await
            .expect("create conversation");
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    /// Appends a message to a conversation of `user`.
    pub async fn add_message(
        &self,
        user: &TestUser,
        conversation: &str,
        role: &str,
        content: &str,
    ) {
        let r = self
            .request_as(
                user,
                reqwest::Method::POST,
                &format!("/api/v1/conversations/{conversation}/messages"),
            )
            .json(&serde_json::json!({"role": role, "content": content}))
            .send()
            .await
            .expect("add message");
        assert_eq!(r.status(), 201);
    }

    /// The number of rows in `table`.
    pub async fn row_count(&self, table: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("count of {table}: {e}"))
            .get(0)
    }

    /// The `users.id` of `username`.
    pub async fn user_id(&self, username: &str) -> i64 {
        self.db
            .client()
            .await
            .query_one("SELECT id FROM users WHERE username = $1", &[&username])
            .await
            .unwrap_or_else(|e| panic!("user row of {username}: {e}"))
            .get(0)
    }

    /// Requests served for route template `route` (e.g. `GET /api/v1/models`), every status,
    /// read from `origin_http_requests_total`.
    pub async fn requests_served(&self, route: &str) -> u64 {
        let needle = format!("route=\"{route}\"");
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with("origin_http_requests_total{") && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Stops the server and waits for it (the database stays until the origin is dropped).
    pub async fn stop(&self) {
        if let Some(tx) = self.shutdown.lock().take() {
            let _ = tx.send(());
        }
        let handle = self.handle.lock().take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.get_mut().take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.get_mut().take() {
            handle.abort();
        }
    }
}

/// Captured `tracing` output (JSON lines) of this test process.
#[derive(Clone)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Every captured event as JSON.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Events whose `fields.event` equals `event`.
    pub fn events_named(&self, event: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["fields"]["event"] == event)
            .collect()
    }
}

/// Installs (once per process) a global JSON subscriber at WARN that writes into memory. Tests run
/// one per process under nextest; filter events by something unique to the test anyway.
pub fn capture_logs() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let writer_buf = buf.clone();
            let _ = tracing_subscriber::fmt()
                .json()
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
                .with_writer(move || CaptureWriter(writer_buf.clone()))
                .try_init();
            LogCapture(buf)
        })
        .clone()
}
