//! Connecting to NATS with the configured credentials, and the JetStream stream both sides create
//! when it is missing (with the same limits, so whichever starts first is right).

use crate::BusConfig;
use async_nats::jetstream::stream::{Config as StreamConfig, Stream};
use async_nats::jetstream::Context;
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects as `client_name` with the credentials and TLS settings of `cfg`. The client
/// reconnects by itself (every 100 ms, doubling up to 2 s) after a lost connection.
pub async fn connect(cfg: &BusConfig, client_name: &str) -> Result<async_nats::Client, BoxError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            let base = Duration::from_millis(100);
            (base * 2u32.saturating_pow(attempts.min(8) as u32)).min(Duration::from_secs(2))
        })
        .require_tls(cfg.tls_required);
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &cfg.token {
        opts = opts.token(t.clone());
    }
    if let Some(seed) = &cfg.nkey_seed {
        opts = opts.nkey(seed.clone());
    }
    if let Some(path) = &cfg.credentials_file {
        opts = opts.credentials_file(path).await?;
    }
    if let Some(ca) = &cfg.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    let url = cfg.url.clone().unwrap_or_default();
    Ok(opts.connect(url.as_str()).await?)
}

/// The invalidation stream: created with the configured limits when it does not exist yet.
pub async fn ensure_stream(js: &Context, cfg: &BusConfig) -> Result<Stream, BoxError> {
    Ok(js
        .get_or_create_stream(StreamConfig {
            name: cfg.stream.clone(),
            subjects: vec![cfg.subject.clone()],
            max_age: Duration::from_secs(cfg.stream_max_age_secs),
            duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
            ..Default::default()
        })
        .await?)
}
