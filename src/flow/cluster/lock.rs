//! The distributed lock on the client library's fenced lock (etcd's lock
//! protocol: the oldest key under the lock's name holds it, its create revision
//! is the fencing token). A flow hold lasts its TTL unless renewed, so the lease
//! behind it is renewed on request, not in the background; while `acquire`
//! waits, the lease is kept alive for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::keys;
use super::kv::{unavailable, Kv};
use crate::flow::error::{FlowError, FlowResult};
use crate::flow::lock::{
    check_resource, DistributedLock, LockGuard, LockHandle, LockInfo, ReleaseOnDrop,
};
use crate::flow::types::NodeId;
use crate::library::{self, CoordinatorError, KeptLease, Renewal};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::LeaseTimeToLiveRequest;
use crate::proto::mvccpb::KeyValue;
use crate::seams::mutants;

/// The library guards of this process's holds, by (resource, token).
type Held = Arc<Mutex<BTreeMap<(String, u64), library::LockGuard>>>;

fn held(h: &Held) -> MutexGuard<'_, BTreeMap<(String, u64), library::LockGuard>> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct FencedLock {
    kv: Kv,
    node: NodeId,
    lock: library::DistributedLock,
    held: Held,
}

/// Aborts the task when dropped (a dropped `JoinHandle` only detaches it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A dropped flow guard drops its library guard, which releases in the background.
struct ReleaseHeld(Held);

impl ReleaseOnDrop for ReleaseHeld {
    fn release_on_drop(&self, handle: &LockHandle) {
        let guard = held(&self.0).remove(&(handle.resource.clone(), handle.token));
        drop(guard);
    }
}

fn lock_error(call: &'static str, e: CoordinatorError) -> FlowError {
    FlowError::Unavailable {
        call,
        reason: e.to_string(),
    }
}

/// The resource an owner key `/flow/locks/<resource>/<lease hex>` locks.
fn resource_of(owner_key: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(owner_key).ok()?;
    let (name, _lease) = text.strip_prefix(keys::LOCKS)?.rsplit_once('/')?;
    Some(name.to_string())
}

impl FencedLock {
    pub fn new(kv: Kv, node: NodeId) -> Self {
        let lock = library::DistributedLock::new(kv.connection().clone());
        FencedLock {
            kv,
            node,
            lock,
            held: Arc::default(),
        }
    }

    /// A lease for one hold, with this node named as its holder on it.
    async fn lease(&self, call: &'static str, ttl: Duration) -> FlowResult<KeptLease> {
        let lease = KeptLease::grant_with(self.kv.connection().clone(), ttl, Renewal::OnRequest)
            .await
            .map_err(|e| lock_error(call, e))?;
        let holder = self.node.as_str().as_bytes().to_vec();
        self.kv
            .put(call, &keys::lock_holder(lease.id()), holder, lease.id())
            .await?;
        Ok(lease)
    }

    fn guard(&self, resource: &str, held_lock: library::LockGuard) -> LockGuard {
        let token = held_lock.fencing_token() as u64;
        held(&self.held).insert((resource.to_string(), token), held_lock);
        let handle = LockHandle {
            resource: resource.to_string(),
            token,
            holder: self.node.clone(),
        };
        LockGuard::new(handle, Arc::new(ReleaseHeld(self.held.clone())))
    }

    /// What the owner key `owner` (the oldest under its lock) says of the hold;
    /// `None` if its lease ended meanwhile.
    async fn info(&self, resource: String, owner: &KeyValue) -> FlowResult<Option<LockInfo>> {
        let lease = owner.lease;
        let ttl = self
            .kv
            .connection()
            .call(|ch, c| {
                let req = c.request(LeaseTimeToLiveRequest {
                    id: lease,
                    keys: false,
                });
                async move { LeaseClient::new(ch).lease_time_to_live(req).await }
            })
            .await
            .map_err(unavailable("status"))?
            .into_inner();
        if ttl.ttl < 0 {
            return Ok(None);
        }
        let holder = self.kv.get("status", &keys::lock_holder(lease)).await?;
        let holder = holder.map_or_else(
            || NodeId::new("unknown"),
            |kv| NodeId::new(String::from_utf8_lossy(&kv.value)),
        );
        Ok(Some(LockInfo {
            resource,
            token: owner.create_revision as u64,
            holder,
            ttl_ms: ttl.granted_ttl.max(0) as u64 * 1000,
            remaining_ttl_ms: ttl.ttl as u64 * 1000,
        }))
    }
}

