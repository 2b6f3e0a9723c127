//! Put throughput and latency of a real 3-node cluster on 127.0.0.1.
//!
//! Starts three `coordd` processes (real gRPC, real files with fsync), then runs
//! `--clients` concurrent writers for `--secs` seconds and prints puts/s and the
//! p50/p99/max latency. Run it through `ci/bench-real.sh`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use coordlab::client::{ClientConfig, CoordClient};

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

struct Cluster(Vec<Child>);

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect();
    let mut children = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let child = Command::new(&args.coordd)
            .args([
                "--id",
                &(i + 1).to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--peers", &peers.join(","), "--data-dir"])
            .arg(dir.path().join(format!("node-{}", i + 1)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", args.coordd.display()));
        children.push(child);
    }
    let _cluster = Cluster(children);
    let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
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
        "real 3-node cluster on 127.0.0.1, {} clients, {}-byte values, {} s: puts={n} errors={errors} throughput={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        args.clients,
        args.value_bytes,
        args.secs,
        n as f64 / args.secs as f64,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}
