//! The MQ side of a run: broker-only LogicNodes on their own hosts, and an admin
//! client that creates topics and keeps a consumer group busy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use coordlab::mq::broker::Broker;
use coordlab::mq::client::CooClient;
use coordlab::mq::logic_node::LogicNode;
use coordlab::proto::{CreateTopicRequest, SyncConsumerAssignmentsRequest};
use madsim::runtime::Handle;

use crate::sim::clock::SimClock;
use crate::sim::observer::{Recorder, SimObserver};
use crate::sim::scenario::Scenario;
use crate::sim::trace::EventKind;
use crate::sim::world::{node_addr, NODE_PORT};

/// Trace ids of broker-only LogicNodes start here.
pub const EXTRA_BROKER_BASE: u64 = 50;

/// Starts broker-only LogicNodes on their own hosts (External mode only).
pub fn start_extra_brokers(
    handle: &Handle,
    scenario: &Scenario,
    recorder: &Arc<Recorder>,
) -> Vec<u64> {
    let endpoints: Vec<String> = (1..=scenario.cluster.nodes)
        .map(|id| node_addr(id).to_string())
        .collect();
    let mut ids = Vec::new();
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
            .build();
        node.spawn(async move {
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
        });
        ids.push(id);
    }
    ids
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

/// Starts the topic admin on its own host when the scenario creates topics.
pub fn start_topic_admin(handle: &Handle, scenario: &Scenario, recorder: &Arc<Recorder>) {
    if scenario.mq.topics == 0 {
        return;
    }
    let admin = handle
        .create_node()
        .name("topic-admin")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 6, 1)))
        .build();
    admin.spawn(run_topic_admin(scenario.clone(), recorder.clone()));
}
