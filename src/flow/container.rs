//! The service container: the five services behind their traits, chosen by
//! configuration, so code written against it runs unchanged in every mode.

use std::sync::Arc;

use super::cluster::{
    self, ClusterSettings, FencedLock, RaftConsensus, RaftEventBus, RaftNodeManager,
    ReplicatedStateSynchronizer,
};
use super::config::{ConsensusAlgorithm, DeploymentConfig, SystemConfig};
use super::consensus::ConsensusEngine;
use super::error::{FlowError, FlowResult};
use super::events::ClusterEventBus;
use super::local::{
    LocalDistributedLock, LocalEventBus, LocalNodeManager, LocalStateSynchronizer, NoOpConsensus,
};
use super::lock::DistributedLock;
use super::nodes::NodeManager;
use super::sync::StateSynchronizer;
use super::types::NodeInfo;
use crate::seams::clock::{Clock, MonotonicClock};

#[derive(Clone)]
pub struct ServiceContainer {
    pub consensus: Arc<dyn ConsensusEngine>,
    pub node_manager: Arc<dyn NodeManager>,
    pub state_sync: Arc<dyn StateSynchronizer>,
    pub distributed_lock: Arc<dyn DistributedLock>,
    pub event_bus: Arc<dyn ClusterEventBus>,
    pub config: Arc<SystemConfig>,
}

/// Byzantine and PoS consensus are not built, in any mode.
fn check_algorithm_built(config: &SystemConfig) -> FlowResult<()> {
    match config.consensus.algorithm {
        ConsensusAlgorithm::Byzantine => Err(FlowError::unsupported(
            "consensus algorithm byzantine (only noop and raft are built)",
        )),
        ConsensusAlgorithm::PoS => Err(FlowError::unsupported(
            "consensus algorithm pos (only noop and raft are built)",
        )),
        ConsensusAlgorithm::NoOp | ConsensusAlgorithm::Raft => Ok(()),
    }
}

impl ServiceContainer {
    /// The mode `config.deployment` names.
    pub async fn from_config(config: SystemConfig) -> FlowResult<ServiceContainer> {
        match config.deployment {
            DeploymentConfig::SingleNode { .. } => ServiceContainer::new_single_node(config),
            DeploymentConfig::Cluster { .. } => ServiceContainer::new_cluster(config).await,
            DeploymentConfig::P2p { .. } => ServiceContainer::new_p2p(config).await,
        }
    }

    /// The Raft implementations, as a client of the cluster `deployment.nodes`
    /// lists (see [`cluster`](super::cluster)). Waits up to
    /// `deployment.bootstrap_timeout` for the cluster to answer.
    pub async fn new_cluster(config: SystemConfig) -> FlowResult<ServiceContainer> {
        check_algorithm_built(&config)?;
        if config.consensus.algorithm != ConsensusAlgorithm::Raft {
            return Err(FlowError::Config {
                field: "consensus.algorithm".into(),
                reason: "a cluster runs \"raft\" consensus".into(),
            });
        }
        let settings = ClusterSettings::from_config(&config)?;
        let kv = cluster::connect(&settings).await?;
        let node = settings.node.clone();
        let queue = settings.queue_capacity;
        tracing::info!(%node, members = ?settings.endpoints, "flow services: Raft cluster");
        let consensus = RaftConsensus::connect(kv.clone(), node.clone(), settings.timeout).await?;
        let node_manager = RaftNodeManager::connect(
            kv.clone(),
            settings.local.clone(),
            settings.registration_ttl,
            queue,
        )
        .await?;
        let state_sync =
            ReplicatedStateSynchronizer::connect(kv.clone(), node.clone(), settings.timeout, queue)
                .await?;
        Ok(ServiceContainer {
            consensus: Arc::new(consensus),
            node_manager: Arc::new(node_manager),
            state_sync: Arc::new(state_sync),
            distributed_lock: Arc::new(FencedLock::new(kv.clone(), node.clone())),
            event_bus: Arc::new(RaftEventBus::new(kv, node, queue)),
            config: Arc::new(config),
        })
    }

    /// The local implementations, timed on the process's monotonic clock.
    pub fn new_single_node(config: SystemConfig) -> FlowResult<ServiceContainer> {
        ServiceContainer::new_single_node_with_clock(config, Arc::new(MonotonicClock::new()))
    }

