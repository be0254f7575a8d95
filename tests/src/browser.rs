//! A headless Chromium for one test: Debian's `chromedriver` (package `chromium-driver`) started
//! on an ephemeral loopback port, and a WebDriver session through fantoccini. Screenshots go to
//! `<target dir>/test-artifacts/` (see [`Browser::screenshot`]).

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wait::eventually;

/// A chromedriver process and one browser session; dropping it ends both.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver starts (Debian package chromium-driver; scripts/test.sh installs it)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400", "--no-proxy-server",
            ]}),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                // the driver is still starting
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("WebDriver session on {url}: {e}"),
            }
        };
        Browser { client, driver }
    }

    /// The text of the element `css`, once it exists.
    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        el.text().await.expect("element text")
    }

    /// Waits for the element `css`.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        eventually(&format!("element {css}"), || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// Waits until the text of `css` satisfies `done`; returns it.
    pub async fn text_until(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        eventually(&format!("the text of {css}"), || async {
            let el = self.client.find(Locator::Css(css)).await.ok()?;
            let text = el.text().await.ok()?;
            done(&text).then_some(text)
        })
        .await
    }

    /// Types `text` into the input `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.expect("clear input");
        el.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Saves a screenshot as `<target dir>/test-artifacts/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `<target dir>/test-artifacts`: the test binary runs from `<target>/<profile>/deps/`.
pub fn artifacts_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("test-artifacts")))
        .unwrap_or_else(|| std::env::temp_dir().join("llmselect-test-artifacts"))
}
