//! Link Bridge in real mode (ci/bench-bridge.sh starts the cluster):
//!   1. proxy overhead: p50/p99 of Maintenance/Status called directly on a member
//!      and the same call through a broker's proxy, sequentially, side by side;
//!   2. shutdown notice → every subscribed client moved: clients subscribed on
//!      every broker, an agent's notice, the time until each client's view shows
//!      the instance draining (median and worst over the rounds).
//!
//! Usage: bench_bridge --brokers A,B,C --members X,Y,Z [--calls 500] [--rounds 20]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use coordlab::bridge::{
    Agent, AgentConfig, ClientConfig, ClientView, DiscoveryClient, FailoverConfig,
};
use coordlab::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use coordlab::proto::etcdserverpb::StatusRequest;
use coordlab::proto::linkbridge::bridge_client::BridgeClient;
use coordlab::proto::linkbridge::{InstanceStatus, ProxyRequest};
use prost::Message as _;

#[derive(Parser)]
struct Args {
    #[arg(long, value_delimiter = ',')]
    brokers: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    members: Vec<String>,
    #[arg(long, default_value_t = 500)]
    calls: usize,
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn row(name: &str, unit: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<28} p50 {:>8.3} ms  p99 {:>8.3} ms  mean {:>8.3} ms  ({} {unit})",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        samples.len()
    );
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    for _ in 0..200 {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("address")
            .connect()
            .await
        {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr} does not listen");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let agent = Agent::start(AgentConfig {
        id: "bench-agent".into(),
        brokers: args.brokers.clone(),
        retry_interval: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(30),
    })
    .expect("agent");
    for (i, member) in args.members.iter().enumerate() {
        agent
            .register("etcd", &format!("m{}", i + 1), member, BTreeMap::new())
            .await
            .expect("register");
    }

    // 1. Direct vs proxied, alternating call by call.
    let mut direct = MaintenanceClient::new(channel(&args.members[0]).await);
    let mut broker = BridgeClient::new(channel(&args.brokers[0]).await);
    let request = ProxyRequest {
        service: "etcd".into(),
        method: "/etcdserverpb.Maintenance/Status".into(),
        payload: StatusRequest {}.encode_to_vec(),
    };
    let (mut direct_times, mut proxied_times) = (Vec::new(), Vec::new());
    for _ in 0..args.calls {
        let t = Instant::now();
        direct.status(StatusRequest {}).await.expect("direct");
        direct_times.push(t.elapsed());
        let t = Instant::now();
        broker.proxy(request.clone()).await.expect("proxied");
        proxied_times.push(t.elapsed());
    }
    row("direct Maintenance/Status", "calls", direct_times);
    row("through a broker's proxy", "calls", proxied_times);

    // 2. Shutdown notice -> every subscribed client moved.
    let mut subscriptions = Vec::new();
    for (i, broker) in args.brokers.iter().enumerate() {
        let client = DiscoveryClient::new(ClientConfig {
            client_id: format!("bench-client-{i}"),
            broker_addresses: vec![broker.clone()],
            failover: FailoverConfig::default(),
            timeout: Duration::from_secs(5),
        })
        .expect("client");
        subscriptions.push(client.subscribe(vec!["etcd".into()]));
    }
    let draining = |v: &ClientView, id: &str| {
        v.services.get("etcd").is_some_and(|all| {
            all.iter()
                .any(|i| i.instance_id == id && i.status == InstanceStatus::Draining as i32)
        })
    };
    let (mut median_moved, mut worst_moved) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let id = format!("n{round}");
        agent
            .register("etcd", &id, &args.members[0], BTreeMap::new())
            .await
            .expect("register");
        let noticed = Instant::now();
        agent
            .shutdown_notice("etcd", &id, Duration::from_secs(5))
            .await
            .expect("notice");
        let mut moved = Vec::new();
        for s in &subscriptions {
            let mut view = s.view();
            let _ = view.wait_for(|v| draining(v, &id)).await;
            moved.push(noticed.elapsed());
        }
        moved.sort();
        median_moved.push(moved[moved.len() / 2]);
        worst_moved.push(*moved.last().expect("clients"));
        agent.deregister("etcd", &id).await.expect("deregister");
    }
    println!(
        "shutdown notice -> {} clients (one per broker) moved, {} rounds:",
        subscriptions.len(),
        args.rounds
    );
    row("  median client", "rounds", median_moved);
    row("  last client", "rounds", worst_moved);
}
