//! Put and Range throughput and latency of a real 3-node coordd cluster through the
//! etcd v3 gRPC API (`etcdserverpb.KV`), as any etcd client would see it.
//!
//! Starts three `coordd` processes (real gRPC, real files with fsync), then for each
//! operation and client count runs that many concurrent clients for `--secs` seconds
//! (after a 1 s warm-up) and prints one line: ops/s, p50, p99, max.
//!
//! - put: `Put` of a 100-byte value (by default) to one of 1000 keys per client;
//! - range: a linearizable (`serializable=false`) single-key `Range` of a key written
//!   beforehand, so every read goes through the leader's read index.
//!
//! Each client has its own connection; clients are spread round-robin over the three
//! members (followers forward to the leader, as etcd does), or all on the leader with
//! `--leader-only`. Each row also gives the servers' CPU time per operation
//! (`server_cpu`, user + system of the member processes during the measured
//! seconds, from /proc): throughput on a machine shared with the clients is bounded
//! by CPU, and this figure compares two servers even when other load comes and goes.
//! Run it through `ci/bench-real.sh`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use coordlab::proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use tonic::transport::{Channel, Endpoint};

#[path = "support/local_cluster.rs"]
mod local_cluster;

use local_cluster::{cpu_seconds_between, percentile, LocalCluster};

#[derive(Parser)]
struct Args {
    /// Path of the coordd binary.
    #[arg(long, default_value = "target/release/coordd")]
    coordd: PathBuf,
    /// Client counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Operations to measure, comma-separated: put, range.
    #[arg(long, value_delimiter = ',', default_value = "put,range")]
    ops: Vec<Op>,
    /// Seconds of measurement per row (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Keys each put client cycles through, and keys written for the range rows.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Connect every client to the leader instead of spreading them over all members.
    #[arg(long)]
    leader_only: bool,
    /// Measure an already running cluster at these endpoints (any etcd v3 server,
    /// e.g. a real etcd for comparison) instead of starting coordd.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// With `--endpoints`: the server processes whose CPU time each row reports.
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<u32>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Op {
    Put,
    Range,
}

/// What every client of a row does.
#[derive(Clone, Copy)]
struct Workload {
    op: Op,
    keys: usize,
    value_bytes: usize,
}

/// What one client measured in one row.
#[derive(Default)]
struct ClientReport {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

async fn connect(endpoint: &str) -> Channel {
    Endpoint::from_shared(format!("http://{endpoint}"))
        .expect("endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {endpoint}: {e}"))
}

/// Polls Maintenance.Status until a member reports itself leader; returns its endpoint.
async fn wait_for_leader(endpoints: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for endpoint in endpoints {
            let Ok(channel) = Endpoint::from_shared(format!("http://{endpoint}"))
                .expect("endpoint")
                .connect()
                .await
            else {
                continue;
            };
            let status = MaintenanceClient::new(channel)
                .status(StatusRequest {})
                .await;
            if let Ok(status) = status.map(|r| r.into_inner()) {
                let me = status.header.map(|h| h.member_id).unwrap_or(0);
                if status.leader != 0 && status.leader == me {
                    return endpoint.clone();
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader among {endpoints:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn bench_key(client: usize, i: usize) -> Vec<u8> {
    format!("bench/{client}/{i}").into_bytes()
}

/// Writes the keys the range rows read (`bench/0/0..keys`).
async fn preload(endpoint: &str, keys: usize, value: &[u8]) {
    let mut kv = KvClient::new(connect(endpoint).await);
    for i in 0..keys {
        kv.put(PutRequest {
            key: bench_key(0, i),
            value: value.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("preload put: {e}"));
    }
}

/// One operation; an answer that is not what was asked for counts as an error.
async fn run_op(
    kv: &mut KvClient<Channel>,
    workload: Workload,
    client: usize,
    i: usize,
    value: &[u8],
) -> Result<(), String> {
    match workload.op {
        Op::Put => {
            let request = PutRequest {
                key: bench_key(client, i % workload.keys),
                value: value.to_vec(),
                ..Default::default()
            };
            kv.put(request).await.map_err(|e| e.to_string())?;
        }
        Op::Range => {
            let request = RangeRequest {
                key: bench_key(0, (client * 7919 + i) % workload.keys),
                serializable: false,
                ..Default::default()
            };
            let response = kv.range(request).await.map_err(|e| e.to_string())?;
            let kvs = response.into_inner().kvs;
            if kvs.len() != 1 || kvs[0].value.len() != workload.value_bytes {
                return Err(format!("range returned {} kvs", kvs.len()));
            }
        }
    }
    Ok(())
}

async fn run_row(
    args: &Args,
    op: Op,
    clients: usize,
    targets: &[String],
    members: usize,
    server_pids: &[u32],
) {
    let value = vec![b'v'; args.value_bytes];
    let workload = Workload {
        op,
        keys: args.keys,
        value_bytes: args.value_bytes,
    };
    // Connect everyone before the clock starts.
    let mut kvs = Vec::new();
    for c in 0..clients {
        kvs.push(KvClient::new(connect(&targets[c % targets.len()]).await));
    }
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for (c, mut kv) in kvs.into_iter().enumerate() {
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut report = ClientReport::default();
            let mut i = 0;
            while Instant::now() < end {
                i += 1;
                let started = Instant::now();
                let outcome = run_op(&mut kv, workload, c, i, &value).await;
                if started < warmup_end {
                    continue;
                }
                match outcome {
                    Ok(()) => report.latencies.push(started.elapsed()),
                    Err(e) => {
                        report.errors += 1;
                        report.first_error.get_or_insert(e);
                    }
                }
            }
            report
        }));
    }
    let cpu = cpu_seconds_between(server_pids, warmup_end, end).await;
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let report = task.await.expect("client task");
        latencies.extend(report.latencies);
        errors += report.errors;
        first_error = first_error.or(report.first_error);
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "etcd API, {} nodes, op={:<5} clients={clients:<2} targets={} value={}B: ops={} errors={errors} throughput={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms server_cpu={}{}",
        members,
        format!("{op:?}").to_lowercase(),
        if args.leader_only { "leader" } else { "all" },
        args.value_bytes,
        latencies.len(),
        latencies.len() as f64 / args.secs as f64,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        if server_pids.is_empty() || latencies.is_empty() {
            "n/a".to_string()
        } else {
            format!("{:.3}ms/op", cpu * 1000.0 / latencies.len() as f64)
        },
        first_error.map(|e| format!(" first_error={e:?}")).unwrap_or_default(),
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let cluster = args
        .endpoints
        .is_empty()
        .then(|| LocalCluster::start(&args.coordd, 3));
    let endpoints = match &cluster {
        Some(cluster) => cluster.endpoints.clone(),
        None => args.endpoints.clone(),
    };
    let leader = wait_for_leader(&endpoints).await;
    let value = vec![b'v'; args.value_bytes];
    preload(&leader, args.keys, &value).await;
    let server_pids = match &cluster {
        Some(cluster) => cluster.pids(),
        None => args.server_pids.clone(),
    };
    let targets = if args.leader_only {
        vec![leader]
    } else {
        endpoints.clone()
    };
    for &op in &args.ops {
        for &clients in &args.clients {
            run_row(&args, op, clients, &targets, endpoints.len(), &server_pids).await;
        }
    }
}
