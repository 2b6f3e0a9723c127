//! In-process locks with the distributed lock's contract: blocking `acquire`,
//! TTL expiry on the node's clock, fencing tokens, release on guard drop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::flow::error::{FlowError, FlowResult};
use crate::flow::lock::{
    check_resource, DistributedLock, LockGuard, LockHandle, LockInfo, ReleaseOnDrop,
};
use crate::flow::types::NodeId;
use crate::seams::clock::{Clock, ForwardOnly};

struct Hold {
    token: u64,
    ttl_ms: u64,
    expires_at_ms: u64,
}

#[derive(Default)]
struct Holds {
    /// Expired holds stay until someone looks at them.
    by_resource: BTreeMap<String, Hold>,
    /// One counter for every resource: increasing per resource too.
    last_token: u64,
}

struct LockTable {
    holder: NodeId,
    /// Expiry is measured on time that never runs backwards.
    clock: ForwardOnly,
    holds: Mutex<Holds>,
    /// Woken on every release, so waiters retry at once rather than at expiry.
    freed: Notify,
}

impl LockTable {
    fn holds(&self) -> MutexGuard<'_, Holds> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `resource` for `ttl_ms`, or says how long until its hold expires.
    fn try_take(&self, resource: &str, ttl_ms: u64) -> Result<LockHandle, u64> {
        let now = self.clock.now_ms();
        let mut holds = self.holds();
        if let Some(hold) = holds.by_resource.get(resource) {
            if hold.expires_at_ms > now {
                return Err(hold.expires_at_ms - now);
            }
        }
        holds.last_token += 1;
        let token = holds.last_token;
        let hold = Hold {
            token,
            ttl_ms,
            expires_at_ms: now + ttl_ms,
        };
        holds.by_resource.insert(resource.to_string(), hold);
        Ok(LockHandle {
            resource: resource.to_string(),
            token,
            holder: self.holder.clone(),
        })
    }

    /// Ends `handle`'s hold; false if it had already ended (expired or replaced).
    fn release(&self, handle: &LockHandle) -> bool {
        let now = self.clock.now_ms();
        let mut holds = self.holds();
        let Some(hold) = holds.by_resource.get(&handle.resource) else {
            return false;
        };
        if hold.token != handle.token {
            return false;
        }
        let alive = hold.expires_at_ms > now;
        holds.by_resource.remove(&handle.resource);
        drop(holds);
        self.freed.notify_waiters();
        alive
    }

    fn renew(&self, handle: &LockHandle, ttl_ms: u64) -> FlowResult<()> {
        let now = self.clock.now_ms();
        let mut holds = self.holds();
        let lost = || FlowError::LockLost {
            resource: handle.resource.clone(),
            token: handle.token,
        };
        let hold = holds
            .by_resource
            .get_mut(&handle.resource)
            .ok_or_else(lost)?;
        if hold.token != handle.token {
            return Err(lost());
        }
        if hold.expires_at_ms <= now {
            holds.by_resource.remove(&handle.resource);
            return Err(lost());
        }
        hold.ttl_ms = ttl_ms;
        hold.expires_at_ms = now + ttl_ms;
        Ok(())
    }

    fn info(&self, resource: &str, hold: &Hold, now: u64) -> Option<LockInfo> {
        (hold.expires_at_ms > now).then(|| LockInfo {
            resource: resource.to_string(),
            token: hold.token,
            holder: self.holder.clone(),
            ttl_ms: hold.ttl_ms,
            remaining_ttl_ms: hold.expires_at_ms - now,
        })
    }
}

impl ReleaseOnDrop for LockTable {
    fn release_on_drop(&self, handle: &LockHandle) {
        if !self.release(handle) {
            tracing::debug!(resource = %handle.resource, token = handle.token, "dropped guard of a lost lock");
        }
    }
}

pub struct LocalDistributedLock {
    table: Arc<LockTable>,
}

impl LocalDistributedLock {
    /// Locks held by `holder` (this node), timed on `clock`.
    pub fn new(holder: NodeId, clock: Arc<dyn Clock>) -> Self {
        LocalDistributedLock {
            table: Arc::new(LockTable {
                holder,
                clock: ForwardOnly::new(clock),
                holds: Mutex::new(Holds::default()),
                freed: Notify::new(),
            }),
        }
    }

    fn guard(&self, handle: LockHandle) -> LockGuard {
        LockGuard::new(handle, self.table.clone())
    }
}

fn check(resource: &str, ttl: Duration) -> FlowResult<u64> {
    check_resource(resource)?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2);
    if ttl_ms == 0 {
        return Err(FlowError::invalid("lock ttl", "must be at least 1 ms"));
    }
    Ok(ttl_ms)
}

