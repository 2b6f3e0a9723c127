//! The Raft implementations: each service is a client of a Raft cluster that
//! speaks the etcd v3 API (coordd, or etcd itself), through the client library's
//! connection — retries, failover to the leader, numbered writes that apply
//! once. Everything a FlowBuilder cluster shares lives in the cluster's keyspace
//! under `/flow/` ([`keys`]); each process keeps only what is its own (its
//! replica of the state, its subscriptions, its local events).
//!
//! - consensus: proposals are Raft log entries ([`consensus`]);
//! - nodes: registrations on a lease, health from the lease's liveness;
//! - state: one change log, a replica per process, per-member consistency checks;
//! - lock: the library's fenced lock, held for a TTL unless renewed;
//! - events: puts of a topic's key, ordered by the log, delivered by watches.

pub mod consensus;
pub mod events;
mod forward;
pub mod keys;
mod kv;
pub mod lock;
mod members;
pub mod nodes;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use crate::client::{Connection, ConnectionConfig, RetryConfig};
use crate::flow::config::{DeploymentConfig, SystemConfig};
use crate::flow::error::{FlowError, FlowResult};
use crate::flow::types::{NodeId, NodeInfo};

pub use consensus::RaftConsensus;
pub use events::RaftEventBus;
pub use kv::Kv;
pub use lock::FencedLock;
pub use nodes::RaftNodeManager;
pub use sync::ReplicatedStateSynchronizer;

/// The longest one attempt of a call may take before it is retried elsewhere.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a cluster container needs from the configuration.
pub struct ClusterSettings {
    pub node: NodeId,
    pub endpoints: Vec<String>,
    /// How long to wait for the cluster to answer at start.
    pub bootstrap_timeout: Duration,
    /// Deadline of one call, retries included; and of a proposal's decision.
    pub timeout: Duration,
    /// TTL of this process's registrations.
    pub registration_ttl: Duration,
    pub queue_capacity: usize,
    /// This node's own registration.
    pub local: NodeInfo,
}

impl ClusterSettings {
    pub fn from_config(config: &SystemConfig) -> FlowResult<Self> {
        let DeploymentConfig::Cluster {
            node_id,
            nodes,
            bootstrap_timeout,
        } = &config.deployment
        else {
            return Err(FlowError::Config {
                field: "deployment.mode".into(),
                reason: "the cluster container needs mode = \"cluster\"".into(),
            });
        };
        let (address, port) = config
            .networking
            .listen_address
            .as_deref()
            .and_then(|a| a.rsplit_once(':'))
            .map_or(("", 0), |(host, port)| (host, port.parse().unwrap_or(0)));
        Ok(ClusterSettings {
            node: node_id.clone(),
            endpoints: nodes.clone(),
            bootstrap_timeout: *bootstrap_timeout,
            timeout: config.consensus.timeout,
            // Three election timeouts: an election alone does not expire it.
            registration_ttl: (config.consensus.leader_election_timeout * 3)
                .max(Duration::from_secs(2)),
            queue_capacity: config.events.subscriber_queue,
            local: NodeInfo::new(node_id.clone(), address, port),
        })
    }

    pub fn connection_config(&self) -> ConnectionConfig {
        let mut c = ConnectionConfig::new(self.endpoints.clone());
        c.attempt_timeout = ATTEMPT_TIMEOUT.min(self.timeout);
        c.deadline = Some(self.timeout);
        c.retry = RetryConfig {
            max_attempts: 1000,
            ..RetryConfig::until_deadline()
        };
        c
    }
}

/// Connects, waiting up to the bootstrap timeout for the cluster to answer.
pub async fn connect(settings: &ClusterSettings) -> FlowResult<Kv> {
    let conn = Connection::new(settings.connection_config()).map_err(|e| FlowError::Config {
        field: "deployment.nodes".into(),
        reason: e.to_string(),
    })?;
    let kv = Kv::new(Arc::new(conn));
    let mut last = None;
    let answered = tokio::time::timeout(settings.bootstrap_timeout, async {
        loop {
            match kv.revision("connect").await {
                Ok(_) => return,
                Err(e) => {
                    tracing::info!(error = %e, "flow: waiting for the cluster");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    })
    .await;
    match answered {
        Ok(()) => Ok(kv),
        Err(_) => Err(FlowError::Unavailable {
            call: "connect",
            reason: format!(
                "no answer within the bootstrap timeout ({:?}); last: {}",
                settings.bootstrap_timeout,
                last.map_or_else(|| "none".to_string(), |e| e.to_string())
            ),
        }),
    }
}
