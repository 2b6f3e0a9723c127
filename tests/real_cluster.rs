//! Real mode: `coordd` processes on 127.0.0.1 talking real gRPC, with real files and
//! fsync. Leader failover, restart from the data dir, membership changes, shutdown.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_for_leader, wait_for_status, NodeProc, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_leader_failover_and_the_old_leader_catches_up() {
    let mut cluster = TestCluster::start(3);
    let mut any = cluster.client(&[1, 2, 3]);
    let old_leader = wait_for_leader(&mut any).await.id;

    // Write through a follower: the client follows the leader hint.
    let follower = (1..=3).find(|&id| id != old_leader).unwrap();
    let mut via_follower = cluster.client(&[follower]);
    let first = via_follower.put("greeting", b"hello").await.unwrap();
    assert!(first.index > 0);

    cluster.nodes.get_mut(&old_leader).unwrap().kill();
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != old_leader).collect();
    let mut client = cluster.client(&survivors);
    let got = client.get("greeting", false).await.unwrap();
    assert_eq!(got.value.as_deref(), Some(&b"hello"[..]));
    let new_leader = wait_for_leader(&mut client).await;
    assert_ne!(new_leader.id, old_leader);
    assert!(new_leader.term > 1);
    let second = client.put("after-failover", b"still here").await.unwrap();

    // The old leader restarts from its data dir and catches up.
    let peers = cluster.peers.clone();
    cluster.nodes.get_mut(&old_leader).unwrap().restart(&peers);
    let old_addr = cluster.peers[&old_leader].clone();
    let mut all = cluster.client(&[1, 2, 3]);
    let status = wait_for_status(
        &mut all,
        &old_addr,
        "old leader applied the new write",
        |s| s.applied_index >= second.index,
    )
    .await;
    assert_eq!(status.leader_id, new_leader.id);
    let mut direct = cluster.client(&[old_leader]);
    let local = direct.get("after-failover", true).await.unwrap();
    assert_eq!(local.value.as_deref(), Some(&b"still here"[..]));

    // coordctl against the same cluster: status lines and a missing key.
    let endpoints = cluster.endpoints(&[1, 2, 3]).join(",");
    let out = Command::new(env!("CARGO_BIN_EXE_coordctl"))
        .args(["--endpoints", &endpoints, "status"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("leader: {}", new_leader.id)),
        "{text}"
    );
    for key in ["term: ", "commit_index: ", "applied_index: ", "members: "] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "missing {key}: {text}"
        );
    }
    let coordctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_coordctl"))
            .args(["--endpoints", &endpoints])
            .args(args)
            .output()
            .unwrap()
    };
    let out = coordctl(&["get", "no-such-key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = coordctl(&["put", "greeting", "hello"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK revision="));
    let out = coordctl(&["get", "greeting"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let out = coordctl(&["get", "--serializable", "greeting"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let out = coordctl(&["del", "greeting"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deleted 1\n");
    assert_eq!(coordctl(&["get", "greeting"]).status.code(), Some(1));

    // Leadership moves through etcd's MoveLeader; coordctl answers once it has.
    let out = coordctl(&["transfer-leader", &old_leader.to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("leader: {old_leader}\n")
    );
    let out = coordctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("leader: {old_leader}")), "{text}");
    let out = coordctl(&["transfer-leader", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad leader transferee"),
        "{out:?}"
    );

    // Graceful shutdown on SIGTERM.
    for node in cluster.nodes.values_mut() {
        assert!(node.terminate().success(), "node {} exit status", node.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_and_a_member_is_removed() {
    let mut cluster = TestCluster::start(3);
    let mut client = cluster.client(&[1, 2, 3]);
    wait_for_leader(&mut client).await;
    for i in 0..20 {
        client.put(&format!("k{i}"), b"v").await.unwrap();
    }

    // Node 4 starts empty with --join, then is added through the leader.
    let addr4 = format!("127.0.0.1:{}", common::free_port());
    cluster.peers.insert(4, addr4.clone());
    let node4 = NodeProc::start(4, &cluster.peers, cluster.root.path().join("node-4"), true);
    cluster.nodes.insert(4, node4);
    let added = client.add_member(4, &addr4).await.unwrap();
    assert!(added.members.iter().any(|m| m.id == 4 && m.addr == addr4));
    let last = client.put("after-join", b"yes").await.unwrap();
    wait_for_status(&mut client, &addr4, "node 4 caught up", |s| {
        s.applied_index >= last.index
    })
    .await;
    let mut on4 = cluster.client(&[4]);
    assert_eq!(
        on4.get("k0", true).await.unwrap().value.as_deref(),
        Some(&b"v"[..])
    );

    // Remove a follower: it stops by itself and the cluster goes on.
    let leader = wait_for_leader(&mut client).await.id;
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    let removed = client.remove_member(victim).await.unwrap();
    assert!(!removed.members.iter().any(|m| m.id == victim));
    let exit = cluster
        .nodes
        .get_mut(&victim)
        .unwrap()
        .wait_exit(Duration::from_secs(15))
        .expect("removed node exits");
    assert!(exit.success());
    let rest: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&id| id != victim)
        .collect();
    let mut rest_client = cluster.client(&rest);
    rest_client.put("after-remove", b"ok").await.unwrap();
    let status = rest_client.leader_status().await.unwrap();
    assert_eq!(status.members.len(), 3);
}

#[test]
fn coordd_rejects_bad_arguments_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_coordd"))
        .args([
            "--id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "1=nonsense",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("peer 1 address"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_coordd"))
        .args([
            "--id",
            "4",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not list this node"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_wal_is_refused_naming_file_and_offset() {
    let mut cluster = TestCluster::start(1);
    let mut client = cluster.client(&[1]);
    wait_for_leader(&mut client).await;
    for i in 0..5 {
        client.put(&format!("k{i}"), b"some value").await.unwrap();
    }
    let node = cluster.nodes.get_mut(&1).unwrap();
    assert!(node.terminate().success());
    let wal = std::fs::read_dir(&node.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&wal, &bytes).unwrap();

    let peers = cluster.peers.clone();
    let node = cluster.nodes.get_mut(&1).unwrap();
    node.restart(&peers);
    let exit = node
        .wait_exit(Duration::from_secs(10))
        .expect("coordd refuses to start");
    assert!(!exit.success());
    let log = node.log();
    let name = wal.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains(&format!("corrupt data in {name} at offset")),
        "{log}"
    );
    // Refusing changed nothing on disk.
    assert_eq!(std::fs::read(&wal).unwrap(), bytes);
}
