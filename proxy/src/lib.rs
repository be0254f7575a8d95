//! llmselect-edge: an RFC 9111 caching reverse proxy on pingora with a bounded quick_cache
//! store, RFC 9875 group invalidation and an admin listener.
//!
//! [`start`] builds the pingora server from a [`Config`], runs it on its own thread and returns
//! once both listeners accept; the returned [`ProxyHandle`] shuts it down.
//!
//! ```text
//! let mut cfg = Config::for_upstream("http://127.0.0.1:3000"); // ephemeral loopback ports
//! cfg.cache.capacity_bytes = 64 << 20;
//! let proxy = llmselect_proxy::start(cfg)?;                    // both listeners accept now
//! // http://{proxy.listen_addr}/...  and  http://{proxy.admin_addr}/stats (Bearer token)
//! proxy.shutdown();                                            // or drop it
//! ```
//!
//! Layout: `proxy/` holds the pingora hooks, cache keys and response headers; `cache/` the
//! RFC 9111 policy, `Vary`, the quick_cache store with its indexes and tombstones, and the one
//! invalidation API (`cache::Invalidator`) shared by mutations, the admin purge
//! and any later purge bus.

mod admin;
pub mod admin_token;
mod allocator;
mod bus;
mod cache;
pub mod cli;
pub mod config;
mod error;
mod live;
pub mod logging;
mod metrics;
mod proxy;
pub mod reload;
mod server;
mod stats;
mod status;
#[cfg(test)]
mod test_support;
mod tls;
mod upstreams;

pub use config::{Config, ConfigErrors, Overrides, SetCookiePolicy};
pub use stats::StatsSnapshot;

use admin::AdminApp;
use anyhow::Context;
use bus::Bus;
use cache::encoding::CompressionOptions;
use cache::policy::PolicyOptions;
use cache::Invalidator;
use cache::{Store, StoreOptions};
use live::Live;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::predictor::Predictor;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use proxy::{EdgeProxy, FastHits, PREDICTOR_SHARDS};
use server::{ClientGuard, FillSettings, Forwarder, HitFront, Lifecycle};
use stats::Stats;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use upstreams::Upstreams;

/// How long [`start`] waits for the listeners.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running proxy. Dropping it requests a fast shutdown; [`ProxyHandle::shutdown`] also waits.
pub struct ProxyHandle {
    pub listen_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The TLS listener (HTTP/2 and HTTP/1.1), when configured.
    pub tls_addr: Option<SocketAddr>,
    store: &'static Store,
    stats: &'static Stats,
    /// Connection and in-flight counts; a graceful shutdown drains them.
    lifecycle: Arc<Lifecycle>,
    grace: Duration,
    /// The reloadable parts, and the configuration they came from.
    live: Arc<Live>,
    config: parking_lot::Mutex<Config>,
    bus: Option<Arc<Bus>>,
    /// Runs the bus consumer and the origins' health checks (when there are any).
    background: Option<tokio::runtime::Runtime>,
    signal: watch::Sender<Option<Stop>>,
    thread: Option<JoinHandle<()>>,
}

impl ProxyHandle {
    /// Fast shutdown, waiting for the server thread to finish.
    pub fn shutdown(mut self) {
        self.stop(Stop::Fast);
    }

    /// Graceful shutdown: new connections are refused, responses say `Connection: close`, and
    /// the proxy stops as soon as no request is in flight (at the latest after the configured
    /// grace period). Waits for the thread.
    pub fn shutdown_graceful(mut self) {
        self.stop(Stop::Graceful);
    }

    /// Zero-downtime upgrade, old side (pingora's SIGQUIT): sends the listening sockets to the
    /// process started with [`start_upgrade`] on the same `server.upgrade_sock`, keeps serving
    /// for pingora's 5 s hand-over, then shuts down gracefully (in-flight requests finish within
    /// the grace period). Waits for all of it.
    pub fn hand_over(mut self) {
        self.stop(Stop::Upgrade);
    }

    /// The proxy's own counters (the admin `/stats` numbers).
    pub fn stats(&self) -> stats::StatsSnapshot {
        self.stats.snapshot()
    }

    /// Applies what of `new` can change while running (see [`reload`]) after validating it; on
    /// an error nothing changes.
    pub fn reload(&self, new: Config) -> Result<reload::Report, ConfigErrors> {
        let mut current = self.config.lock();
        let runtime = self.background.as_ref().map(|rt| rt.handle().clone());
        let (report, effective) = reload::apply(&self.live, &current, &new, runtime.as_ref())?;
        *current = effective;
        Ok(report)
    }

