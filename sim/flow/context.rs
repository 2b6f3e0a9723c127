//! What every flow host shares: the spec, the members' addresses, the recorder,
//! the stop flag and the fenced store; and the hosts' names, addresses and ids.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use coordlab::flow::config::{
    ConsensusAlgorithm, ConsensusConfig, DeploymentConfig, EventsConfig, SystemConfig,
};
use coordlab::flow::types::NodeId;

use crate::sim::library::fenced::FencedResources;
use crate::sim::library::Stop;
use crate::sim::observer::Recorder;
use crate::sim::scenario::flow::FlowSpec;
use crate::sim::trace::{EventKind, FlowEvent};

/// The cluster topic every host publishes to and subscribers follow.
pub const TOPIC: &str = "jobs";
/// The local topic every host publishes to and follows on its own node.
pub const LOCAL_TOPIC: &str = "local-jobs";
/// The one lock every host takes (and its fenced store's name).
pub const RESOURCE: &str = "shared";

/// Trace ids of the flow hosts: `HOST_BASE + k`, on `10.0.HOST_NET.k`.
const HOST_BASE: u64 = 1200;
const HOST_NET: u8 = 90;
/// The harness's own flow host (the audit).
pub const HARNESS_NET: u8 = 91;

#[derive(Clone)]
pub struct Ctx {
    pub spec: FlowSpec,
    /// Every initial member's client address.
    pub endpoints: Vec<String>,
    pub recorder: Arc<Recorder>,
    pub stop: Stop,
    pub resources: FencedResources,
}

impl Ctx {
    pub fn record(&self, node: u64, event: FlowEvent) {
        self.recorder.record(node, EventKind::Flow(event));
    }

    /// Host `k`'s configuration: a cluster container on every member.
    pub fn config(&self, k: u64) -> SystemConfig {
        SystemConfig {
            deployment: DeploymentConfig::Cluster {
                node_id: NodeId::new(host_name(k)),
                nodes: self.endpoints.clone(),
                bootstrap_timeout: Duration::from_secs(5),
            },
            consensus: ConsensusConfig {
                algorithm: ConsensusAlgorithm::Raft,
                timeout: self.spec.consensus_timeout(),
                batch_size: 64,
                leader_election_timeout: Duration::from_secs(1),
            },
            networking: Default::default(),
            storage: Default::default(),
            events: EventsConfig::default(),
        }
    }
}

/// Host `k`'s name, which is also its flow node id.
pub fn host_name(k: u64) -> String {
    format!("flow-{k}")
}

pub fn host_node(k: u64) -> u64 {
    HOST_BASE + k
}

pub fn host_ip(k: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, HOST_NET, k as u8))
}
