//! A throwaway `coordd` cluster on 127.0.0.1 for the benchmarks: fresh ports, data
//! dirs in a temp dir, every process killed on drop.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct LocalCluster {
    /// `127.0.0.1:port` of each node, node 1 first.
    pub endpoints: Vec<String>,
    children: Vec<Child>,
    _data: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts `nodes` coordd processes from `coordd` (a release binary for benchmarks).
    pub fn start(coordd: &Path, nodes: usize) -> LocalCluster {
        let data = tempfile::tempdir().expect("temp dir");
        let endpoints: Vec<String> = (0..nodes)
            .map(|_| {
                let port = TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                format!("127.0.0.1:{port}")
            })
            .collect();
        let peers: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}={addr}", i + 1))
            .collect();
        let children = endpoints
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                Command::new(coordd)
                    .args(["--id", &(i + 1).to_string(), "--listen", addr])
                    .args(["--peers", &peers.join(","), "--data-dir"])
                    .arg(data.path().join(format!("node-{}", i + 1)))
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("start {}: {e}", coordd.display()))
            })
            .collect();
        LocalCluster {
            endpoints,
            children,
            _data: data,
        }
    }
}

impl LocalCluster {
    /// The process ids of the nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

/// CPU seconds the processes `pids` use from `from` to `to` (waits until `to`).
pub async fn cpu_seconds_between(
    pids: &[u32],
    from: std::time::Instant,
    to: std::time::Instant,
) -> f64 {
    let wait_until = |t: std::time::Instant| {
        tokio::time::sleep(t.saturating_duration_since(std::time::Instant::now()))
    };
    wait_until(from).await;
    let start = cpu_seconds(pids);
    wait_until(to).await;
    cpu_seconds(pids) - start
}

/// CPU seconds (user + system) the processes `pids` have used so far, from
/// `/proc/<pid>/stat` (Linux; what the benchmark machines run). A process that is
/// gone counts nothing.
fn cpu_seconds(pids: &[u32]) -> f64 {
    // USER_HZ is 100 on every Linux platform the benchmarks run on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised command name; utime and stime are the
            // 14th and 15th fields of the whole line.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `p`-quantile (0..=1) of sorted latencies.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
