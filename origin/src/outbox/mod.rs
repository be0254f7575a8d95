//! The transactional outbox of cache invalidations for a fleet (issue 11).
//!
//! A write that names cache groups in `Cache-Group-Invalidation` also inserts one row into
//! `cache_invalidations` in the same transaction, as its last statement before COMMIT
//! ([`Outbox::commit`]), when the bus is configured (`[bus] url`; without it nothing is written).
//! The row's id is commit-ordered (see `repo::outbox`) and answered to the client in
//! `LLMSelect-Invalidation-Id`, which the proxy turns into a read-your-writes position.
//!
//! The [`relay`] (one task per origin instance, one active at a time across instances) publishes
//! the rows to NATS JetStream in id order and deletes them once acknowledged. It is woken at once
//! after a commit: in-process by [`Outbox::commit`], and in the other instances by the
//! `NOTIFY cache_invalidations` the insert queues (delivered at commit).

pub mod relay;

use tokio::sync::Notify;

use crate::db::{QueryObserver, Tx};
use crate::repo::outbox as repo;

pub use llmselect_bus::Invalidation;

/// The invalidation of a mutation of `target` (path and query) answered with `groups` and, when
/// given, a `Location` path: exactly the groups of its `Cache-Group-Invalidation`, and the
/// origin-relative paths the proxy purges for it.
pub fn of_mutation(target: &str, groups: &[String], location: Option<&str>) -> Invalidation {
    let mut paths: Vec<String> = Vec::new();
    for p in std::iter::once(target).chain(location) {
        if p.starts_with('/') && !paths.iter().any(|q| q == p) {
            paths.push(p.to_string());
        }
    }
    Invalidation {
        groups: groups.to_vec(),
        paths,
        ..Invalidation::default()
    }
}

/// The writers' side of the outbox, shared through `AppState`.
#[derive(Debug)]
pub struct Outbox {
    enabled: bool,
    /// Wakes this instance's relay after a commit.
    wake: Notify,
}

impl Outbox {
    /// `enabled`: a bus is configured (otherwise no row is ever written).
    pub fn new(enabled: bool) -> Outbox {
        Outbox {
            enabled,
            wake: Notify::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records `inv` as the last statement of `tx`, commits, and wakes the local relay. Returns the
    /// outbox id, or `None` when the bus is not configured or `inv` names nothing (then this is a
    /// plain commit).
    pub async fn commit(
        &self,
        tx: Tx<'_>,
        obs: &QueryObserver,
        inv: &Invalidation,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        let id = if self.enabled && !inv.is_empty() {
            Some(repo::insert(&tx.db(obs), &inv.groups, &inv.paths).await?)
        } else {
            None
        };
        tx.commit().await?;
        if id.is_some() {
            self.wake.notify_one();
        }
        Ok(id)
    }

    /// Resolves when a writer of this instance committed a row (a stored permit if none waited).
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shape_matches_the_proxy_wire_format() {
        let inv = of_mutation(
            "/api/v1/conversations/9f2c",
            &["user:42:conversations".into(), "conversation:9f2c".into()],
            None,
        );
        assert_eq!(
            String::from_utf8(inv.to_json()).unwrap(),
            r#"{"groups":["user:42:conversations","conversation:9f2c"],"paths":["/api/v1/conversations/9f2c"]}"#
        );
        // Location is added once; empty lists are omitted.
        let created = of_mutation(
            "/api/v1/conversations",
            &[],
            Some("/api/v1/conversations/1"),
        );
        assert_eq!(
            String::from_utf8(created.to_json()).unwrap(),
            r#"{"paths":["/api/v1/conversations","/api/v1/conversations/1"]}"#
        );
        let same = of_mutation("/a", &["g".into()], Some("/a"));
        assert_eq!(same.paths, vec!["/a"]);
        assert_eq!(
            serde_json::from_slice::<Invalidation>(&same.to_json()).unwrap(),
            same
        );
        assert!(Invalidation::default().is_empty());
        assert_eq!(Invalidation::default().to_json(), b"{}".to_vec());
    }
}
