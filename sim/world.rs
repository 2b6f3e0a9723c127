//! The simulated world of one run: a cluster of madsim nodes (each a
//! coordd-equivalent with its own simulated disk, clock and faulty links), their
//! addresses, membership as the harness knows it, and the operations the fault
//! driver and the supervisor apply to them (kill, restart, pause, partition, heal).

use std::collections::{BTreeMap, BTreeSet};

use super::budget::{leaves_a_known_endpoint, may_remove, may_write_off};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordlab::raft::{Bootstrap, RaftConfig, RaftHandle};
use coordlab::seams::transport::Transport;
use coordlab::server::{serve_node, NodeOptions, NodeSeams};
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;

use super::clock::SimClock;
use super::disk::{DiskFaults, SimDisk};
use super::net::{FaultyTransport, LinkFaults, SharedLinkFaults};
use super::observer::{Recorder, SimObserver};
use super::scenario::Scenario;
use super::trace::EventKind;
use crate::sim::nodes::BuildForRun as _;

/// Port every simulated node serves on.
pub const NODE_PORT: u16 = 7100;

pub fn node_addr(id: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8)), NODE_PORT)
}

/// Where a node stands, as the harness made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Paused,
    Down,
    /// Its disk is damaged beyond what it may start from; it stays down.
    Failed,
    /// Removed from the cluster by a membership change.
    Removed,
    /// Killed for good by the fault plan: never restarted.
    Lost,
}

pub struct SimNode {
    pub id: u64,
    pub madsim_id: NodeId,
    pub disk: Arc<SimDisk>,
    pub clock: Arc<SimClock>,
    pub state: NodeState,
    /// Counted as lost by the fault budget: killed for good, or a bit of its disk
    /// flipped (it may refuse to start from it).
    pub written_off: bool,
}

/// Records a change the harness made to node `id`'s process.
fn record_process(recorder: &Recorder, id: u64, change: &str) {
    recorder.record(
        id,
        EventKind::Process {
            change: change.into(),
        },
    );
}

/// The harness's world during a run.
pub struct World {
    pub scenario: Scenario,
    pub handle: Handle,
    pub net: Arc<NetSim>,
    pub recorder: Arc<Recorder>,
    pub link_faults: SharedLinkFaults,
    pub nodes: BTreeMap<u64, SimNode>,
    /// Address of every node ever started, by id.
    pub peers: BTreeMap<u64, String>,
    /// Members as the harness knows them: initial voters, plus acknowledged
    /// additions, minus acknowledged removals.
    pub members: BTreeSet<u64>,
    /// Members whose removal was proposed and not yet answered.
    pub removing: BTreeSet<u64>,
}

pub type SharedWorld = Arc<Mutex<World>>;

impl World {
    /// The world of a fresh run: the initial voters created and bootstrapped as a
    /// new cluster, on the current madsim runtime's network.
    pub fn start(scenario: &Scenario, recorder: Arc<Recorder>) -> SharedWorld {
        let net = NetSim::current();
        net.update_config(|c| c.send_latency = default_latency());
        let voters: Vec<u64> = (1..=scenario.cluster.nodes).collect();
        let mut world = World {
            scenario: scenario.clone(),
            handle: Handle::current(),
            net,
            recorder,
            link_faults: Arc::default(),
            nodes: BTreeMap::new(),
            peers: voters
                .iter()
                .map(|&id| (id, node_addr(id).to_string()))
                .collect(),
            members: voters.iter().copied().collect(),
            removing: Default::default(),
        };
        for &id in &voters {
            world.create_node(
                id,
                Bootstrap::NewCluster {
                    voters: voters.clone(),
                },
            );
        }
        Arc::new(Mutex::new(world))
    }

    /// Members the end of the run judges: not failed, removed or lost, and not
    /// leaving — a removal whose answer never came (the heal cancels the fault
    /// driver's call in flight) may have committed, and a node removed while it was
    /// down never learns it, so it cannot be required to catch up.
    pub fn live_members(&self) -> Vec<u64> {
        self.members
            .iter()
            .copied()
            .filter(|id| !self.removing.contains(id))
            .filter(|id| {
                self.nodes.get(id).is_some_and(|n| {
                    !matches!(
                        n.state,
                        NodeState::Failed | NodeState::Removed | NodeState::Lost
                    )
                })
            })
            .collect()
    }
}