    /// Store weight in bytes and its capacity.
    pub fn store_weight(&self) -> (u64, u64) {
        (self.store.weight(), self.store.capacity())
    }

    /// Open client connections and requests in flight.
    pub fn client_load(&self) -> (usize, usize) {
        (self.lifecycle.connections(), self.lifecycle.inflight())
    }

    fn stop(&mut self, how: Stop) {
        let signal = if matches!(how, Stop::Graceful) {
            // pingora's own graceful path always sleeps the whole grace period: drain here,
            // then stop it fast with nothing left in flight.
            let started = Instant::now();
            let drained = self.lifecycle.drain(self.grace);
            tracing::info!(
                drained,
                waited_ms = started.elapsed().as_millis() as u64,
                "graceful shutdown: requests in flight finished"
            );
            Stop::Fast
        } else {
            // An upgrade is pingora's own hand-over (the sockets go to the new process first).
            how
        };
        let _ = self.signal.send(Some(signal));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stop_background();
        self.store.clear();
    }

    fn stop_background(&mut self) {
        if let Some(bus) = &self.bus {
            bus.stop();
        }
        if let Some(rt) = self.background.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.signal.send(Some(Stop::Fast));
            self.thread.take();
            self.store.clear();
        }
        self.stop_background();
    }
}

/// Delivers the handle's shutdown request to pingora.
struct WatchSignal(watch::Receiver<Option<Stop>>);

/// How to stop (pingora's `ShutdownSignal` is not `Copy`).
#[derive(Debug, Clone, Copy)]
enum Stop {
    Fast,
    Graceful,
    Upgrade,
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for WatchSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        loop {
            let current = *rx.borrow_and_update();
            match current {
                Some(Stop::Fast) => return ShutdownSignal::FastShutdown,
                Some(Stop::Graceful) => return ShutdownSignal::GracefulTerminate,
                Some(Stop::Upgrade) => return ShutdownSignal::GracefulUpgrade,
                None => {}
            }
            if rx.changed().await.is_err() {
                return ShutdownSignal::FastShutdown;
            }
        }
    }
}

/// Builds and runs the proxy on its own thread; returns when both listeners accept.
pub fn start(config: Config) -> anyhow::Result<ProxyHandle> {
    start_inner(config, false)
}

/// Zero-downtime upgrade, new side (pingora's `--upgrade`): like [`start`], but takes the
/// listening sockets over from the running process that [`ProxyHandle::hand_over`]s them
/// through `server.upgrade_sock` (it waits up to 5 s for them; the old process must get its
/// SIGQUIT meanwhile). The new process starts with an empty cache. When no sockets arrive,
/// pingora's bootstrap exits the process with status 1 (a binary-only entry point).
pub fn start_upgrade(config: Config) -> anyhow::Result<ProxyHandle> {
    if config.server.upgrade_sock.is_none() {
        anyhow::bail!(
            "an upgrade needs server.upgrade_sock configured (the same path in both processes)"
        );
    }
    start_inner(config, true)
}

