//! The MQ side of a run: broker-only LogicNodes on their own hosts, and an admin
//! client that creates topics and keeps a consumer group busy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordlab::mq::broker::Broker;
use coordlab::mq::client::CooClient;
use coordlab::mq::logic_node::LogicNode;
use coordlab::proto::{CreateTopicRequest, SyncConsumerAssignmentsRequest};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use madsim::task::NodeId;

use crate::sim::clock::SimClock;
use crate::sim::nodes::BuildForRun as _;
use crate::sim::observer::{Recorder, SimObserver};
use crate::sim::scenario::{Action, BrokerFault, Scenario};
use crate::sim::trace::EventKind;
use crate::sim::world::{node_addr, SharedWorld, NODE_PORT};

/// Trace ids of broker-only LogicNodes start here.
pub const EXTRA_BROKER_BASE: u64 = 50;

/// The broker-only LogicNodes of a run: trace id → madsim node, and those
/// crashed for good.
#[derive(Clone, Default)]
pub struct ExtraBrokers {
    hosts: BTreeMap<u64, NodeId>,
    dead: Arc<Mutex<BTreeSet<u64>>>,
}

impl ExtraBrokers {
    /// The extra brokers still running (or to run again) at the end.
    pub fn live(&self) -> Vec<u64> {
        let dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        self.hosts
            .keys()
            .filter(|id| !dead.contains(id))
            .copied()
            .collect()
    }
}

/// Starts broker-only LogicNodes on their own hosts (External mode only); a
/// restarted host starts a fresh broker process.
pub fn start_extra_brokers(
    handle: &Handle,
    scenario: &Scenario,
    recorder: &Arc<Recorder>,
) -> ExtraBrokers {
    let endpoints: Vec<String> = (1..=scenario.cluster.nodes)
        .map(|id| node_addr(id).to_string())
        .collect();
    let mut brokers = ExtraBrokers::default();
    for k in 1..=scenario.mq.extra_brokers {
        let id = EXTRA_BROKER_BASE + k;
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 5, k as u8));
        let observer: Arc<dyn coordlab::seams::observer::Observer> = Arc::new(SimObserver {
            recorder: recorder.clone(),
        });
        let endpoints = endpoints.clone();
        let node = handle
            .create_node()
            .name(format!("broker-{id}"))
            .ip(ip)
            .init(move || {
                let (observer, endpoints) = (observer.clone(), endpoints.clone());
                async move {
                    let clock: Arc<dyn coordlab::seams::clock::Clock> = Arc::new(SimClock::new());
                    let broker = Broker::new(
                        id,
                        SocketAddr::new(ip, NODE_PORT).to_string(),
                        observer.clone(),
                    );
                    let logic = LogicNode::builder()
                        .id(id)
                        .broker(broker)
                        .coo_endpoints(endpoints)
                        .clock(clock)
                        .observer(observer)
                        .build()
                        .expect("valid broker-only LogicNode");
                    logic.run(std::future::pending()).await;
                }
            })
            .build_for_run();
        brokers.hosts.insert(id, node.id());
    }
    brokers
}

/// Runs the scenario's `[[mq.broker_faults]]` on a host of their own.
pub fn start_broker_faults(
    handle: &Handle,
    scenario: &Scenario,
    world: &SharedWorld,
    brokers: &ExtraBrokers,
) {
    if scenario.mq.broker_faults.is_empty() {
        return;
    }
    let host = handle
        .create_node()
        .name("broker-faults")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 6, 2)))
        .build_for_run();
    let (world, brokers) = (world.clone(), brokers.clone());
    let mut faults = scenario.mq.broker_faults.clone();
    faults.sort_by_key(|f| f.at_ms);
    for fault in faults {
        let (world, brokers) = (world.clone(), brokers.clone());
        host.spawn(async move {
            tokio::time::sleep(Duration::from_millis(fault.at_ms)).await;
            run_broker_fault(&world, &brokers, &fault).await;
        });
    }
}

/// Records that broker `id`'s process is gone (with its loops and receivers), as
/// the world records a killed node.
fn record_killed(world: &SharedWorld, id: u64) {
    let recorder = world.lock().unwrap().recorder.clone();
    recorder.record(
        id,
        EventKind::Process {
            change: "killed".into(),
        },
    );
}

