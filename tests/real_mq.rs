//! Real mode, MQ control plane: three `coordd --broker` processes each run a
//! LogicNode (broker + coo). A topic created with `coordctl` reaches every broker's
//! view; after the coo leader is killed the LogicNodes switch modes, visible in
//! `coordctl status`.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{wait_for_leader, TestCluster};

fn coordctl(endpoints: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coordctl"))
        .args(["--endpoints", endpoints, "--timeout-secs", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Polls `coordctl ARGS` until its output satisfies `done`.
fn wait_for_output(
    endpoints: &str,
    args: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = coordctl(endpoints, args);
        if ok && done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "not reached: {what}; last output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mode_lines(status_all: &str) -> Vec<(u64, String, String, u64)> {
    // Blocks of `key: value` lines separated by blank lines.
    status_all
        .split("\n\n")
        .filter_map(|block| {
            let get = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                    .map(str::to_string)
            };
            Some((
                get("id")?.parse().ok()?,
                get("role")?,
                get("logic_node_mode")?,
                get("mode_switches")?.parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_reach_every_broker_and_modes_follow_the_coo_leader() {
    let mut cluster = TestCluster::start_with(3, &["--broker"]);
    let mut client = cluster.client(&[1, 2, 3]);
    let leader = wait_for_leader(&mut client).await.id;
    let all = cluster.endpoints(&[1, 2, 3]).join(",");

    // Local iff the node's coo leads.
    wait_for_output(
        &all,
        &["status", "--all"],
        "leader local, followers external",
        |out| {
            let modes = mode_lines(out);
            modes.len() == 3
                && modes
                    .iter()
                    .all(|(id, _, mode, _)| (mode == "local") == (*id == leader))
        },
    );

    // Placement is sticky (a broker that registers later gets new topics and
    // under-replicated partitions, never moved ones), so the topic is created
    // once all three brokers are registered.
    wait_for_output(&all, &["brokers"], "all three brokers registered", |out| {
        out.lines().filter(|l| l.starts_with("broker:")).count() == 3
    });
    let (ok, out) = coordctl(
        &all,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "4",
            "--replication",
            "2",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("orders"), "{out}");
    // Every broker's report lists the partitions its topic view assigns to it.
    let brokers = wait_for_output(
        &all,
        &["brokers"],
        "all brokers host partitions of orders",
        |out| {
            out.lines()
                .filter(|l| l.starts_with("broker:") && l.contains("orders/"))
                .count()
                == 3
        },
    );
    let hosted: usize = brokers.lines().map(|l| l.matches("orders/").count()).sum();
    assert_eq!(hosted, 8, "4 partitions x 2 replicas:\n{brokers}");
    let topics = wait_for_output(&all, &["topic", "list"], "topic listed", |out| {
        out.contains("topic: orders")
    });
    assert!(topics.contains("partitions=4 replication=2"), "{topics}");

    let (ok, out) = coordctl(&all, &["group", "join", "g", "alice", "orders"]);
    assert!(ok && out.contains("member=alice"), "{out}");

    // Kill the coo leader: a new leader's LogicNode switches to Local.
    cluster.nodes.get_mut(&leader).unwrap().kill();
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let rest = cluster.endpoints(&survivors).join(",");
    let mut rest_client = cluster.client(&survivors);
    let new_leader = wait_for_leader(&mut rest_client).await.id;
    assert_ne!(new_leader, leader);
    let status = wait_for_output(&rest, &["status", "--all"], "new leader local", |out| {
        mode_lines(out)
            .iter()
            .any(|(id, _, mode, switches)| *id == new_leader && mode == "local" && *switches >= 1)
    });
    let modes = mode_lines(&status);
    let follower = modes.iter().find(|(id, ..)| *id != new_leader).unwrap();
    assert_eq!(follower.2, "external", "{status}");
    // The metadata survived the leader change.
    let topics = wait_for_output(&rest, &["topic", "list"], "topic still listed", |out| {
        out.contains("topic: orders")
    });
    assert!(topics.contains("partitions=4"), "{topics}");
}