fn start_inner(config: Config, upgrade: bool) -> anyhow::Result<ProxyHandle> {
    config.validate()?;
    metrics::init();
    allocator::return_freed_memory_soon();
    let nofile = server::raise_nofile_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read or raise the open-file limit");
        1024
    });
    let max_connections = server::connection_cap(config.clients.max_connections, nofile);
    if max_connections < config.clients.max_connections {
        // the default cap is a ceiling, not a request: fitting it to the machine is routine
        if config.clients.max_connections == config::ClientsConfig::default().max_connections {
            tracing::info!(
                max_connections,
                nofile,
                "client connection cap fitted to the open-file limit"
            );
        } else {
            tracing::warn!(
                configured = config.clients.max_connections,
                max_connections,
                nofile,
                "clients.max_connections lowered to fit the open-file limit"
            );
        }
    }
    let lifecycle = Arc::new(Lifecycle::default());
    let listen_addr = config.listen_addr().context("listen address")?;
    let admin_addr = config.admin_addr().context("admin address")?;
    let tls_addr = config.tls_addr();
    let addrs: Vec<SocketAddr> = [Some(listen_addr), Some(admin_addr), tls_addr]
        .into_iter()
        .flatten()
        .collect();

    // pingora retries a busy port for 30 s and then panics inside its service; fail fast instead.
    // (An upgrade takes over the sockets the old process is listening on.)
    if !upgrade {
        for &addr in &addrs {
            check_bindable(addr).with_context(|| format!("cannot listen on {addr}"))?;
        }
    }

    // pingora wants `&'static` storage, lock and predictor: one leak per instance (the store is
    // emptied at shutdown).
    let store: &'static Store = Box::leak(Box::new(
        Store::new(StoreOptions {
            capacity_bytes: config.cache.capacity_bytes,
            shards: config.cache.shards,
            max_object_bytes: config.cache.max_object_bytes as usize,
            max_inflight_fill_bytes: config.cache.max_inflight_fill_bytes,
            tombstone_retention: config.tombstone_retention(),
            tombstone_max_bytes: config.cache.tombstone_max_bytes as usize,
            targeted_fields: config.targeted_fields(),
            stream_fills: config.cache.stream_fills,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    ));
    let stats: &'static Stats = Box::leak(Box::default());
    let lock: &'static CacheKeyLockImpl =
        Box::leak(CacheLock::new_boxed(config.lock_age_timeout()));
    let predictor: &'static Predictor<PREDICTOR_SHARDS> =
        Box::leak(Box::new(Predictor::new(1024, Some(proxy::predictor_skips))));
    let invalidator = Invalidator::new(store, stats);
    let fleet = config.bus.enabled() || config.upstreams.len() > 1;
    let background = if fleet {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("llmselect-proxy-bg")
                .enable_all()
                .build()
                .context("background runtime")?,
        )
    } else {
        None
    };
    let bg = background.as_ref().map(|rt| rt.handle().clone());
    let upstreams = Upstreams::new(&config, bg.as_ref())?;
    let bus = match (&bg, config.bus.enabled()) {
        (Some(rt), true) => Some(Arc::new(Bus::start(&config.bus, invalidator, rt))),
        _ => None,
    };

    let (pid_file, upgrade_sock) = config.runtime_paths();
    let threads = match config.server.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let conf = ServerConf {
        pid_file: pid_file.to_string_lossy().into_owned(),
        upgrade_sock: upgrade_sock.to_string_lossy().into_owned(),
        threads,
        work_stealing: config.server.work_stealing,
        grace_period_seconds: Some(config.server.grace_period_secs),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let opt = upgrade.then(|| pingora_core::server::configuration::Opt {
        upgrade: true,
        ..Default::default()
    });
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // with `upgrade`, this receives the listening sockets from the old process
    server.bootstrap();

    let policy = PolicyOptions::of(&config);
    let own_fields = policy.own_fields();
    let live = Arc::new(Live::new(config.admin_token.clone(), policy, upstreams));
    let fast = Arc::new(FastHits {
        store,
        predictor,
        stats,
        live: live.clone(),
        bus: bus.clone(),
        limits: config.limits.clone(),
        honour_request_directives: config.cache.honour_request_directives,
        lock_wait: config.lock_wait_timeout(),
        credential_passes: Default::default(),
    });
    let compression = CompressionOptions::from_config(&config.compression);
    let fills = (config.server.front_fill && config.cache.stream_fills).then(|| FillSettings {
        lock,
        compression: compression.clone(),
    });
    let forward = (config.server.front_pass_through || fills.is_some()).then(|| {
        Forwarder::new(
            fast.clone(),
            config.timeouts.clone(),
            own_fields.clone(),
            config.server.front_pass_through,
            fills,
        )
    });
    let edge = EdgeProxy {
        fast: fast.clone(),
        store,
        lock,
        predictor,
        invalidator,
        stats,
        own_fields,
        compression,
        live: live.clone(),
        bus: bus.clone(),
        timeouts: config.timeouts.clone(),
        clients: config.clients.clone(),
        lifecycle: lifecycle.clone(),
        lock_wait: config.lock_wait_timeout(),
        honour_request_directives: config.cache.honour_request_directives,
    };
    let mut proxy_app = pingora_proxy::http_proxy(&server.configuration, edge);
    if config.server.h2c {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy_app.server_options = Some(options);
    }
    let mut proxy_service = Service::new(
        "llmselect-edge".to_string(),
        ClientGuard::new(
            HitFront::new(
                proxy_app,
                fast,
                lifecycle.clone(),
                Duration::from_secs(config.clients.keepalive_secs),
                config.server.h2c,
                forward,
            ),
            lifecycle.clone(),
            max_connections,
            Duration::from_millis(config.clients.header_timeout_ms),
        ),
    );
    proxy_service.add_listener(ListenerConfig::tcp(&config.listen).l4_buffer(client_buffers()));
    proxy_service.threads = Some(threads);
    let certs = match tls_addr {
        Some(_) => {
            let certs = Arc::new(
                tls::Certificates::load(Path::new(&config.tls.cert), Path::new(&config.tls.key))
                    .map_err(|e| anyhow::anyhow!(e))?,
            );
            let settings = tls::settings(certs.clone(), config.tls.h2)?;
            proxy_service.add_listener(
                ListenerConfig::tcp(&config.tls.listen)
                    .tls(settings)
                    .l4_buffer(client_buffers()),
            );
            Some(certs)
        }
        None => None,
    };

    let mut admin_service = Service::new(
        "llmselect-edge admin".to_string(),
        AdminApp {
            live: live.clone(),
            listen_addr,
            predictor,
            honour_request_directives: config.cache.honour_request_directives,
            store,
            stats,
            invalidator,
            bus: bus.clone(),
        },
    );
    admin_service.add_tcp(&config.admin_listen);
    admin_service.threads = Some(1);
    server.add_service(proxy_service);
    server.add_service(admin_service);
    if let Some(certs) = &certs {
        let interval = config.tls.reload_interval_secs;
        server.add_service(background_service(
            "tls certificate reload",
            tls::Reloader {
                certs: certs.clone(),
                interval: (interval > 0).then(|| Duration::from_secs(interval)),
            },
        ));
    }

    let (signal, rx) = watch::channel(None);
    let thread = std::thread::Builder::new()
        .name("llmselect-proxy".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(WatchSignal(rx)),
            })
        })
        .context("spawning the server thread")?;

    let handle = ProxyHandle {
        listen_addr,
        admin_addr,
        tls_addr,
        store,
        stats,
        lifecycle,
        grace: Duration::from_secs(config.server.grace_period_secs),
        live,
        config: parking_lot::Mutex::new(config.clone()),
        bus,
        background,
        signal,
        thread: Some(thread),
    };
    wait_until_accepting(&handle, &addrs)?;
    if let Some(certs) = &certs {
        // A SIGHUP before the reloader's handler is installed would end the process.
        wait_for(&handle, "the certificate reloader", || certs.watching())?;
    }
    tracing::info!(
        %listen_addr,
        %admin_addr,
        upstreams = ?config.upstreams().unwrap_or_default().iter().map(|u| u.address.clone()).collect::<Vec<_>>(),
        bus = config.bus.enabled(),
        "llmselect-edge proxy running"
    );
    Ok(handle)
}

