//! TLS on the client side of the proxy (a bottom-layer module: it imports nothing from the
//! crate, so the configuration can check a certificate pair with it at start-up): the listener's settings (rustls through pingora, HTTP/2
//! by ALPN with HTTP/1.1 kept) and a certificate resolver that swaps in a new certificate and
//! key without a restart.
//!
//! pingora 0.9.1's rustls `TlsSettings` takes a `ResolvesServerCert` (`set_cert_resolver`), which
//! rustls asks for the certificate on every handshake. [`Certificates`] answers with the pair it
//! holds and replaces it when [`Reloader`] sees the files change (polled every
//! `tls.reload_interval_secs`) or the process gets `SIGHUP`. A pair that fails to load (a
//! certificate written before its key, a key that does not match) is reported and the previous
//! pair stays in use; the next check tries again.

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::ALPN;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What identifies one version of the two files: modification time and length of each.
type Stamp = [(SystemTime, u64); 2];

/// The certificate and key the TLS listener serves, reloadable.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Option<Stamp>>,
    /// The reloader runs (its `SIGHUP` handler, if any, is installed).
    watching: AtomicBool,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Certificates {
    /// Loads the pair; the error says what is wrong with which file.
    pub fn load(cert: &Path, key: &Path) -> Result<Certificates, String> {
        let stamp = stamp(cert, key);
        let pair = read_pair(cert, key)?;
        Ok(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(pair),
            stamp: Mutex::new(stamp),
            watching: AtomicBool::new(false),
        })
    }

    /// Loads the files again when they changed since the last successful load.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.cert, &self.key);
        if now.is_some() && now != *self.stamp.lock() {
            self.reload();
        }
    }

    /// Loads the files again; on failure keeps the pair in use.
    pub fn reload(&self) {
        let stamp = stamp(&self.cert, &self.key);
        match read_pair(&self.cert, &self.key) {
            Ok(pair) => {
                *self.current.write() = pair;
                *self.stamp.lock() = stamp;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate reload failed; keeping the previous one")
            }
        }
    }

    /// Whether the reloader runs (and its `SIGHUP` handler, if any, is installed).
    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Acquire)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    Some([one(cert)?, one(key)?])
}

/// Reads a PEM certificate chain and its private key and checks that they belong together.
fn read_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    pingora_core::tls::install_default_crypto_provider();
    let (c, k) = (cert.display(), key.display());
    let loaded = pingora_core::tls::load_certs_and_key_files(
        &cert.to_string_lossy(),
        &key.to_string_lossy(),
    )
    .map_err(|e| format!("tls.cert {c} / tls.key {k}: {e}"))?;
    let Some((chain, private)) = loaded else {
        return Err(format!(
            "tls.cert {c} / tls.key {k}: no PEM certificate or no private key found"
        ));
    };
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no rustls crypto provider installed".to_string())?;
    let pair = CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| format!("tls.cert {c} / tls.key {k}: {e}"))?;
    Ok(Arc::new(pair))
}

/// The TLS listener's settings: the reloadable pair, ALPN `h2` + `http/1.1` (or HTTP/1.1 only
/// without `h2`).
pub fn settings(certs: Arc<Certificates>, h2: bool) -> pingora_error::Result<TlsSettings> {
    // The paths are not read by pingora once a resolver is set.
    let mut settings =
        TlsSettings::intermediate(&certs.cert.to_string_lossy(), &certs.key.to_string_lossy())?;
    settings.set_cert_resolver(certs);
    settings.set_alpn(if h2 { ALPN::H2H1 } else { ALPN::H1 });
    Ok(settings)
}

/// Reloads the pair on `SIGHUP` and when the files change.
pub struct Reloader {
    pub certs: Arc<Certificates>,
    /// File check period; `None`: only on `SIGHUP`.
    pub interval: Option<Duration>,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: certificates reload on file change only");
                None
            }
        };
        self.certs.watching.store(true, Ordering::Release);
        let period = self.interval.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick(), if self.interval.is_some() => self.certs.reload_if_changed(),
                Some(()) = async { hangup.as_mut()?.recv().await } => self.certs.reload(),
            }
        }
    }
}
