//! Starts the caching proxy in-process in front of any upstream, on ephemeral loopback ports.
//! Tests usually start it through [`crate::stack::Stack`]; [`spawn_proxy`] is for upstreams the
//! stack does not start (several origins, a hand-written server).

use crate::origin::TestUser;
use llmselect_proxy::{Config, ProxyHandle};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// The admin token [`Config::for_upstream`] sets.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running proxy plus a client that talks to it (no system proxy, no redirects).
pub struct TestProxy {
    pub handle: Option<ProxyHandle>,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// `http://127.0.0.1:<admin port>`
    pub admin: String,
    pub token: String,
    pub client: reqwest::Client,
}

/// Starts a proxy in front of `upstream_url`; `customize` edits the test configuration
/// (see [`Config::for_upstream`]) before start.
pub async fn spawn_proxy(upstream_url: &str, customize: impl FnOnce(&mut Config)) -> TestProxy {
    let mut cfg = Config::for_upstream(upstream_url);
    customize(&mut cfg);
    let token = cfg.admin_token.clone().unwrap_or_default();
    let mut attempt = 0;
    let handle = loop {
        attempt += 1;
        let try_cfg = cfg.clone();
        let started = tokio::task::spawn_blocking(move || llmselect_proxy::start(try_cfg))
            .await
            .expect("start task");
        match started {
            Ok(h) => break h,
            // a reserved port was taken by someone else in the meantime: take fresh ones
            Err(e) if attempt < 3 && e.to_string().contains("cannot listen") => {
                let fresh = Config::for_upstream(upstream_url);
                cfg.listen = fresh.listen;
                cfg.admin_listen = fresh.admin_listen;
                if cfg.tls.enabled() {
                    cfg.tls.listen = format!("127.0.0.1:{}", crate::tls::free_port());
                }
            }
            Err(e) => panic!("proxy starts: {e:#}"),
        }
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestProxy {
        base: format!("http://{}", handle.listen_addr),
        admin: format!("http://{}", handle.admin_addr),
        handle: Some(handle),
        token,
        client,
    }
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// A request of `method` with the user's bearer token, through the proxy.
    pub fn request_as(&self, user: &TestUser, method: Method, path: &str) -> RequestBuilder {
        user.request(&self.client, method, self.url(path))
    }

    /// `POST /purge` with the admin token; returns the status and JSON body.
    pub async fn purge(&self, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/purge", self.admin))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("admin purge");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET /stats` with the admin token.
    pub async fn stats(&self) -> Value {
        self.client
            .get(format!("{}/stats", self.admin))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin stats")
            .json()
            .await
            .expect("stats json")
    }

    /// `GET /metrics` (Prometheus text) with the admin token.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.admin))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("admin metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Stops the proxy and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = tokio::task::spawn_blocking(move || h.shutdown()).await;
        }
    }
}
