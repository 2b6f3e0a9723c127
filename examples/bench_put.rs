//! Put throughput and latency of a real 3-node cluster on 127.0.0.1.
//!
//! Starts three `coordd` processes (real gRPC, real files with fsync), then runs
//! `--clients` concurrent writers for `--secs` seconds and prints puts/s and the
//! p50/p99/max latency and the servers' CPU time per put. Run it through
//! `ci/bench-real.sh`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coordlab::client::{ClientConfig, CoordClient};

#[path = "support/local_cluster.rs"]
mod local_cluster;

use local_cluster::{cpu_seconds_between, percentile, LocalCluster};

#[derive(Parser)]
struct Args {
    /// Path of the coordd binary.
    #[arg(long, default_value = "target/release/coordd")]
    coordd: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of measurement (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let cluster = LocalCluster::start(&args.coordd, 3);
    let endpoints = cluster.endpoints.clone();
    let mut probe = CoordClient::new(ClientConfig::new(endpoints.clone())).unwrap();
    probe.put("warmup", b"x").await.expect("cluster up");

    let value = vec![b'v'; args.value_bytes];
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let endpoints = endpoints.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = CoordClient::new(ClientConfig::new(endpoints)).unwrap();
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let started = Instant::now();
                let ok = client
                    .put(&format!("bench/{c}/{}", i % 1000), &value)
                    .await
                    .is_ok();
                if started >= warmup_end {
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let pids = cluster.pids();
    let cpu = cpu_seconds_between(&pids, warmup_end, end).await;
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let n = latencies.len();
    println!(
        "real 3-node cluster on 127.0.0.1, {} clients, {}-byte values, {} s: puts={n} errors={errors} throughput={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms server_cpu={:.3}ms/op",
        args.clients,
        args.value_bytes,
        args.secs,
        n as f64 / args.secs as f64,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        cpu * 1000.0 / n.max(1) as f64,
    );
}
