//! Real mode: `coordd` processes on 127.0.0.1 talking real gRPC, with real files and
//! fsync. Leader failover, restart from the data dir, membership changes, shutdown.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_for_leader, wait_for_status, NodeProc, TestCluster};

#[test]
fn a_test_port_stays_reserved_against_other_processes() {
    let port = common::free_port();
    // flock(2) locks conflict between open file descriptions, within a process as
    // between processes: another test binary cannot reserve this port now.
    assert!(!common::port_reservable(port));
    assert_ne!(common::free_port(), port);
    assert!(!common::port_reservable(port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_leader_failover_and_the_old_leader_catches_up() {
    let mut cluster = TestCluster::start(3);
    let mut any = cluster.client(&[1, 2, 3]);
    let old_leader = wait_for_leader(&mut any).await.id;

    // Write through a follower: it forwards to the leader.
    let follower = (1..=3).find(|&id| id != old_leader).unwrap();
    let first = cluster
        .kv(&[follower])
        .await
        .put("greeting", b"hello")
        .await;
    assert!(first > 1);

    cluster.nodes.get_mut(&old_leader).unwrap().kill();
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != old_leader).collect();
    let kv = cluster.kv(&survivors).await;
    assert_eq!(
        kv.get("greeting", false).await.as_deref(),
        Some(&b"hello"[..])
    );
    let mut client = cluster.client(&survivors);
    let new_leader = wait_for_leader(&mut client).await;
    assert_ne!(new_leader.id, old_leader);
    assert!(new_leader.term > 1);
    kv.put("after-failover", b"still here").await;

    // The old leader restarts from its data dir and catches up.
    let peers = cluster.peers.clone();
    cluster.nodes.get_mut(&old_leader).unwrap().restart(&peers);
    let old_addr = cluster.peers[&old_leader].clone();
    cluster
        .kv(&[old_leader])
        .await
        .wait_for(
            "after-failover",
            b"still here",
            "old leader applied the new write",
        )
        .await;
    let mut all = cluster.client(&[1, 2, 3]);
    let status = wait_for_status(&mut all, &old_addr, "old leader follows", |s| {
        s.leader_id != 0
    })
    .await;
    assert_eq!(status.leader_id, new_leader.id);

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
    let kv = cluster.kv(&[1, 2, 3]).await;
    for i in 0..20 {
        kv.put(&format!("k{i}"), b"v").await;
    }

    // Node 4 starts empty with --join, then is added through the leader.
    let addr4 = format!("127.0.0.1:{}", common::free_port());
    cluster.peers.insert(4, addr4.clone());
    let node4 = NodeProc::start(4, &cluster.peers, cluster.root.path().join("node-4"), true);
    cluster.nodes.insert(4, node4);
    let added = client.add_member(4, &addr4).await.unwrap();
    assert!(added.members.iter().any(|m| m.id == 4 && m.addr == addr4));
    kv.put("after-join", b"yes").await;
    let on4 = cluster.kv(&[4]).await;
    on4.wait_for("after-join", b"yes", "node 4 caught up").await;
    assert_eq!(on4.get("k0", true).await.as_deref(), Some(&b"v"[..]));

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
    let rest_client = cluster.client(&rest);
    cluster.kv(&rest).await.put("after-remove", b"ok").await;
    let status = rest_client.leader_status().await.unwrap();
    assert_eq!(status.members.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numbered_write_retried_applies_once() {
    use coordlab::library::{attach_write_id, WriteId};
    use coordlab::proto::etcdserverpb::kv_client::KvClient;
    use coordlab::proto::etcdserverpb::PutRequest;
    use coordlab::proto::metadata::WRITE_ID_KEY;

    let cluster = TestCluster::start(3);
    wait_for_leader(&mut cluster.client(&[1, 2, 3])).await;
    let mut channels = Vec::new();
    for id in 1..=3 {
        let url = format!("http://{}", cluster.peers[&id]);
        channels.push(
            tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let put = |value: &str, id: WriteId| {
        let mut r = tonic::Request::new(PutRequest {
            key: b"once".to_vec(),
            value: value.as_bytes().to_vec(),
            prev_kv: true,
            ..Default::default()
        });
        attach_write_id(id, &mut r);
        r
    };
    let first = WriteId { client: 42, seq: 1 };
    let answer = KvClient::new(channels[0].clone())
        .put(put("a", first))
        .await
        .unwrap()
        .into_inner();
    let revision = answer.header.unwrap().revision;
    // The same write again, through another member: answered, not applied.
    let again = KvClient::new(channels[1].clone())
        .put(put("a", first))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.header.unwrap().revision, revision);
    assert!(
        again.prev_kv.is_none(),
        "the first answer: no previous value"
    );
    let kv = cluster.kv(&[1, 2, 3]).await;
    let next = kv.put("other", b"x").await;
    assert_eq!(next, revision + 1, "the retry made no revision");
    // Request 2 applies; a late copy of request 1 is refused, not applied.
    let second = WriteId { client: 42, seq: 2 };
    KvClient::new(channels[2].clone())
        .put(put("b", second))
        .await
        .unwrap();
    let late = KvClient::new(channels[0].clone())
        .put(put("a", first))
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
    assert_eq!(kv.get("once", false).await.as_deref(), Some(&b"b"[..]));
    // A malformed number is refused by name.
    let mut bad = tonic::Request::new(PutRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    bad.metadata_mut()
        .insert(WRITE_ID_KEY, "seven".parse().unwrap());
    let err = KvClient::new(channels[0].clone())
        .put(bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("coordlab-write-id \"seven\""),
        "{err:?}"
    );
}

/// Runs coordd with `args` until it exits: its exit code and stderr.
fn coordd_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coordd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn coordd_rejects_bad_arguments_with_a_clear_message() {
    let node = ["--id", "1", "--listen", "127.0.0.1:1"];
    let (code, err) = coordd_exit(&[&node[..], &["--peers", "1=nonsense"]].concat());
    assert_ne!(code, Some(0));
    assert!(err.contains("peer 1 address"), "{err}");
    let (code, err) = coordd_exit(&[
        "--id",
        "4",
        "--listen",
        "127.0.0.1:1",
        "--peers",
        "1=127.0.0.1:2",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not list this node"), "{err}");
    for (mode, retention, says) in [
        ("hourly", "1", "--auto-compaction-mode"),
        ("revision", "1h", "not a number of revisions"),
        ("periodic", "soon", "neither hours nor a duration"),
    ] {
        let flags = [
            "--peers",
            "1=127.0.0.1:1",
            "--auto-compaction-mode",
            mode,
            "--auto-compaction-retention",
            retention,
        ];
        let (code, err) = coordd_exit(&[&node[..], &flags[..]].concat());
        assert_eq!(code, Some(2), "{mode} {retention}: {err}");
        assert!(err.contains(says), "{mode} {retention}: {err}");
    }
}

/// `--auto-compaction-retention 2s` (etcd's periodic mode): the leader compacts
/// the history older than the period on its own, every member applies it, and
/// the latest value stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_compaction_drops_the_history_older_than_its_period() {
    use coordlab::proto::etcdserverpb::RangeRequest;

    let cluster = TestCluster::start_with(3, &["--auto-compaction-retention", "2s"]);
    let mut client = cluster.client(&[1, 2, 3]);
    wait_for_leader(&mut client).await;
    let kv = cluster.kv(&[1, 2, 3]).await;
    let first = kv.put("k", b"v0").await;
    for i in 1..5 {
        kv.put("k", format!("v{i}").as_bytes()).await;
    }
    for id in [1, 2, 3] {
        let member = cluster.kv(&[id]).await;
        let at_first = RangeRequest {
            key: b"k".to_vec(),
            revision: first,
            serializable: true,
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match member.0.range(at_first.clone()).await {
                Err(e)
                    if e.to_string()
                        .contains("required revision has been compacted") =>
                {
                    break
                }
                Err(e) => panic!("member {id}: {e}"),
                Ok(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "member {id} still serves revision {first}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        assert_eq!(member.get("k", true).await.as_deref(), Some(&b"v4"[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_wal_is_refused_naming_file_and_offset() {
    let mut cluster = TestCluster::start(1);
    let mut client = cluster.client(&[1]);
    wait_for_leader(&mut client).await;
    let kv = cluster.kv(&[1]).await;
    for i in 0..5 {
        kv.put(&format!("k{i}"), b"some value").await;
    }
    let node = cluster.nodes.get_mut(&1).unwrap();
    assert!(node.terminate().success());
    let wal = std::fs::read_dir(&node.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&wal).unwrap();
    // In the records, not in the zeros reserved after them.
    let data_len = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let middle = data_len / 2;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_files_are_kept_as_asked_compressed_and_recovered() {
    let mut cluster = TestCluster::start_with(
        1,
        &[
            "--snapshot-entries",
            "20",
            "--snapshot-retention",
            "2",
            "--snapshot-compress",
        ],
    );
    let mut client = cluster.client(&[1]);
    wait_for_leader(&mut client).await;
    let kv = cluster.kv(&[1]).await;
    // Compressible values, enough entries for several snapshots.
    let value = b"the same bytes again and again; ".repeat(8);
    for i in 0..100 {
        kv.put(&format!("k{i:03}"), &value).await;
    }
    drop(kv);
    let node = cluster.nodes.get_mut(&1).unwrap();
    assert!(node.terminate().success());
    let mut snapshots: Vec<(String, u64)> = std::fs::read_dir(&node.dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .map(|e| {
            let size = e.metadata().unwrap().len();
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    snapshots.sort();
    assert_eq!(snapshots.len(), 2, "the newest two kept: {snapshots:?}");
    // 100 values of 256 bytes: an uncompressed snapshot holds 25 KB of them.
    let newest = snapshots.last().unwrap().1;
    assert!(newest < 12_000, "the newest snapshot is {newest} bytes");

    let peers = cluster.peers.clone();
    cluster.nodes.get_mut(&1).unwrap().restart(&peers);
    let mut client = cluster.client(&[1]);
    wait_for_leader(&mut client).await;
    let kv = cluster.kv(&[1]).await;
    for i in [0, 50, 99] {
        assert_eq!(
            kv.get(&format!("k{i:03}"), false).await.as_deref(),
            Some(&value[..]),
            "k{i:03} after recovery from the compressed snapshot"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_escape_codes_in_files_and_json_lines_parse() {
    for format in ["text", "json"] {
        let mut cluster = TestCluster::start_with(1, &["--log-format", format]);
        let mut client = cluster.client(&[1]);
        wait_for_leader(&mut client).await;
        let node = cluster.nodes.get_mut(&1).unwrap();
        assert!(node.terminate().success());
        let log = node.log();
        assert!(
            log.contains("coordd node serving"),
            "{format}: the startup line is logged:\n{log}"
        );
        assert!(
            !log.contains('\u{1b}'),
            "{format}: a log file (stderr is no terminal) has no escape codes:\n{log}"
        );
        if format == "json" {
            for line in log.lines().filter(|l| !l.trim().is_empty()) {
                let event: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(
                    event["level"].is_string() && event["fields"].is_object(),
                    "{line}"
                );
            }
        }
    }
}

/// Writes issued at once on one connection all apply: each takes its own write
/// session, so none is refused as overtaken by another's later number.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_on_one_connection_all_apply() {
    let cluster = TestCluster::start(3);
    let kv = std::sync::Arc::new(cluster.kv(&[1, 2, 3]).await);
    let writers: Vec<_> = (0..32)
        .map(|n| {
            let kv = kv.clone();
            tokio::spawn(async move { kv.put(&format!("concurrent/{n}"), b"x").await })
        })
        .collect();
    for w in writers {
        w.await.expect("every concurrent put applies");
    }
    for n in 0..32 {
        assert_eq!(
            kv.get(&format!("concurrent/{n}"), false).await,
            Some(b"x".to_vec())
        );
    }
}
