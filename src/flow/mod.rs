//! FlowBuilder's distributed interfaces (seed 002): the services a workflow engine
//! codes against from day one — consensus, node management, state
//! synchronisation, distributed locks and a cluster event bus — behind
//! object-safe async traits, with implementations chosen by configuration:
//!
//! - single node ([`local`]): NoOp consensus and in-memory services that keep the
//!   same contracts as the distributed ones (a blocking lock with TTL expiry and
//!   fencing tokens, an event bus that counts every event it drops);
//! - cluster ([`cluster`]): Raft on coordlab — every service a client of a
//!   coordd (or etcd) cluster, the shared state in its keyspace;
//! - P2P, Byzantine and PoS consensus: `Unsupported`.
//!
//! Each trait states its contract; [`conformance`] checks a container against all
//! of them, so every implementation is held to one behaviour.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coordlab::flow::FlowError> {
//! use std::time::Duration;
//! use coordlab::flow::{ServiceContainer, SystemConfig};
//!
//! let services = ServiceContainer::from_config(SystemConfig::single_node()).await?;
//! let guard = services.distributed_lock.acquire("invoice-42", Duration::from_secs(30)).await?;
//! println!("holding {} with fencing token {}", guard.resource(), guard.fencing_token());
//! services.distributed_lock.release(guard).await?;
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod config;
pub mod conformance;
pub mod consensus;
pub mod container;
pub mod error;
pub mod events;
pub mod local;
pub mod lock;
pub mod nodes;
pub mod state;
pub mod subscription;
pub mod sync;
pub mod types;

#[cfg(test)]
mod tests;

pub use config::{
    ConfigFormat, ConsensusAlgorithm, ConsensusConfig, DeploymentConfig, EventsConfig,
    NetworkConfig, StorageConfig, SystemConfig,
};
pub use consensus::{ConsensusEngine, ProposalStatus, Vote};
pub use container::ServiceContainer;
pub use error::{FlowError, FlowResult};
pub use events::{
    ClusterEventBus, Event, EventEnvelope, EventStatistics, RouteAction, RoutingRule, Scope,
    ScopeStatistics,
};
pub use lock::{DistributedLock, LockGuard, LockHandle, LockInfo};
pub use nodes::{ClusterMessage, NodeHealth, NodeManager};
pub use state::{
    AppliedChange, ConsistencyReport, FlowState, MemberState, TaskState, TaskStatus, WorkflowState,
    WorkflowStatus,
};
pub use subscription::Subscription;
pub use sync::StateSynchronizer;
pub use types::{
    ClusterTopology, ExecutionId, NodeId, NodeInfo, PartitionId, ProposalId, ResourceAllocation,
    ResourceCapacity, ResourceId, StateChange, TaskError, TaskId, TaskResult, WorkflowDef,
    WorkflowId,
};