#[tonic::async_trait]
impl DistributedLock for LocalDistributedLock {
    async fn acquire(&self, resource: &str, ttl: Duration) -> FlowResult<LockGuard> {
        let ttl_ms = check(resource, ttl)?;
        loop {
            // Registered before trying, so a release between the try and the wait
            // is not missed.
            let freed = self.table.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let wait_ms = match self.table.try_take(resource, ttl_ms) {
                Ok(handle) => return Ok(self.guard(handle)),
                Err(wait_ms) => wait_ms,
            };
            tokio::select! {
                biased;
                _ = &mut freed => {}
                _ = self.table.clock.sleep(Duration::from_millis(wait_ms)) => {}
            }
        }
    }

    async fn try_acquire(&self, resource: &str, ttl: Duration) -> FlowResult<Option<LockGuard>> {
        let ttl_ms = check(resource, ttl)?;
        Ok(self
            .table
            .try_take(resource, ttl_ms)
            .ok()
            .map(|h| self.guard(h)))
    }

    async fn renew(&self, guard: &LockGuard, ttl: Duration) -> FlowResult<()> {
        let ttl_ms = check(guard.resource(), ttl)?;
        self.table.renew(guard.handle(), ttl_ms)
    }

    async fn release(&self, guard: LockGuard) -> FlowResult<()> {
        let handle = guard.disarm();
        if !self.table.release(&handle) {
            return Err(FlowError::LockLost {
                resource: handle.resource,
                token: handle.token,
            });
        }
        Ok(())
    }

    async fn status(&self, resource: &str) -> FlowResult<Option<LockInfo>> {
        let now = self.table.clock.now_ms();
        let holds = self.table.holds();
        let hold = holds.by_resource.get(resource);
        Ok(hold.and_then(|h| self.table.info(resource, h, now)))
    }

    async fn list_locks(&self) -> FlowResult<Vec<LockInfo>> {
        let now = self.table.clock.now_ms();
        let holds = self.table.holds();
        let infos = holds.by_resource.iter();
        Ok(infos
            .filter_map(|(r, h)| self.table.info(r, h, now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seams::clock::Sleep;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock the test sets; sleeps are real but short, so a waiter rechecks.
    struct SetClock(AtomicU64);

    impl Clock for SetClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn sleep(&self, _: Duration) -> Sleep {
            Box::pin(tokio::time::sleep(Duration::from_millis(1)))
        }
    }

    #[tokio::test]
    async fn a_hold_expires_exactly_at_its_ttl_and_renew_then_fails() {
        let clock = Arc::new(SetClock(AtomicU64::new(1_000)));
        let locks = LocalDistributedLock::new("n".into(), clock.clone());
        let ttl = Duration::from_millis(100);
        let guard = locks.try_acquire("r", ttl).await.unwrap().unwrap();
        clock.0.store(1_099, Ordering::SeqCst);
        assert_eq!(
            locks.status("r").await.unwrap().unwrap().remaining_ttl_ms,
            1
        );
        locks.renew(&guard, ttl).await.unwrap();
        clock.0.store(1_198, Ordering::SeqCst);
        assert!(locks.try_acquire("r", ttl).await.unwrap().is_none());
        clock.0.store(1_199, Ordering::SeqCst);
        assert_eq!(locks.status("r").await.unwrap(), None);
        assert_eq!(
            locks.renew(&guard, ttl).await,
            Err(FlowError::LockLost {
                resource: "r".into(),
                token: guard.fencing_token()
            })
        );
    }

    #[tokio::test]
    async fn a_stale_guard_does_not_release_the_next_holder() {
        let clock = Arc::new(SetClock(AtomicU64::new(0)));
        let locks = LocalDistributedLock::new("n".into(), clock.clone());
        let stale = locks
            .try_acquire("r", Duration::from_millis(10))
            .await
            .unwrap()
            .unwrap();
        clock.0.store(10, Ordering::SeqCst);
        let next = locks
            .try_acquire("r", Duration::from_millis(10))
            .await
            .unwrap()
            .unwrap();
        assert!(next.fencing_token() > stale.fencing_token());
        assert!(matches!(
            locks.release(stale).await,
            Err(FlowError::LockLost { .. })
        ));
        let held = locks.status("r").await.unwrap().unwrap();
        assert_eq!(held.token, next.fencing_token());
    }

    #[tokio::test]
    async fn a_waiter_takes_the_lock_when_the_hold_expires() {
        let clock = Arc::new(SetClock(AtomicU64::new(0)));
        let locks = Arc::new(LocalDistributedLock::new("n".into(), clock.clone()));
        let _forgotten = locks
            .try_acquire("r", Duration::from_millis(50))
            .await
            .unwrap()
            .unwrap();
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.acquire("r", Duration::from_millis(50)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        clock.0.store(50, Ordering::SeqCst);
        let guard = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter took the expired lock")
            .unwrap()
            .unwrap();
        assert_eq!(guard.fencing_token(), 2);
    }
}
