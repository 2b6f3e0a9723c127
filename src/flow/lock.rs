//! Distributed locks with fencing tokens and TTLs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{FlowError, FlowResult};
use super::types::NodeId;

/// Lock resources are non-empty (every implementation's first check).
pub fn check_resource(resource: &str) -> FlowResult<()> {
    if resource.is_empty() {
        return Err(FlowError::invalid("lock resource", "must not be empty"));
    }
    Ok(())
}

/// Which hold of which lock a guard is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHandle {
    pub resource: String,
    /// Fencing token: strictly increasing across successive holders of a lock, so a
    /// resource that refuses tokens below the highest it has seen stays safe when a
    /// holder that lost the lock wakes up.
    pub token: u64,
    pub holder: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub resource: String,
    pub token: u64,
    pub holder: NodeId,
    pub ttl_ms: u64,
    /// Time left before the hold expires unless renewed.
    pub remaining_ttl_ms: u64,
}

/// How a guard gives its lock back when dropped. Implementations must not block:
/// a remote release runs on a spawned task.
pub trait ReleaseOnDrop: Send + Sync {
    fn release_on_drop(&self, handle: &LockHandle);
}

/// A held lock; dropping it releases the lock (an implementation that must reach
/// the network does so in the background — call `DistributedLock::release` to wait).
pub struct LockGuard {
    handle: LockHandle,
    releaser: Option<Arc<dyn ReleaseOnDrop>>,
}

impl LockGuard {
    /// For implementations: a guard of `handle` that `releaser` releases on drop.
    pub fn new(handle: LockHandle, releaser: Arc<dyn ReleaseOnDrop>) -> Self {
        LockGuard {
            handle,
            releaser: Some(releaser),
        }
    }

    pub fn handle(&self) -> &LockHandle {
        &self.handle
    }

    pub fn resource(&self) -> &str {
        &self.handle.resource
    }

    pub fn fencing_token(&self) -> u64 {
        self.handle.token
    }

    /// For implementations of `release`: the handle, without releasing on drop.
    pub fn disarm(mut self) -> LockHandle {
        self.releaser = None;
        self.handle.clone()
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("handle", &self.handle)
            .field("armed", &self.releaser.is_some())
            .finish()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(releaser) = self.releaser.take() {
            releaser.release_on_drop(&self.handle);
        }
    }
}

/// A lock service.
///
/// Contract: at most one holder per resource at any time; `acquire` waits until the
/// resource is free (cancel it by dropping the future, e.g. under
/// `tokio::time::timeout`), `try_acquire` returns `None` at once while it is held; a
/// hold lasts `ttl` from its acquisition or last `renew`, after which the holder has
/// lost it and `renew` fails with `LockLost`; dropping or releasing a guard frees
/// the resource if the hold is still its own. Tokens of successive holders of a
/// resource increase. Waiters are not served in arrival order.
#[tonic::async_trait]
pub trait DistributedLock: Send + Sync {
    async fn acquire(&self, resource: &str, ttl: Duration) -> FlowResult<LockGuard>;

    async fn try_acquire(&self, resource: &str, ttl: Duration) -> FlowResult<Option<LockGuard>>;

    /// Extends the hold to `ttl` from now.
    async fn renew(&self, guard: &LockGuard, ttl: Duration) -> FlowResult<()>;

    /// Added to the seed (whose guard calls it on drop): releases and waits; fails
    /// with `LockLost` if the hold had already ended.
    async fn release(&self, guard: LockGuard) -> FlowResult<()>;

    /// The current hold of `resource`, if any.
    async fn status(&self, resource: &str) -> FlowResult<Option<LockInfo>>;

    /// Current holds, by resource.
    async fn list_locks(&self) -> FlowResult<Vec<LockInfo>>;
}
