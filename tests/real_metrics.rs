//! Real mode: `coordd --metrics-listen` on each of three processes. Every node's
//! `/metrics` parses as the text exposition format, agrees on one leader, and its
//! proposal indexes and WAL fsync histogram move with the writes it applies.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_port, wait_for_leader, NodeProc, TestCluster};

/// Keys the test writes.
const PUTS: u64 = 20;

/// A cluster of three whose node `id` serves metrics at `metrics[&id]`.
fn start_cluster() -> (TestCluster, BTreeMap<u64, String>) {
    let root = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let metrics: BTreeMap<u64, String> = peers
        .keys()
        .map(|&id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let nodes = peers
        .keys()
        .map(|&id| {
            let dir = root.path().join(format!("node-{id}"));
            let extra = ["--broker", "--metrics-listen", &metrics[&id]];
            (id, NodeProc::start_args(id, &peers, dir, false, &extra))
        })
        .collect();
    (TestCluster { root, peers, nodes }, metrics)
}

/// A minimal HTTP/1.1 GET: the status code, the Content-Type and the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// One scrape, parsed: every sample line's value by its series (name and labels).
struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parses the exposition text, failing on any line that is neither a comment
    /// (`# TYPE`, `# HELP`, `# UNIT`, `# EOF`) nor a sample of a declared family.
    fn parse(text: &str) -> Scrape {
        let mut families = BTreeSet::new();
        let mut samples = BTreeMap::new();
        assert_eq!(
            text.lines().last(),
            Some("# EOF"),
            "the text ends with # EOF"
        );
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.split_whitespace();
                match words.next() {
                    Some("TYPE") => {
                        let name = words.next().expect("a family name");
                        let kind = words.next().expect("a type");
                        assert!(
                            ["counter", "gauge", "histogram", "info", "unknown"].contains(&kind),
                            "unexpected type in {line:?}"
                        );
                        families.insert(name.to_string());
                    }
                    Some("HELP" | "UNIT" | "EOF") => {}
                    _ => panic!("unexpected comment {line:?}"),
                }
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number in {line:?}"));
            let name = series.split('{').next().unwrap();
            let declared = ["", "_total", "_bucket", "_count", "_sum", "_created"]
                .iter()
                .any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|family| families.contains(family))
                });
            assert!(declared, "sample of an undeclared family: {line:?}");
            samples.insert(series.to_string(), value);
        }
        Scrape { samples }
    }

    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:?}", self.samples.keys()))
    }
}

fn scrape(addr: &str) -> Scrape {
    let (status, content_type, body) =
        http_get(addr, "/metrics").unwrap_or_else(|e| panic!("GET {addr}/metrics: {e}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    Scrape::parse(&body)
}

/// Scrapes every node until `done` holds for all of them at once.
async fn scrape_until(
    metrics: &BTreeMap<u64, String>,
    what: &str,
    done: impl Fn(u64, &Scrape) -> bool,
) -> BTreeMap<u64, Scrape> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrapes: BTreeMap<u64, Scrape> = metrics
            .iter()
            .map(|(&id, addr)| (id, scrape(addr)))
            .collect();
        if scrapes.iter().all(|(&id, s)| done(id, s)) {
            return scrapes;
        }
        assert!(Instant::now() < deadline, "not reached: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const COMMITTED: &str = "etcd_server_proposals_committed_total";
const APPLIED: &str = "etcd_server_proposals_applied_total";
const FSYNCS: &str = "etcd_disk_wal_fsync_duration_seconds_count";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_metrics_that_follow_leadership_and_writes() {
    let (cluster, metrics) = start_cluster();
    let leader = wait_for_leader(&mut cluster.client(&[1, 2, 3])).await.id;

    let before = scrape_until(&metrics, "every node sees the leader", |_, s| {
        s.value("etcd_server_has_leader") == 1.0
    })
    .await;
    let leaders: Vec<u64> = before
        .iter()
        .filter(|(_, s)| s.value("etcd_server_is_leader") == 1.0)
        .map(|(&id, _)| id)
        .collect();
    assert_eq!(leaders, vec![leader], "exactly the leader says it leads");
    for s in before.values() {
        assert!(s.value("etcd_server_leader_changes_seen_total") >= 1.0);
        assert!(s.value(r#"coordlab_raft_messages_received_total{type="MsgHeartbeat"}"#) >= 0.0);
        assert!(s
            .samples
            .contains_key(r#"coordlab_logic_node_mode{mode="local"}"#));
    }

    let kv = cluster.kv(&[1, 2, 3]).await;
    for i in 0..PUTS {
        kv.put(&format!("metrics/{i}"), b"value").await;
    }

    let after = scrape_until(&metrics, "every node applied the writes", |id, s| {
        let was = &before[&id];
        s.value(COMMITTED) >= was.value(COMMITTED) + PUTS as f64
            && s.value(APPLIED) >= was.value(APPLIED) + PUTS as f64
    })
    .await;
    for (id, s) in &after {
        let was = &before[id];
        assert!(
            s.value(FSYNCS) > was.value(FSYNCS),
            "node {id}: no fsync observed"
        );
        assert!(s.value("coordlab_mvcc_keys") >= PUTS as f64, "node {id}");
        assert!(s.value("coordlab_raft_apply_duration_seconds_count") >= PUTS as f64);
        let sent = r#"coordlab_raft_messages_sent_total{type="MsgAppendResponse"}"#;
        if *id != leader {
            assert!(
                s.value(sent) > 0.0,
                "node {id}: a follower acknowledges appends"
            );
        }
    }
    // Every put was appended by the leader it reached, or forwarded by a follower's
    // Raft to the leader.
    let proposed: f64 = after
        .values()
        .map(|s| {
            s.value("coordlab_raft_proposals_total")
                + s.value("coordlab_raft_proposals_forwarded_total")
        })
        .sum();
    assert!(
        proposed >= PUTS as f64,
        "{proposed} proposals for {PUTS} puts"
    );
    for (id, s) in &after {
        assert_eq!(
            s.value("etcd_server_proposals_failed_total"),
            0.0,
            "node {id}"
        );
    }

    let (status, _, _) = http_get(&metrics[&1], "/elsewhere").unwrap();
    assert_eq!(status, 404);
}
