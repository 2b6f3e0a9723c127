//! FlowBuilder's services, local vs Raft, side by side in one run (release build;
//! `ci/bench-flow.sh` builds and runs it):
//!   1. propose → committed: a proposal's latency until `status` says Committed
//!      (sequential proposals; status polled every 1 ms, so figures are ±1 ms);
//!   2. event-bus throughput: `publish_cluster` from concurrent publishers until one
//!      subscriber has received every event.
//!
//! The Raft container runs against three coordd processes it starts on 127.0.0.1.
//!
//! Usage: bench_flow [--coordd target/release/coordd] [--proposals 300]
//!        [--events 2000] [--publishers 16]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coordlab::flow::{
    ConsensusAlgorithm, DeploymentConfig, Event, ProposalStatus, ServiceContainer, StateChange,
    SystemConfig, WorkflowDef,
};

#[path = "support/local_cluster.rs"]
#[allow(dead_code)] // bench_etcd uses the rest
mod local_cluster;

use local_cluster::{percentile, LocalCluster};

#[derive(Parser)]
struct Args {
    /// Path of the coordd binary.
    #[arg(long, default_value = "target/release/coordd")]
    coordd: PathBuf,
    #[arg(long, default_value_t = 300)]
    proposals: usize,
    #[arg(long, default_value_t = 2000)]
    events: usize,
    #[arg(long, default_value_t = 16)]
    publishers: usize,
}

fn change(n: usize) -> StateChange {
    StateChange::WorkflowCreated {
        workflow_id: format!("bench-{n}").as_str().into(),
        definition: WorkflowDef::default(),
    }
}

/// Latencies of `count` sequential proposals until Committed.
async fn propose_latencies(c: &ServiceContainer, count: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let start = Instant::now();
        let id = c.consensus.propose(change(n)).await.expect("propose");
        loop {
            match c.consensus.status(id.clone()).await.expect("status") {
                ProposalStatus::Committed => break,
                ProposalStatus::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
                rejected => panic!("{id} was {rejected:?}"),
            }
        }
        samples.push(start.elapsed());
    }
    samples
}

/// Events per second: `events` published by `publishers` concurrent tasks until
/// one subscriber has them all.
async fn event_throughput(c: &ServiceContainer, events: usize, publishers: usize) -> f64 {
    let topic = format!("bench-{}", std::process::id());
    let mut sub = c
        .event_bus
        .subscribe_cluster(&topic)
        .await
        .expect("subscribe");
    let start = Instant::now();
    let each = events / publishers;
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (c, topic) = (c.clone(), topic.clone());
            tokio::spawn(async move {
                for n in 0..each {
                    let event = Event::new("n", serde_json::json!(p * each + n));
                    c.event_bus
                        .publish_cluster(&topic, event)
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for _ in 0..each * publishers {
        sub.recv().await.expect("every event arrives");
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    (each * publishers) as f64 / start.elapsed().as_secs_f64()
}

fn latency_row(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name:<34} p50 {:>9.1} µs  p99 {:>9.1} µs  ({} proposals)",
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.99)),
        samples.len()
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // Every event must fit the subscriber's queue: nothing is counted as dropped.
    let mut single = SystemConfig::single_node();
    single.events.subscriber_queue = args.events + 1;
    let local = ServiceContainer::new_single_node(single.clone()).expect("local container");

    let cluster = LocalCluster::start(&args.coordd, 3);
    let mut raft = single;
    raft.deployment = DeploymentConfig::Cluster {
        node_id: "bench".into(),
        nodes: cluster.endpoints.clone(),
        bootstrap_timeout: Duration::from_secs(20),
    };
    raft.consensus.algorithm = ConsensusAlgorithm::Raft;
    let raft = ServiceContainer::new_cluster(raft)
        .await
        .expect("cluster container");

    println!("== propose -> committed");
    latency_row(
        "local (NoOp)",
        propose_latencies(&local, args.proposals).await,
    );
    latency_row(
        "Raft (3 coordd, 127.0.0.1)",
        propose_latencies(&raft, args.proposals).await,
    );
    println!(
        "== event bus: {} events, {} publishers, 1 subscriber",
        args.events, args.publishers
    );
    for (name, c) in [("local", &local), ("Raft (3 coordd, 127.0.0.1)", &raft)] {
        let rate = event_throughput(c, args.events, args.publishers).await;
        println!("{name:<34} {rate:>10.0} events/s");
    }
}
