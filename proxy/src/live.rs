//! The parts of the configuration that change without a restart (SIGHUP, see `reload`): the
//! admin token, the cache policy's cookies and default stale windows, and the origins. Readers
//! take a snapshot per request (`arc_swap`: a lock-free pointer load); a reload swaps in a new
//! value whole.

use crate::cache::policy::PolicyOptions;
use crate::upstreams::Upstreams;
use arc_swap::{ArcSwap, Guard};
use std::sync::Arc;

/// The live values, shared by the proxy service and the admin listener.
pub struct Live {
    admin_token: ArcSwap<Option<String>>,
    policy: ArcSwap<PolicyOptions>,
    upstreams: ArcSwap<Upstreams>,
}

impl Live {
    pub fn new(admin_token: Option<String>, policy: PolicyOptions, upstreams: Upstreams) -> Live {
        Live {
            admin_token: ArcSwap::from_pointee(admin_token),
            policy: ArcSwap::from_pointee(policy),
            upstreams: ArcSwap::from_pointee(upstreams),
        }
    }

    /// The admin bearer token (`None` or empty: every admin request is refused).
    pub fn admin_token(&self) -> Guard<Arc<Option<String>>> {
        self.admin_token.load()
    }

    pub fn policy(&self) -> Guard<Arc<PolicyOptions>> {
        self.policy.load()
    }

    /// The origins requests go to.
    pub fn upstreams(&self) -> Guard<Arc<Upstreams>> {
        self.upstreams.load()
    }

    pub fn set_upstreams(&self, upstreams: Upstreams) {
        self.upstreams.store(Arc::new(upstreams));
    }

    pub fn set_admin_token(&self, token: Option<String>) {
        self.admin_token.store(Arc::new(token));
    }

    pub fn set_policy(&self, policy: PolicyOptions) {
        self.policy.store(Arc::new(policy));
    }
}