fn raft_config(scenario: &Scenario, id: u64) -> RaftConfig {
    let c = &scenario.cluster;
    let mut raft = RaftConfig::new(id);
    raft.tick_interval = Duration::from_millis(c.tick_ms);
    raft.election_ticks = c.election_ticks;
    raft.heartbeat_ticks = c.heartbeat_ticks;
    raft.pre_vote = c.pre_vote;
    raft.check_quorum = c.check_quorum;
    raft.snapshot_interval_entries = c.snapshot_entries;
    raft.request_timeout = Duration::from_millis(scenario.workload.op_timeout_ms);
    raft
}

impl World {
    /// Creates node `id` (its madsim node, disk and clock) and starts it.
    pub fn create_node(&mut self, id: u64, bootstrap: Bootstrap) {
        let disk = Arc::new(SimDisk::new());
        let clock = Arc::new(SimClock::new());
        self.recorder.add_disk(id, disk.clone());
        self.peers.insert(id, node_addr(id).to_string());
        let options = NodeOptions {
            raft: raft_config(&self.scenario, id),
            listen: node_addr(id),
            peers: self.peers.clone(),
            bootstrap,
            broker: self.scenario.mq.brokers,
            auto_compaction: self.scenario.coord.auto_compaction(),
        };
        let link_faults = self.link_faults.clone();
        let seams = NodeSeams {
            disk: disk.clone(),
            clock: clock.clone(),
            observer: Arc::new(SimObserver {
                recorder: self.recorder.clone(),
            }),
            transport_layer: Some(Arc::new(
                move |inner: Arc<dyn Transport>, node: RaftHandle| -> Arc<dyn Transport> {
                    Arc::new(FaultyTransport::new(inner, node, link_faults.clone()))
                },
            )),
            probe_sink: None,
        };
        let recorder = self.recorder.clone();
        let node = self
            .handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_addr(id).ip())
            .init(move || {
                let options = options.clone();
                let seams = seams.clone();
                let recorder = recorder.clone();
                async move {
                    // The process exits when its Raft loop stops; the world's
                    // supervisor decides whether to restart it.
                    if let Err(e) = serve_node(options, seams, std::future::pending()).await {
                        recorder.record(
                            id,
                            EventKind::Stopped {
                                reason: e.to_string(),
                            },
                        );
                    }
                }
            })
            .build_for_run();
        self.nodes.insert(
            id,
            SimNode {
                id,
                madsim_id: node.id(),
                disk,
                clock,
                state: NodeState::Up,
                written_off: false,
            },
        );
    }

    /// Members written off, killed for good or failed: none will serve again.
    fn lost(&self) -> BTreeSet<u64> {
        self.nodes
            .values()
            .filter(|n| n.written_off || matches!(n.state, NodeState::Lost | NodeState::Failed))
            .map(|n| n.id)
            .collect()
    }

    /// The members as the harness knows them, without nodes that left.
    fn voters(&self) -> BTreeSet<u64> {
        self.members
            .iter()
            .copied()
            .filter(|id| {
                self.nodes
                    .get(id)
                    .is_some_and(|n| n.state != NodeState::Removed)
            })
            .collect()
    }

    /// Whether writing `node` off (killing it for good, flipping a bit of its
    /// disk) leaves a majority of the members able to serve. The plan's budget is
    /// drawn from the initial size; membership changes shrink it, so each loss
    /// is judged when it happens.
    pub fn may_write_off(&self, node: u64) -> bool {
        may_write_off(&self.voters(), &self.removing, &self.lost(), node)
    }

    /// Whether the members left after removing `node` keep a majority able to
    /// serve, and one that the clients know the address of.
    pub fn may_remove(&self, node: u64) -> bool {
        let (voters, lost) = (self.voters(), self.lost());
        let initial = self.scenario.cluster.nodes;
        may_remove(&voters, &self.removing, &lost, node)
            && leaves_a_known_endpoint(&voters, &self.removing, &lost, node, initial)
    }

    pub fn fault(&self, action: String) {
        self.recorder.record(0, EventKind::Fault { action });
    }

    /// Kills the node's process; its disk loses what was not synced.
    pub fn kill(&mut self, id: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if matches!(node.state, NodeState::Up | NodeState::Paused) {
            self.handle.kill(node.madsim_id);
            node.disk.crash();
            node.state = NodeState::Down;
            record_process(&self.recorder, id, "killed");
        }
    }

    /// Kills the node and keeps it down through restarts and the heal.
    pub fn kill_for_good(&mut self, id: u64) {
        self.kill(id);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.written_off = true;
            if node.state == NodeState::Down {
                node.state = NodeState::Lost;
            }
        }
    }

    /// Starts a down (or self-stopped) node again from its disk.
    pub fn restart(&mut self, id: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if matches!(
            node.state,
            NodeState::Failed | NodeState::Removed | NodeState::Lost
        ) {
            return;
        }
        if node.state != NodeState::Down {
            self.handle.kill(node.madsim_id);
            node.disk.crash();
            record_process(&self.recorder, id, "killed");
        }
        self.handle.restart(node.madsim_id);
        node.state = NodeState::Up;
    }

    pub fn pause(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            if node.state == NodeState::Up {
                self.handle.pause(node.madsim_id);
                node.state = NodeState::Paused;
                record_process(&self.recorder, id, "paused");
            }
        }
    }

    pub fn resume(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            if node.state == NodeState::Paused {
                self.handle.resume(node.madsim_id);
                node.state = NodeState::Up;
                record_process(&self.recorder, id, "resumed");
            }
        }
    }

    /// Clogs every link between different groups (one-way links: `clog_link`).
    pub fn partition(&self, groups: &[Vec<u64>]) {
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for x in a {
                    for y in b {
                        if let (Some(nx), Some(ny)) = (self.nodes.get(x), self.nodes.get(y)) {
                            self.net.clog_link(nx.madsim_id, ny.madsim_id);
                            self.net.clog_link(ny.madsim_id, nx.madsim_id);
                        }
                    }
                }
            }
        }
    }

    pub fn clog_one_way(&self, from: u64, to: u64) {
        if let (Some(a), Some(b)) = (self.nodes.get(&from), self.nodes.get(&to)) {
            self.net.clog_link(a.madsim_id, b.madsim_id);
        }
    }

    pub fn heal_network(&self) {
        let ids: Vec<NodeId> = self.nodes.values().map(|n| n.madsim_id).collect();
        for &a in &ids {
            for &b in &ids {
                if a != b {
                    self.net.unclog_link(a, b);
                }
            }
        }
    }

    pub fn live_nodes(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Up)
            .map(|n| n.id)
            .collect()
    }

    /// Heals every fault: network, message faults, latency, disks, clocks, paused
    /// and down nodes. Self-stopped nodes are restarted too.
    pub fn heal_everything(&mut self) {
        self.heal_network();
        *self.link_faults.lock().unwrap_or_else(|e| e.into_inner()) = LinkFaults::default();
        self.net
            .update_config(|c| c.send_latency = default_latency());
        let stopped = self.recorder.lock().stopped.clone();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = &self.nodes[&id];
            node.disk.set_faults(DiskFaults::default());
            node.clock.set_drift_ppm(0);
            match node.state {
                NodeState::Paused => self.resume(id),
                NodeState::Down => self.restart(id),
                NodeState::Up if stopped.contains(&id) => self.restart(id),
                _ => {}
            }
        }
    }
}

