//! What a node shows a metrics scrape that no [`Event`](crate::seams::observer::Event)
//! carries: its Raft status (commit and applied index, proposals), the keyspace's
//! size, its watchers and leases, and its LogicNode's mode. Read on demand, so a
//! node nobody scrapes pays nothing.

use std::sync::Arc;

use crate::coord::state::SharedCoordState;
use crate::mq::logic_node::LogicNodeMetrics;
use crate::raft::{NodeStatus, RaftError, RaftHandle};

/// Hands a serving node's probe to whoever scrapes it (coordd's metrics endpoint).
pub type ProbeSink = Arc<dyn Fn(NodeProbe) + Send + Sync>;

/// Reads a running node's state for a scrape.
#[derive(Clone)]
pub struct NodeProbe {
    pub(super) handle: RaftHandle,
    pub(super) coord: SharedCoordState,
    pub(super) logic_node: Option<Arc<LogicNodeMetrics>>,
}

/// One reading of a node.
#[derive(Debug, Clone)]
pub struct NodeSample {
    pub raft: NodeStatus,
    pub keyspace: KeyspaceSample,
    /// The LogicNode's mode (`local`, `external`; `None`: no loop runs) and mode
    /// switches, when the node runs a broker.
    pub logic_node: Option<(Option<&'static str>, u64)>,
}

/// The etcd keyspace and what hangs on it, on this member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyspaceSample {
    /// Keys whose latest version is a value.
    pub live_keys: u64,
    /// Bytes of keys and values, history included (what etcd's Status calls db size).
    pub size_bytes: u64,
    pub revision: i64,
    /// Watchers registered with this member.
    pub watchers: u64,
    /// Leases granted and not yet removed.
    pub leases: u64,
}

impl NodeProbe {
    /// Reads the node: the Raft status goes through its Raft loop (as `coordctl
    /// status` does), the rest is read under the keyspace's lock.
    pub async fn sample(&self) -> Result<NodeSample, RaftError> {
        let raft = self.handle.status().await?;
        let keyspace = {
            let state = self.coord.lock();
            KeyspaceSample {
                live_keys: state.mvcc.live_keys() as u64,
                size_bytes: state.mvcc.size_bytes().max(0) as u64,
                revision: state.mvcc.revision(),
                watchers: state.hub.len() as u64,
                leases: state.leases.len() as u64,
            }
        };
        let logic_node = self
            .logic_node
            .as_ref()
            .map(|m| (m.mode().map(|mode| mode.name()), m.switches()));
        Ok(NodeSample {
            raft,
            keyspace,
            logic_node,
        })
    }
}
