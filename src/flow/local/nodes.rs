//! Membership of a single-node deployment: this node, always healthy and leader,
//! plus whatever nodes the process registers (in-process workers), kept in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::flow::error::{FlowError, FlowResult};
use crate::flow::nodes::{check_node, ClusterMessage, NodeHealth, NodeManager};
use crate::flow::subscription::{subscription, Offered, Subscription, SubscriptionSender};
use crate::flow::types::{ClusterTopology, NodeId, NodeInfo};

struct Registered {
    info: NodeInfo,
    health: NodeHealth,
}

struct Members {
    nodes: BTreeMap<NodeId, Registered>,
    listeners: Vec<SubscriptionSender<ClusterMessage>>,
}

pub struct LocalNodeManager {
    local: NodeId,
    queue_capacity: usize,
    members: Mutex<Members>,
}

impl LocalNodeManager {
    /// `queue_capacity`: messages a `subscribe_messages` subscriber may leave unread.
    pub fn new(local: NodeInfo, queue_capacity: usize) -> Self {
        let id = local.id.clone();
        let mut nodes = BTreeMap::new();
        nodes.insert(
            id.clone(),
            Registered {
                info: local,
                health: NodeHealth::Healthy,
            },
        );
        LocalNodeManager {
            local: id,
            queue_capacity,
            members: Mutex::new(Members {
                nodes,
                listeners: Vec::new(),
            }),
        }
    }

    fn members(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self) -> Vec<NodeInfo> {
        let members = self.members();
        let live = members
            .nodes
            .values()
            .filter(|r| r.health == NodeHealth::Healthy);
        live.map(|r| r.info.clone()).collect()
    }
}

#[tonic::async_trait]
impl NodeManager for LocalNodeManager {
    async fn register(&self, node_info: NodeInfo) -> FlowResult<NodeId> {
        check_node(&node_info)?;
        let id = node_info.id.clone();
        let registered = Registered {
            info: node_info,
            health: NodeHealth::Healthy,
        };
        self.members().nodes.insert(id.clone(), registered);
        Ok(id)
    }

    async fn discover(&self) -> FlowResult<Vec<NodeInfo>> {
        Ok(self.live())
    }

    async fn health_check(&self, node_id: NodeId) -> FlowResult<NodeHealth> {
        let members = self.members();
        let node = members.nodes.get(&node_id);
        node.map(|r| r.health)
            .ok_or_else(|| FlowError::not_found("node", &node_id))
    }

    async fn handle_offline(&self, node_id: NodeId) -> FlowResult<()> {
        if node_id == self.local {
            // This process is the deployment: it cannot be offline while it runs.
            return Err(FlowError::unsupported(
                "declaring the local node offline in single-node mode",
            ));
        }
        let mut members = self.members();
        let node = members.nodes.get_mut(&node_id);
        let node = node.ok_or_else(|| FlowError::not_found("node", &node_id))?;
        node.health = NodeHealth::Offline;
        Ok(())
    }

    async fn topology(&self) -> FlowResult<ClusterTopology> {
        Ok(ClusterTopology::of(self.live(), Some(self.local.clone())))
    }

    async fn broadcast(&self, message: ClusterMessage) -> FlowResult<()> {
        let mut members = self.members();
        members
            .listeners
            .retain(|l| match l.offer(message.clone()) {
                Offered::Queued => true,
                Offered::Dropped => {
                    tracing::debug!(kind = %message.kind, "a slow subscriber missed a broadcast");
                    true
                }
                Offered::Closed => false,
            });
        Ok(())
    }

    async fn subscribe_messages(&self) -> FlowResult<Subscription<ClusterMessage>> {
        let (sender, subscription) = subscription(self.queue_capacity);
        self.members().listeners.push(sender);
        Ok(subscription)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_offline_node_leaves_discovery_but_keeps_its_health() {
        let m = LocalNodeManager::new(NodeInfo::local(), 8);
        let worker = NodeInfo::new("w1".into(), "127.0.0.1", 9000);
        assert_eq!(m.register(worker).await.unwrap(), NodeId::from("w1"));
        assert_eq!(m.discover().await.unwrap().len(), 2);
        m.handle_offline("w1".into()).await.unwrap();
        let ids: Vec<NodeId> = m
            .discover()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, vec![NodeId::local()]);
        assert_eq!(
            m.health_check("w1".into()).await.unwrap(),
            NodeHealth::Offline
        );
        assert!(matches!(
            m.health_check("nope".into()).await,
            Err(FlowError::NotFound { .. })
        ));
        assert!(matches!(
            m.handle_offline(NodeId::local()).await,
            Err(FlowError::Unsupported { .. })
        ));
    }
}
