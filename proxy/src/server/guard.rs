//! The connection guard around pingora's HTTP application.

use super::deadline::DeadlineStream;
use super::lifecycle::Lifecycle;
use crate::metrics;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
retry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n\
{\"error\":\"unavailable\",\"message\":\"too many connections\"}\n";

/// How long a refused client gets to take its `503`.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// Wraps `app` (pingora's HTTP proxy application): caps the open client connections and puts a
/// header deadline on every accepted stream.
pub struct ClientGuard<A> {
    app: Arc<A>,
    lifecycle: Arc<Lifecycle>,
    max_connections: usize,
    header_timeout: Duration,
}

impl<A> ClientGuard<A> {
    pub fn new(
        app: A,
        lifecycle: Arc<Lifecycle>,
        max_connections: usize,
        header_timeout: Duration,
    ) -> Self {
        ClientGuard {
            app: Arc::new(app),
            lifecycle,
            max_connections,
            header_timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ClientGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let slot = match self.lifecycle.admit(self.max_connections) {
            Ok(slot) => slot,
            Err(why) => {
                metrics::record_connection_refused(why.as_str());
                // Refuse fast: a short answer if the socket takes it, then close.
                let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
                    stream.write_all(REFUSAL).await?;
                    stream.flush().await
                })
                .await;
                let _ = AsyncWriteExt::shutdown(&mut stream).await;
                return None;
            }
        };
        metrics::add_client_connections(1);
        let guarded: Stream = Box::new(DeadlineStream::new(stream, self.header_timeout));
        let result = self.app.process_new(guarded, shutdown).await;
        drop(slot);
        metrics::add_client_connections(-1);
        result
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}
