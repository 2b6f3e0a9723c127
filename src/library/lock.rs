//! Distributed locks (seed 001's `DistributedLock`), on etcd's lock protocol: the
//! lock `key` is held by whoever owns the key `key/<lease hex>` with the lowest
//! create revision; that create revision is the holder's fencing token. A held lock
//! keeps its lease alive; losing the lease loses the lock.

use std::sync::Arc;
use std::time::Duration;

use super::error::CoordinatorError;
use super::lease::KeptLease;
use crate::client::{is_retryable, ClientError, Connection};
use crate::coord::service::lock::{enqueue_txn, enqueued_revision, prefix_end};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{DeleteRangeRequest, RangeRequest};
use crate::proto::v3lockpb::lock_client::LockClient;
use crate::proto::v3lockpb::LockRequest;
use crate::seams::mutants;

#[derive(Clone)]
pub struct DistributedLock {
    conn: Arc<Connection>,
}

/// A held lock. Dropping it releases the lock in the background; `unlock` releases
/// it and waits.
pub struct LockGuard {
    key: String,
    owner_key: Vec<u8>,
    fencing_token: i64,
    lease: Option<KeptLease>,
    conn: Arc<Connection>,
}

fn owner_key(key: &str, lease: i64) -> Vec<u8> {
    format!("{key}/{lease:x}").into_bytes()
}

impl DistributedLock {
    pub fn new(conn: Arc<Connection>) -> Self {
        DistributedLock { conn }
    }

    /// Waits until `key` is held (cancel by dropping the future, e.g. with a timeout).
    pub async fn acquire(&self, key: &str, ttl: Duration) -> Result<LockGuard, CoordinatorError> {
        let lease = KeptLease::grant(self.conn.clone(), ttl).await?;
        self.acquire_on(key, lease).await
    }

    /// Like `acquire`, on a lease the caller granted (to renew it on request, or
    /// to hang its own keys on it first); the lock lasts as long as the lease.
    pub async fn acquire_on(
        &self,
        key: &str,
        lease: KeptLease,
    ) -> Result<LockGuard, CoordinatorError> {
        let mut failures = 0;
        // The server's Lock enqueues with "put if absent", so retrying after a lost
        // answer keeps the same place in the queue.
        let owner = loop {
            let req = self.conn.request(LockRequest {
                name: key.as_bytes().to_vec(),
                lease: lease.id(),
            });
            let mut client = LockClient::new(self.conn.channel());
            let waited = tokio::select! {
                biased;
                r = client.lock(req) => r,
                _ = lease.lost() => return Err(CoordinatorError::LeaseLost { lease: lease.id() }),
            };
            match waited {
                Ok(r) => break r.into_inner().key,
                Err(s)
                    if is_retryable(&s)
                        && failures + 1 < self.conn.retry().max_attempts.max(3) * 4 =>
                {
                    failures += 1;
                    self.conn.rotate();
                    tokio::time::sleep(self.conn.retry().delay(failures)).await;
                }
                Err(s) => {
                    let _ = lease.revoke().await;
                    return Err(CoordinatorError::Client(ClientError::Rejected {
                        endpoint: String::new(),
                        code: s.code(),
                        message: s.message().to_string(),
                    }));
                }
            }
        };
        let token = self.create_revision(&owner).await?;
        Ok(LockGuard {
            key: key.to_string(),
            owner_key: owner,
            fencing_token: token,
            lease: Some(lease),
            conn: self.conn.clone(),
        })
    }