/// Socket buffers of a client connection: none.
///
/// - Read: pingora gives every accepted connection a 64 KiB read buffer, allocated with the
///   connection and held for its life: a header trickled one byte at a time then costs about
///   90 KiB of memory (`scripts/reliability.sh`, slow clients). The front and pingora's HTTP/1
///   parser each read into their own buffers anyway, so the read buffer only added a copy.
/// - Write: pingora's HTTP/1 writer flushes a `Content-Length` body only when it is complete, so
///   with its 1,460-byte write buffer the header and first bytes of a response whose origin
///   pauses mid-body waited for the whole body (a 34-byte body paused for 2 s reached the client
///   after 2 s, header included). Unbuffered, every write pingora makes reaches the client at
///   once; the front writes a hit's head and small body in one write either way.
fn client_buffers() -> L4BufferSettings {
    L4BufferSettings::unbuffered()
}

/// Binds (with `SO_REUSEADDR`, as pingora does, so TIME_WAIT leftovers do not count) and
/// releases the address: fails when another socket is listening on it.
fn check_bindable(addr: SocketAddr) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)
}

fn wait_until_accepting(handle: &ProxyHandle, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    for addr in addrs {
        let what = format!("{addr} accepting connections");
        wait_for(handle, &what, || {
            TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
        })?;
    }
    Ok(())
}

/// Polls `ready` until it holds, the server thread ends, or [`READY_TIMEOUT`] passes.
fn wait_for(
    handle: &ProxyHandle,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready() {
        if handle.thread.as_ref().is_none_or(|t| t.is_finished()) {
            anyhow::bail!("proxy server exited before {what}");
        }
        if Instant::now() > deadline {
            anyhow::bail!("no {what} within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
