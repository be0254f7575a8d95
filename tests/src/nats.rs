//! A private NATS server with JetStream for one test (`nats-server` from `PATH`, Debian's
//! package), on an ephemeral loopback port with its own store directory, that a test can stop and
//! restart; and a [`Partition`]: a TCP relay in front of it that a test can cut and heal, to take
//! one proxy node off the bus while the others stay on it.

use async_nats::jetstream;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The stream and subject the proxy and origin use by default.
pub const STREAM: &str = "EDGE_INVALIDATIONS";
pub const SUBJECT: &str = "edge.invalidations";

pub struct TestNats {
    pub port: u16,
    dir: PathBuf,
    /// Extra server arguments (e.g. `--auth <token>`).
    args: Vec<String>,
    child: Mutex<Option<Child>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl TestNats {
    /// Starts a server and waits until it accepts connections.
    pub async fn start() -> TestNats {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra arguments (e.g. `["--auth", "token"]`).
    pub async fn start_with(args: &[&str]) -> TestNats {
        let dir = std::env::temp_dir().join(format!(
            "llmselect-nats-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("nats store dir");
        let nats = TestNats {
            port: free_port(),
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: Mutex::new(None),
        };
        nats.spawn().await;
        nats
    }

    async fn spawn(&self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (Debian package nats-server)");
        *self.child.lock() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // the server enables JetStream before it accepts clients
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (its store stays for [`Self::restart`]).
    pub fn stop(&self) {
        let child = self.child.lock().take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub async fn restart(&self) {
        self.stop();
        self.spawn().await;
    }

    /// A JetStream context on this server.
    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(
            async_nats::connect(self.url())
                .await
                .expect("connect to nats"),
        )
    }

    /// Publishes an invalidation as the origin's outbox relay does (`Nats-Msg-Id` = `id`) and
    /// returns its stream sequence.
    pub async fn publish(&self, id: &str, body: serde_json::Value) -> u64 {
        let js = self.jetstream().await;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        js.publish_with_headers(SUBJECT, headers, body.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("ack")
            .sequence
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP relay to the NATS server that can be cut (every connection dropped, new ones refused
/// until healed): one node's partition from the bus.
pub struct Partition {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    changed: Arc<Notify>,
}

impl Partition {
    pub async fn start(target_port: u16) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let cut = Arc::new(AtomicBool::new(false));
        let changed = Arc::new(Notify::new());
        let (c, n) = (cut.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the node sees a closed connection
                }
                let (c, n) = (c.clone(), n.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    loop {
                        let notified = n.notified();
                        tokio::select! {
                            _ = copy_bidirectional(&mut inbound, &mut outbound) => return,
                            _ = notified => if c.load(Ordering::SeqCst) { return },
                        }
                    }
                });
            }
        });
        Partition { addr, cut, changed }
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