async fn run_broker_fault(world: &SharedWorld, brokers: &ExtraBrokers, fault: &BrokerFault) {
    let id = EXTRA_BROKER_BASE + fault.broker;
    let handle = Handle::current();
    let record = |action: String| world.lock().unwrap().fault(action);
    let host = brokers.hosts.get(&id).copied();
    match (fault.action.as_str(), host) {
        ("crash_for_good", Some(host)) => {
            brokers.dead.lock().unwrap().insert(id);
            handle.kill(host);
            record(format!("mq: broker {id} crashed for good"));
            record_killed(world, id);
        }
        ("crash", Some(host)) => {
            handle.kill(host);
            record(format!("mq: broker {id} crashed"));
            record_killed(world, id);
            tokio::time::sleep(Duration::from_millis(fault.for_ms)).await;
            handle.restart(host);
            record(format!("mq: broker {id} restarted"));
        }
        ("cut_off_leader", Some(host)) => {
            let leader = world.lock().unwrap().recorder.current_leader();
            let Some(leader) = leader else {
                record(format!("mq: no leader to cut broker {id} off from"));
                return;
            };
            let (net, node) = {
                let w = world.lock().unwrap();
                (w.net.clone(), w.nodes.get(&leader).map(|n| n.madsim_id))
            };
            let Some(node) = node else { return };
            net.clog_link(host, node);
            net.clog_link(node, host);
            record(format!("mq: broker {id} cut off from leader {leader}"));
            tokio::time::sleep(Duration::from_millis(fault.for_ms)).await;
            net.unclog_link(host, node);
            net.unclog_link(node, host);
            record(format!("mq: broker {id} reconnected to node {leader}"));
        }
        ("leader_clock_jump", _) => {
            let mut w = world.lock().unwrap();
            let Some(leader) = w.recorder.current_leader() else {
                return;
            };
            if let Some(node) = w.nodes.get_mut(&leader) {
                node.clock.jump(fault.delta_ms);
            }
            // As the fault driver records a jump, so the checkers credit it.
            let action = Action::ClockJump {
                node: leader,
                delta_ms: fault.delta_ms,
            };
            w.fault(serde_json::to_string(&action).expect("actions serialize"));
        }
        _ => {}
    }
}

/// An admin client that creates topics and keeps a consumer group busy.
async fn run_topic_admin(scenario: Scenario, recorder: Arc<Recorder>) {
    let endpoints = (1..=scenario.cluster.nodes).map(|id| node_addr(id).to_string());
    let config = coordlab::client::ConnectionConfig::new(endpoints)
        .until(Duration::from_secs(5), Duration::from_secs(5));
    let Ok(mut client) = CooClient::new(config) else {
        return;
    };
    let spacing = scenario.duration.safety_secs * 1000 / (scenario.mq.topics + 1);
    for i in 0..scenario.mq.topics {
        tokio::time::sleep(Duration::from_millis(spacing)).await;
        let request = CreateTopicRequest {
            name: format!("topic-{i}"),
            partitions: 4,
            replication: 2,
        };
        let outcome = match client.create_topic(request).await {
            Ok(t) => format!("created {}", t.name),
            Err(e) => format!("creating topic-{i} failed: {e}"),
        };
        recorder.record(
            0,
            EventKind::Fault {
                action: format!("admin: {outcome}"),
            },
        );
        let member = format!("consumer-{}", i % 3);
        let _ = client
            .sync_consumer_assignments(SyncConsumerAssignmentsRequest {
                group: "group-a".into(),
                member,
                topics: vec![format!("topic-{i}")],
                leave: false,
            })
            .await;
    }
}

/// Consumers joining and leaving `group-b` until the heal: every 0.3–1.5 s one
/// of them joins (or syncs again) or leaves; each answer is recorded.
async fn run_group_churn(scenario: Scenario, recorder: Arc<Recorder>) {
    let endpoints = (1..=scenario.cluster.nodes).map(|id| node_addr(id).to_string());
    let config = coordlab::client::ConnectionConfig::new(endpoints)
        .until(Duration::from_secs(2), Duration::from_secs(3));
    let Ok(mut client) = CooClient::new(config) else {
        return;
    };
    let end_ms = scenario.duration.safety_secs * 1000;
    let mut waited_ms = 0;
    while waited_ms < end_ms {
        let pause_ms = thread_rng().gen_range(300..1500);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        waited_ms += pause_ms;
        let member = format!(
            "consumer-{}",
            thread_rng().gen_range(0..scenario.mq.group_members)
        );
        let leave = thread_rng().gen_bool(0.35);
        let request = SyncConsumerAssignmentsRequest {
            group: "group-b".into(),
            member: member.clone(),
            topics: vec!["topic-0".into(), "topic-1".into()],
            leave,
        };
        let (outcome, generation, partitions) =
            match client.sync_consumer_assignments(request).await {
                Ok(a) => {
                    let parts = a.partitions.iter().map(|p| (p.topic.clone(), p.partition));
                    ("ok".to_string(), a.generation, parts.collect())
                }
                Err(e) => (e.to_string(), 0, Vec::new()),
            };
        recorder.record(
            0,
            EventKind::GroupSynced {
                group: "group-b".into(),
                member,
                leave,
                outcome,
                generation,
                partitions,
            },
        );
    }
}

/// Starts the topic admin (and the group's consumers) on its own host when the
/// scenario creates topics.
pub fn start_topic_admin(handle: &Handle, scenario: &Scenario, recorder: &Arc<Recorder>) {
    if scenario.mq.topics == 0 {
        return;
    }
    let admin = handle
        .create_node()
        .name("topic-admin")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 6, 1)))
        .build_for_run();
    admin.spawn(run_topic_admin(scenario.clone(), recorder.clone()));
    if scenario.mq.group_members > 0 {
        admin.spawn(run_group_churn(scenario.clone(), recorder.clone()));
    }
}