    /// Takes `key` if nobody holds or waits for it; fails at once with `LockHeld`.
    pub async fn try_acquire(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<LockGuard, CoordinatorError> {
        let lease = KeptLease::grant(self.conn.clone(), ttl).await?;
        self.try_acquire_on(key, lease).await
    }

    /// Like `try_acquire`, on a lease the caller granted (see `acquire_on`).
    pub async fn try_acquire_on(
        &self,
        key: &str,
        lease: KeptLease,
    ) -> Result<LockGuard, CoordinatorError> {
        let owner = owner_key(key, lease.id());
        let prefix = format!("{key}/").into_bytes();
        let txn = enqueue_txn(&owner, lease.id());
        // Idempotent: a retried txn finds its key and changes nothing.
        let queued = self.conn.txn(txn).await?;
        let mine =
            enqueued_revision(&queued).ok_or(CoordinatorError::LeaseLost { lease: lease.id() })?;
        // The oldest waiter owns the lock.
        let first = self
            .conn
            .range(RangeRequest {
                key: prefix.clone(),
                range_end: prefix_end(&prefix),
                sort_order: SortOrder::Ascend as i32,
                sort_target: SortTarget::Create as i32,
                limit: 1,
                ..Default::default()
            })
            .await?;
        let holder = first.kvs.first().map(|kv| kv.create_revision);
        if holder != Some(mine) {
            let _ = lease.revoke().await;
            return Err(CoordinatorError::LockHeld {
                key: key.to_string(),
            });
        }
        Ok(LockGuard {
            key: key.to_string(),
            owner_key: owner,
            fencing_token: mine,
            lease: Some(lease),
            conn: self.conn.clone(),
        })
    }

    async fn create_revision(&self, key: &[u8]) -> Result<i64, CoordinatorError> {
        let r = self
            .conn
            .range(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await?;
        // The mutant hands out the store's revision at the read, not the key's.
        if mutants::active("fencing_token_header_revision") {
            return Ok(r.header.map_or(0, |h| h.revision));
        }
        r.kvs
            .first()
            .map(|kv| kv.create_revision)
            .ok_or(CoordinatorError::NotFound {
                key: String::from_utf8_lossy(key).into_owned(),
            })
    }
}

impl LockGuard {
    /// The lock's name, as given to `acquire`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key this holder owns (`<key>/<lease hex>`).
    pub fn owner_key(&self) -> &[u8] {
        &self.owner_key
    }

    /// Strictly increasing across successive holders of one lock: a resource that
    /// rejects tokens lower than the highest it has seen stays safe even when a
    /// paused holder wakes up after losing the lock.
    pub fn fencing_token(&self) -> i64 {
        self.fencing_token
    }

    /// The lease's granted TTL.
    pub fn ttl(&self) -> Duration {
        self.lease.as_ref().map_or(Duration::ZERO, KeptLease::ttl)
    }

    /// The lease's remaining TTL, as the leader sees it.
    pub async fn remaining_ttl(&self) -> Result<Duration, CoordinatorError> {
        match &self.lease {
            Some(l) => l.remaining().await,
            None => Err(CoordinatorError::Closed),
        }
    }

    /// The lease the lock hangs on.
    pub fn lease_id(&self) -> i64 {
        self.lease.as_ref().map_or(0, KeptLease::id)
    }

    /// Renews the lease behind the lock once (for a lease renewed on request);
    /// `LeaseLost` if it had ended, and with it the hold.
    pub async fn renew(&self) -> Result<(), CoordinatorError> {
        match &self.lease {
            Some(l) => l.renew().await,
            None => Err(CoordinatorError::Closed),
        }
    }

    /// False once the lease behind the lock is lost (the lock may be someone else's).
    pub fn is_held(&self) -> bool {
        self.lease.as_ref().is_some_and(KeptLease::is_alive)
    }

    /// Releases the lock: deletes the owner key and revokes the lease.
    pub async fn unlock(mut self) -> Result<(), CoordinatorError> {
        let lease = self.lease.take();
        release(self.conn.clone(), self.owner_key.clone(), lease).await
    }
}

async fn release(
    conn: Arc<Connection>,
    owner_key: Vec<u8>,
    lease: Option<KeptLease>,
) -> Result<(), CoordinatorError> {
    conn.delete_range(DeleteRangeRequest {
        key: owner_key.clone(),
        ..Default::default()
    })
    .await?;
    if let Some(lease) = lease {
        lease.revoke().await?;
    }
    Ok(())
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let (conn, key) = (self.conn.clone(), self.owner_key.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = release(conn, key, Some(lease)).await {
                        tracing::warn!(error = %e, "releasing a dropped lock failed; its lease will expire");
                    }
                });
            }
            // No runtime: the lease stops being kept alive and expires.
            Err(_) => lease.abandon(),
        }
    }
}
