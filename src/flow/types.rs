//! The seed's data types: identifiers, node descriptions and state changes.
//!
//! Identifiers are names chosen by the caller, not random UUIDs as in the seed: a
//! node's name comes from its configuration, and nothing here draws randomness
//! (the simulator must be able to replay a run).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }
    )*};
}

string_id! {
    /// A node of the FlowBuilder cluster.
    NodeId;
    WorkflowId;
    /// One run of a workflow.
    ExecutionId;
    TaskId;
    /// Something a task runs on (a worker slot, a GPU, a licence).
    ResourceId;
}

impl NodeId {
    /// The node of a single-node deployment that names none.
    pub fn local() -> Self {
        NodeId::new("local")
    }
}

/// A proposal: the node that proposed it and that node's proposal count at the
/// time, so ids are unique across a cluster without coordination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    pub origin: NodeId,
    /// From 1, increasing in the order `origin` proposed.
    pub sequence: u64,
}

impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.origin, self.sequence)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionId(pub u32);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceCapacity {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
}

/// The metadata key whose value places a node in a region of the topology.
pub const REGION_KEY: &str = "region";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub address: String,
    pub port: u16,
    pub capabilities: Vec<String>,
    pub resources: ResourceCapacity,
    pub metadata: BTreeMap<String, String>,
}

impl NodeInfo {
    pub fn new(id: NodeId, address: impl Into<String>, port: u16) -> Self {
        NodeInfo {
            id,
            address: address.into(),
            port,
            capabilities: Vec::new(),
            resources: ResourceCapacity::default(),
            metadata: BTreeMap::new(),
        }
    }

    /// This process, in a single-node deployment.
    pub fn local() -> Self {
        NodeInfo::new(NodeId::local(), "127.0.0.1", 0)
    }

    pub fn region(&self) -> Option<&str> {
        self.metadata.get(REGION_KEY).map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowDef {
    pub name: String,
    /// Task names, in the order they run.
    pub tasks: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub output: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub message: String,
    pub retryable: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAllocation {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
}

/// A change to the workflow engine's shared state (the seed's list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StateChange {
    WorkflowCreated {
        workflow_id: WorkflowId,
        definition: WorkflowDef,
    },
    WorkflowStarted {
        workflow_id: WorkflowId,
        execution_id: ExecutionId,
    },
    TaskStarted {
        task_id: TaskId,
        node_id: NodeId,
    },
    TaskCompleted {
        task_id: TaskId,
        result: TaskResult,
    },
    TaskFailed {
        task_id: TaskId,
        error: TaskError,
    },
    ResourceAllocated {
        resource_id: ResourceId,
        node_id: NodeId,
        allocation: ResourceAllocation,
    },
    ResourceReleased {
        resource_id: ResourceId,
        node_id: NodeId,
    },
    NodeJoined {
        node_id: NodeId,
        node_info: NodeInfo,
    },
    NodeLeft {
        node_id: NodeId,
        reason: String,
    },
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTopology {
    /// Live nodes, by id.
    pub nodes: Vec<NodeInfo>,
    pub leader: Option<NodeId>,
    /// Node ids by their `region` metadata, each list by id.
    pub regions: BTreeMap<String, Vec<NodeId>>,
    pub partition_map: BTreeMap<PartitionId, NodeId>,
}

impl ClusterTopology {
    pub fn single_node(node: NodeInfo) -> Self {
        let leader = node.id.clone();
        ClusterTopology::of(vec![node], Some(leader))
    }

    /// The topology of `nodes` (any order), regions taken from their metadata; no
    /// partitions.
    pub fn of(mut nodes: Vec<NodeInfo>, leader: Option<NodeId>) -> Self {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let mut regions: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
        for node in &nodes {
            if let Some(region) = node.region() {
                regions
                    .entry(region.to_string())
                    .or_default()
                    .push(node.id.clone());
            }
        }
        ClusterTopology {
            nodes,
            leader,
            regions,
            partition_map: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_groups_nodes_by_region_in_id_order() {
        let mut b = NodeInfo::new("b".into(), "10.0.0.2", 1);
        b.metadata.insert(REGION_KEY.into(), "eu".into());
        let mut a = NodeInfo::new("a".into(), "10.0.0.1", 1);
        a.metadata.insert(REGION_KEY.into(), "eu".into());
        let c = NodeInfo::new("c".into(), "10.0.0.3", 1);
        let t = ClusterTopology::of(vec![c, b, a], Some("a".into()));
        let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(t.regions["eu"], vec![NodeId::from("a"), NodeId::from("b")]);
        assert_eq!(t.regions.len(), 1);
    }

    #[test]
    fn a_state_change_round_trips_through_json() {
        let change = StateChange::TaskCompleted {
            task_id: "t1".into(),
            result: TaskResult {
                output: serde_json::json!({"rows": 3}),
            },
        };
        let text = serde_json::to_string(&change).unwrap();
        assert_eq!(
            text,
            r#"{"TaskCompleted":{"task_id":"t1","result":{"output":{"rows":3}}}}"#
        );
        assert_eq!(serde_json::from_str::<StateChange>(&text).unwrap(), change);
    }
}
