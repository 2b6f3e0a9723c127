//! Real mode, FlowBuilder's interfaces (seed 002) in cluster mode: the same
//! conformance suite the single-node container passes, run against the Raft
//! container on three coordd processes, and what only a cluster can show — two
//! flow nodes sharing one order of events, one lock, one state; consistency
//! checked member by member; the promises kept across a leader kill.
//!
//! `FLOW_SERVER=etcd cargo test --test real_flow` runs them against a real
//! 3-member etcd: the Raft container speaks only the etcd v3 API.

#![cfg(not(feature = "sim"))]

mod common;

use std::time::Duration;

use common::servers::Servers;
use coordlab::flow::conformance::{self, ConformanceOptions};
use coordlab::flow::{
    ConsensusAlgorithm, DeploymentConfig, Event, NodeHealth, ProposalStatus, ServiceContainer,
    StateChange, SystemConfig, WorkflowDef,
};

fn config(servers: &Servers, node: &str) -> SystemConfig {
    let mut config = SystemConfig::single_node();
    config.deployment = DeploymentConfig::Cluster {
        node_id: node.into(),
        nodes: servers.endpoints(),
        bootstrap_timeout: Duration::from_secs(20),
    };
    config.consensus.algorithm = ConsensusAlgorithm::Raft;
    config.consensus.timeout = Duration::from_secs(10);
    // Small, so the drop check overflows it quickly.
    config.events.subscriber_queue = 16;
    config
}

async fn container(servers: &Servers, node: &str) -> ServiceContainer {
    ServiceContainer::from_config(config(servers, node))
        .await
        .unwrap_or_else(|e| panic!("the cluster container {node}: {e}"))
}

fn created(workflow: &str) -> StateChange {
    StateChange::WorkflowCreated {
        workflow_id: workflow.into(),
        definition: WorkflowDef::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_on_a_three_node_cluster() {
    let servers = Servers::start("FLOW_SERVER");
    let c = container(&servers, "conformance-node").await;
    conformance::run_all(&c, &ConformanceOptions::cluster("raft"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_flow_nodes_share_one_event_order_one_lock_and_one_state() {
    let servers = Servers::start("FLOW_SERVER");
    let a = container(&servers, "node-a").await;
    let b = container(&servers, "node-b").await;

    // Events: a subscriber on each node sees everything both publish, in one order.
    let mut on_a = a.event_bus.subscribe_cluster("jobs").await.unwrap();
    let mut on_b = b.event_bus.subscribe_cluster("jobs").await.unwrap();
    let mut local_b = b.event_bus.subscribe_local("jobs").await.unwrap();
    let publishers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(p, c)| {
            tokio::spawn(async move {
                for n in 0..5 {
                    let event = Event::new("n", serde_json::json!(p * 10 + n));
                    c.event_bus.publish_cluster("jobs", event).await.unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    a.event_bus
        .publish_local("jobs", Event::new("local", serde_json::json!("a only")))
        .await
        .unwrap();
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..10 {
        seen_a.push(on_a.recv().await.unwrap());
        seen_b.push(on_b.recv().await.unwrap());
    }
    assert_eq!(seen_a, seen_b, "one order on both nodes");
    assert!(seen_a.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let origins: std::collections::BTreeSet<_> =
        seen_a.iter().map(|e| e.origin.to_string()).collect();
    assert_eq!(origins.len(), 2, "events from both nodes: {origins:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(local_b.try_recv().is_none(), "a's local event stayed on a");
    let stats = b.event_bus.statistics().await.unwrap();
    assert_eq!(stats.cluster.published, 5);
    assert_eq!(stats.cluster.delivered, 10);

    // Lock: a's hold keeps b out until released.
    let ttl = Duration::from_secs(10);
    let held = a.distributed_lock.acquire("invoice-7", ttl).await.unwrap();
    assert!(b
        .distributed_lock
        .try_acquire("invoice-7", ttl)
        .await
        .unwrap()
        .is_none());
    let info = b
        .distributed_lock
        .status("invoice-7")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.holder.as_str(), info.token),
        ("node-a", held.fencing_token())
    );
    let token = held.fencing_token();
    a.distributed_lock.release(held).await.unwrap();
    let next = b
        .distributed_lock
        .try_acquire("invoice-7", ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(next.fencing_token() > token);
    b.distributed_lock.release(next).await.unwrap();

    // State: a's change is b's after force_sync; a refused change is refused for b too.
    a.state_sync
        .broadcast_change(created("wf-1"))
        .await
        .unwrap();
    b.state_sync.force_sync().await.unwrap();
    assert_eq!(
        b.state_sync
            .sync_workflow("wf-1".into())
            .await
            .unwrap()
            .workflow_id,
        "wf-1".into()
    );
    assert!(b
        .state_sync
        .broadcast_change(created("wf-1"))
        .await
        .is_err());
    let report = b.state_sync.check_consistency().await.unwrap();
    assert!(report.consistent, "{report:?}");
    assert_eq!(report.members.len(), 3, "every member was read: {report:?}");

    // Nodes: each sees the other; a dropped node goes offline when its lease ends.
    assert_eq!(
        b.node_manager.health_check("node-a".into()).await.unwrap(),
        NodeHealth::Healthy
    );
    let topology = b.node_manager.topology().await.unwrap();
    let leader = topology.leader.expect("a leader");
    assert!(
        servers.endpoints().contains(&leader.to_string()),
        "{leader}"
    );
    drop(a);
    let offline = async {
        loop {
            if b.node_manager.health_check("node-a".into()).await.unwrap() == NodeHealth::Offline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), offline)
        .await
        .expect("node-a goes offline once its registration lease ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proposals_commit_and_events_keep_their_order_across_a_leader_kill() {
    let mut servers = Servers::start("FLOW_SERVER");
    let c = container(&servers, "survivor").await;
    let mut sub = c.event_bus.subscribe_cluster("audit").await.unwrap();
    let before = c.consensus.get_leader().await.unwrap().expect("a leader");
    c.consensus.trigger_election().await.unwrap();
    let moved = async {
        loop {
            match c.consensus.get_leader().await.unwrap() {
                Some(now) if now != before => return now,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    let leader = tokio::time::timeout(Duration::from_secs(10), moved)
        .await
        .expect("trigger_election moves leadership");
    let mut proposals = Vec::new();
    for n in 0..6 {
        if n == 3 {
            servers.kill(leader.as_str());
        }
        proposals.push(
            c.consensus
                .propose(created(&format!("p{n}")))
                .await
                .unwrap(),
        );
        let event = Event::new("n", serde_json::json!(n));
        c.event_bus.publish_cluster("audit", event).await.unwrap();
    }
    for p in &proposals {
        c.consensus.commit(p.clone()).await.unwrap();
        assert_eq!(
            c.consensus.status(p.clone()).await.unwrap(),
            ProposalStatus::Committed
        );
    }
    let mut last = 0;
    for n in 0..6 {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("every event arrives")
            .unwrap();
        assert_eq!(
            e.event.payload,
            serde_json::json!(n),
            "in publish order, once"
        );
        assert!(e.sequence > last);
        last = e.sequence;
    }
}
