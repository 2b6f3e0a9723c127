//! Cluster membership as the workflow engine sees it: nodes that run its work.

use serde::{Deserialize, Serialize};

use super::error::{FlowError, FlowResult};
use super::subscription::Subscription;
use super::types::{ClusterTopology, NodeId, NodeInfo};

/// A node to register has an id (every implementation's first check).
pub fn check_node(node_info: &NodeInfo) -> FlowResult<()> {
    if node_info.id.as_str().is_empty() {
        return Err(FlowError::invalid("node id", "must not be empty"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeHealth {
    Healthy,
    /// Gone: declared offline, or (in a cluster) its registration expired.
    Offline,
}

/// A message for every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMessage {
    pub from: NodeId,
    pub kind: String,
    pub payload: serde_json::Value,
}

/// Cluster membership.
///
/// Contract: a node `register`ed is listed by `discover` and `topology` and is
/// `Healthy` until `handle_offline` (or, in a cluster, the loss of its
/// registration) makes it `Offline`; an id never registered is `NotFound`. Lists
/// are ordered by node id. `broadcast` reaches every subscriber of
/// `subscribe_messages` in the cluster, the sender's own node included.
#[tonic::async_trait]
pub trait NodeManager: Send + Sync {
    /// Adds or updates `node_info`; returns its id.
    async fn register(&self, node_info: NodeInfo) -> FlowResult<NodeId>;

    /// The nodes that are not offline.
    async fn discover(&self) -> FlowResult<Vec<NodeInfo>>;

    async fn health_check(&self, node_id: NodeId) -> FlowResult<NodeHealth>;

    /// Declares a node offline: it leaves `discover` and `topology`.
    async fn handle_offline(&self, node_id: NodeId) -> FlowResult<()>;

    async fn topology(&self) -> FlowResult<ClusterTopology>;

    async fn broadcast(&self, message: ClusterMessage) -> FlowResult<()>;

    /// Added to the seed, which had no receiving side for `broadcast`: messages
    /// broadcast from now on, in one order.
    async fn subscribe_messages(&self) -> FlowResult<Subscription<ClusterMessage>>;
}