pub fn default_latency() -> std::ops::Range<Duration> {
    Duration::from_millis(1)..Duration::from_millis(5)
}

/// Restarts nodes whose process stopped by itself (e.g. a storage error), as a
/// service manager would, after `delay`.
pub async fn supervise(world: SharedWorld, delay: Duration) {
    loop {
        tokio::time::sleep(delay).await;
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        let stopped = w.recorder.lock().stopped.clone();
        for id in stopped {
            let reason = {
                let state = w.recorder.lock();
                last_stop_reason(&state.trace.events, id)
                    .unwrap_or_default()
                    .to_string()
            };
            let Some(node) = w.nodes.get_mut(&id) else {
                continue;
            };
            if node.state != NodeState::Up {
                continue;
            }
            if reason.contains("removed from the cluster") {
                node.state = NodeState::Removed;
            } else if reason.contains("corrupt") {
                // It refused its damaged disk: it stays down, as an operator would
                // replace it rather than restart it.
                node.state = NodeState::Failed;
                w.fault(format!("node {id} refuses its damaged disk; left down"));
            } else {
                w.fault(format!("supervisor restarts stopped node {id}"));
                w.restart(id);
            }
        }
    }
}

fn last_stop_reason(events: &[super::trace::TraceEvent], node: u64) -> Option<&str> {
    events.iter().rev().find_map(|e| match &e.kind {
        EventKind::Stopped { reason } if e.node == node => Some(reason.as_str()),
        _ => None,
    })
}
