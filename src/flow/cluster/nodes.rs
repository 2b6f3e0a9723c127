//! Membership on the cluster's keyspace: a registration is a key on this
//! process's lease, so a node is `Healthy` while the process that registered it
//! keeps its lease alive and `Offline` once the lease expires (or
//! `handle_offline` deletes it). Broadcasts are puts of one key that every
//! subscriber watches.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::forward::forward;
use super::keys;
use super::kv::{decode, decode_bytes, encode, Kv};
use super::members;
use crate::flow::error::{FlowError, FlowResult};
use crate::flow::nodes::{check_node, ClusterMessage, NodeHealth, NodeManager};
use crate::flow::subscription::{subscription, Offered, Subscription};
use crate::flow::types::{ClusterTopology, NodeId, NodeInfo};
use crate::library::{CoordinatorError, KeptLease};

/// Registrations this process made, put again on a new lease if the old one is
/// lost (a partition longer than the TTL must not leave a live node unregistered).
type Registered = Arc<Mutex<BTreeMap<NodeId, NodeInfo>>>;

fn registrations(r: &Registered) -> MutexGuard<'_, BTreeMap<NodeId, NodeInfo>> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct RaftNodeManager {
    kv: Kv,
    queue_capacity: usize,
    lease_id: Arc<AtomicI64>,
    registered: Registered,
    keeper: JoinHandle<()>,
}

fn lease_error(e: CoordinatorError) -> FlowError {
    FlowError::Unavailable {
        call: "register",
        reason: e.to_string(),
    }
}

impl RaftNodeManager {
    /// Grants this process's registration lease (`ttl`) and registers `local`.
    pub async fn connect(
        kv: Kv,
        local: NodeInfo,
        ttl: Duration,
        queue_capacity: usize,
    ) -> FlowResult<Self> {
        let lease = KeptLease::grant(kv.connection().clone(), ttl)
            .await
            .map_err(lease_error)?;
        let lease_id = Arc::new(AtomicI64::new(lease.id()));
        let registered: Registered = Arc::default();
        let keeper = tokio::spawn(keep_registrations(
            kv.clone(),
            lease,
            ttl,
            lease_id.clone(),
            registered.clone(),
        ));
        let manager = RaftNodeManager {
            kv,
            queue_capacity,
            lease_id,
            registered,
            keeper,
        };
        manager.register(local).await?;
        Ok(manager)
    }

    async fn put_live(&self, info: &NodeInfo) -> FlowResult<()> {
        let lease = self.lease_id.load(Ordering::SeqCst);
        let key = keys::live_node(&info.id);
        self.kv.put("register", &key, encode(info), lease).await?;
        Ok(())
    }
}

impl Drop for RaftNodeManager {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Waits for the lease to be lost, then grants a new one and registers again.
async fn keep_registrations(
    kv: Kv,
    mut lease: KeptLease,
    ttl: Duration,
    lease_id: Arc<AtomicI64>,
    registered: Registered,
) {
    loop {
        lease.lost().await;
        tracing::warn!(
            lease = lease.id(),
            "flow: the registration lease was lost; registering again"
        );
        lease = loop {
            match KeptLease::grant(kv.connection().clone(), ttl).await {
                Ok(fresh) => break fresh,
                Err(e) => {
                    tracing::debug!(error = %e, "flow: granting a registration lease failed");
                    tokio::time::sleep(ttl / 2).await;
                }
            }
        };
        lease_id.store(lease.id(), Ordering::SeqCst);
        let nodes: Vec<NodeInfo> = registrations(&registered).values().cloned().collect();
        for info in nodes {
            let key = keys::live_node(&info.id);
            if let Err(e) = kv.put("register", &key, encode(&info), lease.id()).await {
                tracing::warn!(node = %info.id, error = %e, "flow: registering again failed");
            }
        }
    }
}

#[tonic::async_trait]
impl NodeManager for RaftNodeManager {
    async fn register(&self, node_info: NodeInfo) -> FlowResult<NodeId> {
        check_node(&node_info)?;
        let id = node_info.id.clone();
        registrations(&self.registered).insert(id.clone(), node_info.clone());
        self.kv
            .put("register", &keys::known_node(&id), encode(&node_info), 0)
            .await?;
        self.put_live(&node_info).await?;
        Ok(id)
    }

    async fn discover(&self) -> FlowResult<Vec<NodeInfo>> {
        let (live, _) = self.kv.list("discover", keys::LIVE_NODES).await?;
        live.iter().map(|kv| decode("node", kv)).collect()
    }

    async fn health_check(&self, node_id: NodeId) -> FlowResult<NodeHealth> {
        if self
            .kv
            .get("health_check", &keys::live_node(&node_id))
            .await?
            .is_some()
        {
            return Ok(NodeHealth::Healthy);
        }
        match self
            .kv
            .get("health_check", &keys::known_node(&node_id))
            .await?
        {
            Some(_) => Ok(NodeHealth::Offline),
            None => Err(FlowError::not_found("node", &node_id)),
        }
    }

    async fn handle_offline(&self, node_id: NodeId) -> FlowResult<()> {
        let known = self
            .kv
            .get("handle_offline", &keys::known_node(&node_id))
            .await?;
        if known.is_none() {
            return Err(FlowError::not_found("node", &node_id));
        }
        registrations(&self.registered).remove(&node_id);
        self.kv
            .delete("handle_offline", &keys::live_node(&node_id))
            .await?;
        Ok(())
    }

    /// Live nodes, and the Raft leader's address as the leader.
    async fn topology(&self) -> FlowResult<ClusterTopology> {
        let nodes = self.discover().await?;
        let leader = members::leader(self.kv.connection()).await;
        Ok(ClusterTopology::of(nodes, leader))
    }

    async fn broadcast(&self, message: ClusterMessage) -> FlowResult<()> {
        self.kv
            .put("broadcast", keys::MESSAGES, encode(&message), 0)
            .await?;
        Ok(())
    }

    async fn subscribe_messages(&self) -> FlowResult<Subscription<ClusterMessage>> {
        let now = self.kv.revision("subscribe_messages").await?;
        let (sender, subscription) = subscription(self.queue_capacity);
        let watch = self.kv.watch_key(keys::MESSAGES, now + 1);
        forward(
            watch,
            Arc::new(sender),
            |e| match decode_bytes("message", &e.key, &e.value) {
                Ok(message) => Some(message),
                Err(err) => {
                    tracing::warn!(error = %err, "flow: skipping a broadcast that does not decode");
                    None
                }
            },
            |sender, message| {
                let offered = sender.offer(message);
                if offered == Offered::Dropped {
                    tracing::debug!("flow: a slow subscriber missed a broadcast");
                }
                offered
            },
        );
        Ok(subscription)
    }
}