#[tonic::async_trait]
impl DistributedLock for FencedLock {
    async fn acquire(&self, resource: &str, ttl: Duration) -> FlowResult<LockGuard> {
        check_resource(resource)?;
        let lease = self.lease("acquire", ttl).await?;
        // Waiting must not cost the place in the queue: keep the lease alive
        // until the lock is ours.
        // The renewals stop with the wait, also when the caller drops this future:
        // the dropped lease is revoked in the background, or, if the revoke fails,
        // expires a TTL later instead of holding the queue forever.
        let (conn, id) = (self.kv.connection().clone(), lease.id());
        let waiting = AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = library::renew_once(&conn, id).await {
                    tracing::debug!(lease = id, error = %e, "flow: renewing a waiting lock's lease failed");
                }
            }
        }));
        let taken = self.lock.acquire_on(&keys::lock(resource), lease).await;
        drop(waiting);
        let taken = taken.map_err(|e| lock_error("acquire", e))?;
        // The hold's TTL runs from now, not from when the wait began.
        taken.renew().await.map_err(|e| lock_error("acquire", e))?;
        Ok(self.guard(resource, taken))
    }

    async fn try_acquire(&self, resource: &str, ttl: Duration) -> FlowResult<Option<LockGuard>> {
        check_resource(resource)?;
        let lease = self.lease("try_acquire", ttl).await?;
        match self.lock.try_acquire_on(&keys::lock(resource), lease).await {
            Ok(taken) => Ok(Some(self.guard(resource, taken))),
            Err(CoordinatorError::LockHeld { .. }) => Ok(None),
            Err(e) => Err(lock_error("try_acquire", e)),
        }
    }

    /// Restarts the hold's TTL. etcd leases keep the TTL they were granted, so
    /// `ttl` may not ask for more than that.
    async fn renew(&self, guard: &LockGuard, ttl: Duration) -> FlowResult<()> {
        let handle = guard.handle();
        let lost = || FlowError::LockLost {
            resource: handle.resource.clone(),
            token: handle.token,
        };
        let (granted, lease) = {
            let holds = held(&self.held);
            let Some(g) = holds.get(&(handle.resource.clone(), handle.token)) else {
                return Err(lost());
            };
            (g.ttl(), g.lease_id())
        };
        if ttl > granted {
            return Err(FlowError::invalid(
                "renew ttl",
                format!("{ttl:?} is longer than the {granted:?} the hold was granted"),
            ));
        }
        match library::renew_once(self.kv.connection(), lease).await {
            Ok(left) if left > 0 => Ok(()),
            // The mutant renews a hold whose lease already ended.
            Ok(_) if mutants::active("flow_renew_lost_lock") => Ok(()),
            Ok(_) => Err(lost()),
            Err(e) => Err(lock_error("renew", e)),
        }
    }

    async fn release(&self, guard: LockGuard) -> FlowResult<()> {
        let handle = guard.disarm();
        let taken = held(&self.held).remove(&(handle.resource.clone(), handle.token));
        let Some(taken) = taken else {
            return Err(FlowError::LockLost {
                resource: handle.resource,
                token: handle.token,
            });
        };
        let still_mine = self
            .kv
            .get("release", &String::from_utf8_lossy(taken.owner_key()))
            .await?
            .is_some_and(|kv| kv.create_revision as u64 == handle.token);
        taken.unlock().await.map_err(|e| lock_error("release", e))?;
        if !still_mine {
            return Err(FlowError::LockLost {
                resource: handle.resource,
                token: handle.token,
            });
        }
        Ok(())
    }

    async fn status(&self, resource: &str) -> FlowResult<Option<LockInfo>> {
        check_resource(resource)?;
        let queue = format!("{}/", keys::lock(resource));
        let (first, _) = self
            .kv
            .list_with("status", &queue, SortTarget::Create, SortOrder::Ascend, 1)
            .await?;
        match first.first() {
            Some(owner) => self.info(resource.to_string(), owner).await,
            None => Ok(None),
        }
    }

    async fn list_locks(&self) -> FlowResult<Vec<LockInfo>> {
        let (all, _) = self.kv.list("list_locks", keys::LOCKS).await?;
        let mut oldest: BTreeMap<String, &KeyValue> = BTreeMap::new();
        for kv in &all {
            let Some(resource) = resource_of(&kv.key) else {
                continue;
            };
            let entry = oldest.entry(resource).or_insert(kv);
            if kv.create_revision < entry.create_revision {
                *entry = kv;
            }
        }
        let mut infos = Vec::new();
        for (resource, owner) in oldest {
            if let Some(info) = self.info(resource, owner).await? {
                infos.push(info);
            }
        }
        Ok(infos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_key_names_its_resource() {
        assert_eq!(
            resource_of(b"/flow/locks/jobs/nightly/6b8b4567").as_deref(),
            Some("jobs/nightly")
        );
        assert_eq!(resource_of(b"/flow/other/x/1"), None);
    }
}
