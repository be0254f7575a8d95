//! llmselect-origin: the LLMSelect JSON API on PostgreSQL (hyper 1.x, bb8-postgres).
//!
//! [`App::build`] connects the pool, migrates when configured and binds the listener;
//! [`App::run`] serves until the shutdown future resolves. `main.rs` only parses the command line.
//!
//! Modules are private unless another crate needs them: the binary (`cli.rs`), `tests/` and
//! `bench/` use [`App`], the `config`, `db` and `seed` modules and the re-exports below. The
//! module map is in `docs/architecture.md`.

mod accounts;
mod auth;
pub mod cli;
pub mod config;
mod crypto;
mod cursor;
pub mod db;
mod error;
mod http;
mod llm;
mod metrics;
mod model_registry;
mod outbox;
mod provider_keys;
mod ratelimit;
mod repo;
mod routes;
pub mod seed;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use auth::jwt::JwtKeys;
pub use config::{Config, ConfigErrors, Overrides};
pub use crypto::KeyCipher;
pub use metrics::Metrics;
pub use provider_keys::resolve as resolve_provider_keys;
pub use repo::conversations::{
    LIST_KEYSET as CONVERSATIONS_LIST_KEYSET, LIST_OFFSET as CONVERSATIONS_LIST_OFFSET,
    LIST_SEARCH_KEYSET as CONVERSATIONS_SEARCH_KEYSET,
    LIST_SEARCH_OFFSET as CONVERSATIONS_SEARCH_OFFSET,
};
pub use state::AppState;

/// A built origin: pool created, migrations applied (when configured), listeners bound.
pub struct App {
    listener: TcpListener,
    metrics_listener: TcpListener,
    state: AppState,
    local_addr: SocketAddr,
    metrics_addr: SocketAddr,
}

impl App {
    /// Validates `config`, creates the pool, runs the embedded migrations when
    /// `database.run_migrations_on_start` is set, and binds `config.listen` and
    /// `config.metrics_listen` (port 0 allowed for both).
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let metrics = Arc::new(metrics::Metrics::new());
        let pool = db::build_pool(&config)?;
        if config.database.run_migrations_on_start {
            migrate(&pool).await?;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| format!("binding metrics_listen {}", config.metrics_listen))?;
        let metrics_addr = metrics_listener.local_addr()?;
        let state = AppState::new(config, pool, metrics)?;
        Ok(App {
            listener,
            metrics_listener,
            state,
            local_addr,
            metrics_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the operations listener (`/metrics`, detailed `/health`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The shared state (pool, config, metrics) for callers that need it next to the server.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves the API and the operations listener until `shutdown` resolves, then drains
    /// in-flight requests on both.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            event = "listening",
            addr = %self.local_addr,
            metrics_addr = %self.metrics_addr,
            "origin listening"
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let trigger = stop.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        // The outbox relay (with a bus): stopped once the listeners have drained, so writes made
        // during the grace period are still published when the bus is reachable.
        let relay_stop = tokio_util::sync::CancellationToken::new();
        // Also stops the relay task when this future is dropped instead of finishing.
        let _relay_guard = relay_stop.clone().drop_guard();
        let relay = self.state.config.bus.enabled().then(|| {
            let deps = outbox::relay::RelayDeps {
                config: self.state.config.clone(),
                metrics: self.state.metrics.clone(),
                outbox: self.state.outbox.clone(),
            };
            tokio::spawn(outbox::relay::run(deps, relay_stop.clone()))
        });
        let api = http::server::serve(
            self.listener,
            self.state.clone(),
            stop.clone().cancelled_owned(),
            http::server::handle,
        );
        let ops = http::server::serve(
            self.metrics_listener,
            self.state,
            stop.clone().cancelled_owned(),
            http::ops::handle,
        );
        let (api, ops) = tokio::join!(api, ops);
        relay_stop.cancel();
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        watcher.abort();
        api.and(ops)
    }
}

/// Applies the embedded migrations on a dedicated connection of `pool`.
pub async fn migrate(pool: &db::Pool) -> anyhow::Result<Vec<String>> {
    let mut conn = pool
        .dedicated_connection()
        .await
        .context("connecting to the database for migrations")?;
    Ok(db::migrate::run(&mut conn.client, &db::migrate::embedded()).await?)
}