    /// The local implementations, lock TTLs timed on `clock`. The configuration
    /// must say `single_node` with `noop` consensus: one process has no one to
    /// run Raft with.
    pub fn new_single_node_with_clock(
        config: SystemConfig,
        clock: Arc<dyn Clock>,
    ) -> FlowResult<ServiceContainer> {
        check_algorithm_built(&config)?;
        if !matches!(config.deployment, DeploymentConfig::SingleNode { .. }) {
            return Err(FlowError::Config {
                field: "deployment.mode".into(),
                reason: "the single-node container needs mode = \"single_node\"".into(),
            });
        }
        if config.consensus.algorithm != ConsensusAlgorithm::NoOp {
            return Err(FlowError::Config {
                field: "consensus.algorithm".into(),
                reason: "a single node runs \"noop\" consensus; \"raft\" needs mode = \"cluster\""
                    .into(),
            });
        }
        let node = config.node_id();
        let queue = config.events.subscriber_queue;
        let info = NodeInfo {
            id: node.clone(),
            ..NodeInfo::local()
        };
        tracing::info!(%node, "flow services: single node");
        Ok(ServiceContainer {
            consensus: Arc::new(NoOpConsensus::new(node.clone())),
            node_manager: Arc::new(LocalNodeManager::new(info, queue)),
            state_sync: Arc::new(LocalStateSynchronizer::new(node.clone(), queue)),
            distributed_lock: Arc::new(LocalDistributedLock::new(node.clone(), clock)),
            event_bus: Arc::new(LocalEventBus::new(node, queue)),
            config: Arc::new(config),
        })
    }

    /// P2P mode (libp2p, Byzantine consensus) is the seed's third phase: not built.
    pub async fn new_p2p(config: SystemConfig) -> FlowResult<ServiceContainer> {
        check_algorithm_built(&config)?;
        Err(FlowError::unsupported("p2p mode"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with(deployment: DeploymentConfig, algorithm: ConsensusAlgorithm) -> SystemConfig {
        let mut config = SystemConfig::single_node();
        config.deployment = deployment;
        config.consensus.algorithm = algorithm;
        config
    }

    fn unsupported(result: FlowResult<ServiceContainer>) -> String {
        match result {
            Err(FlowError::Unsupported { what }) => what,
            Err(e) => panic!("expected Unsupported, got {e}"),
            Ok(_) => panic!("expected Unsupported, got a container"),
        }
    }

    #[tokio::test]
    async fn unbuilt_modes_and_algorithms_are_unsupported() {
        let single = DeploymentConfig::SingleNode { node_id: None };
        let cluster = DeploymentConfig::Cluster {
            node_id: "n1".into(),
            nodes: vec!["127.0.0.1:7101".into()],
            bootstrap_timeout: Duration::from_secs(1),
        };
        let p2p = DeploymentConfig::P2p {
            bootstrap_nodes: vec!["127.0.0.1:9000".into()],
            discovery_interval: Duration::from_secs(1),
        };
        let byzantine = with(single.clone(), ConsensusAlgorithm::Byzantine);
        assert!(unsupported(ServiceContainer::from_config(byzantine).await).contains("byzantine"));
        let pos = with(cluster.clone(), ConsensusAlgorithm::PoS);
        assert!(unsupported(ServiceContainer::from_config(pos).await).contains("pos"));
        let noop = with(cluster, ConsensusAlgorithm::NoOp);
        let Err(FlowError::Config { field, .. }) = ServiceContainer::from_config(noop).await else {
            panic!("a cluster with noop consensus must be a config error");
        };
        assert_eq!(field, "consensus.algorithm");
        let p2p = with(p2p, ConsensusAlgorithm::NoOp);
        assert_eq!(
            unsupported(ServiceContainer::from_config(p2p).await),
            "p2p mode"
        );
    }

    #[tokio::test]
    async fn a_single_node_with_raft_consensus_is_a_config_error() {
        let config = with(
            DeploymentConfig::SingleNode { node_id: None },
            ConsensusAlgorithm::Raft,
        );
        let Err(FlowError::Config { field, .. }) = ServiceContainer::from_config(config).await
        else {
            panic!("expected a config error");
        };
        assert_eq!(field, "consensus.algorithm");
    }

    #[tokio::test]
    async fn the_single_node_container_is_its_configured_node() {
        let config = with(
            DeploymentConfig::SingleNode {
                node_id: Some("worker-7".into()),
            },
            ConsensusAlgorithm::NoOp,
        );
        let c = ServiceContainer::from_config(config).await.unwrap();
        assert_eq!(
            c.consensus.get_leader().await.unwrap(),
            Some("worker-7".into())
        );
        let topology = c.node_manager.topology().await.unwrap();
        assert_eq!(topology.leader, Some("worker-7".into()));
        assert_eq!(topology.nodes[0].id, "worker-7".into());
    }
}
