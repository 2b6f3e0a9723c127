//! Growing and shrinking a cluster with the real `etcdctl member` commands (etcd's
//! Cluster API: MemberAdd, MemberRemove, MemberPromote, MemberList), as an operator
//! would: add a member, start it, read from it, remove another, add a learner,
//! promote it once it caught up — and the refusals etcd answers on the way.
//!
//! Every expectation is etcd's own: `REAL_ETCDCTL_SERVER=etcd cargo test --test
//! real_membership` runs the same steps against a real etcd 3.4 cluster, whose new
//! members start with `--initial-cluster-state existing` and the
//! `ETCD_INITIAL_CLUSTER` that `etcdctl member add` prints.

// Real-mode tests run with `cargo test`, not in the simulation build.
#![cfg(not(feature = "sim"))]

mod common;

use std::time::{Duration, Instant};

use common::etcdctl::{etcdctl_or_skip, Etcdctl};
use common::servers::Servers;
use common::{free_port, NodeProc, TestCluster};

impl Servers {
    /// Starts the member that `member add` (which printed `added`) just added as
    /// `id` / `name` at `peer_url`; its client endpoint.
    fn start_added(&mut self, id: u64, name: &str, peer_url: &str, added: &str) -> String {
        match self {
            Servers::Coordd(cluster) => {
                // `coordd --id <id> --listen <addr> --peers ... --join`.
                let addr = peer_url.trim_start_matches("http://").to_string();
                cluster.peers.insert(id, addr.clone());
                let dir = cluster.root.path().join(format!("node-{id}"));
                let node = NodeProc::start(id, &cluster.peers, dir, true);
                cluster.nodes.insert(id, node);
                addr
            }
            Servers::Etcd(cluster) => {
                let initial_cluster = added
                    .lines()
                    .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
                    .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in {added}"))
                    .trim_matches('"');
                cluster.start_added(name, peer_url, initial_cluster)
            }
        }
    }

    /// A coordd member removed from the cluster stops by itself.
    fn assert_stops(&mut self, client_endpoint: &str) {
        if let Servers::Coordd(cluster) = self {
            let node = cluster
                .nodes
                .values_mut()
                .find(|n| n.addr == client_endpoint)
                .unwrap();
            let exit = node.wait_exit(Duration::from_secs(20));
            assert!(exit.is_some(), "removed node {} still runs", node.id);
            cluster.peers.remove(&node.id.clone());
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let logs: Vec<(String, String)> = match self {
            Servers::Coordd(cluster) => cluster
                .nodes
                .values()
                .map(|node| (format!("coordd node {}", node.id), node.log()))
                .collect(),
            Servers::Etcd(cluster) => cluster.logs(),
        };
        for (name, log) in logs {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- {name} log, last {} lines", tail.len());
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        }
    }
}

/// Polls `check` until `Ok`, failing with `what` and the last `Err` after `within`.
fn poll<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "not within {within:?}: {what}\nlast attempt: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One line of `etcdctl member list`: `id, started|unstarted, name, peers, clients, learner`.
#[derive(Debug, Clone)]
struct Row {
    id: u64,
    started: bool,
    peer_urls: String,
    client_urls: String,
    is_learner: bool,
}

fn member_list(ctl: &Etcdctl) -> Vec<Row> {
    let out = ctl.ok(&["member", "list"]);
    out.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(", ").collect();
            assert_eq!(f.len(), 6, "member list line {line:?}");
            Row {
                id: u64::from_str_radix(f[0], 16).unwrap(),
                started: f[1] == "started",
                peer_urls: f[3].to_string(),
                client_urls: f[4].to_string(),
                is_learner: f[5] == "true",
            }
        })
        .collect()
}

/// Runs a membership command; retries while etcd refuses it as "unhealthy cluster"
/// (etcd's strict reconfiguration check wants every member connected for a few
/// seconds first; coordd has no such check and never answers it).
fn reconfigure(ctl: &Etcdctl, args: &[&str]) -> common::etcdctl::Outcome {
    poll(
        &format!("{args:?} past the health check"),
        Duration::from_secs(30),
        || {
            let out = ctl.run(args);
            if out.error_line().contains("unhealthy cluster") {
                return Err(out.to_string());
            }
            Ok(out)
        },
    )
}

/// `etcdctl member add NAME --peer-urls=URL [--learner]`: the ID it printed (in hex,
/// `Member <id> added to cluster <cluster>`) and all it printed.
fn member_add(ctl: &Etcdctl, name: &str, peer_url: &str, learner: bool) -> (u64, String) {
    let url_flag = format!("--peer-urls={peer_url}");
    let mut args = vec!["member", "add", name, url_flag.as_str()];
    if learner {
        args.push("--learner");
    }
    let out = reconfigure(ctl, &args).ok();
    let id = out
        .lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.first() == Some(&"Member") && words.get(2) == Some(&"added"))
                .then(|| u64::from_str_radix(words[1], 16).unwrap())
        })
        .unwrap_or_else(|| panic!("no member ID in {out}"));
    (id, out)
}

/// A serializable read of `key` on `endpoint` alone prints `value`.
fn wait_until_serves(endpoint: &str, key: &str, value: &str) {
    let ctl = Etcdctl::new(&[endpoint.to_string()]);
    poll(
        &format!("{endpoint} serves {key}={value}"),
        Duration::from_secs(30),
        || {
            let out = ctl.run(&["get", key, "--consistency=s"]);
            (out.status.success() && out.stdout == format!("{key}\n{value}\n"))
                .then_some(())
                .ok_or_else(|| out.to_string())
        },
    );
}

fn put_until_ok(ctl: &Etcdctl, key: &str, value: &str) {
    poll(&format!("put {key}"), Duration::from_secs(30), || {
        let out = ctl.run(&["put", key, value]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| out.to_string())
    });
}

#[test]
fn etcdctl_grows_and_shrinks_a_cluster() {
    if !etcdctl_or_skip() {
        return;
    }
    let mut servers = Servers::start("REAL_ETCDCTL_SERVER");
    let endpoints = servers.endpoints();
    let ctl = Etcdctl::new(&endpoints).with_global("--command-timeout=10s");
    put_until_ok(&ctl, "k", "v");
    let original = member_list(&ctl);
    assert_eq!(original.len(), 3, "{original:?}");

    // Add a voter, start it, read from it.
    let peer4 = format!("http://127.0.0.1:{}", free_port());
    let (id4, added) = member_add(&ctl, "node4", &peer4, false);
    assert!(
        original.iter().all(|m| m.id != id4),
        "a new id: {id4:x} in {original:?}"
    );
    let rows = member_list(&ctl);
    let new = rows.iter().find(|m| m.id == id4).expect("listed at once");
    assert_eq!(new.peer_urls, peer4);
    assert!(!new.is_learner);
    let ep4 = servers.start_added(id4, "node4", &peer4, &added);
    wait_until_serves(&ep4, "k", "v");
    poll("4 started members", Duration::from_secs(30), || {
        let rows = member_list(&ctl);
        (rows.len() == 4 && rows.iter().all(|m| m.started))
            .then_some(())
            .ok_or_else(|| format!("{rows:?}"))
    });

    // Remove one of the founders (leader or not): three remain and serve puts.
    let victim = original
        .iter()
        .find(|m| m.client_urls.ends_with(&endpoints[0]))
        .expect("a founder serves endpoints[0]");
    let out = reconfigure(&ctl, &["member", "remove", &format!("{:x}", victim.id)]).ok();
    assert!(out.contains("removed from cluster"), "{out}");
    servers.assert_stops(&endpoints[0]);
    let survivors = vec![endpoints[1].clone(), endpoints[2].clone(), ep4.clone()];
    let ctl = Etcdctl::new(&survivors).with_global("--command-timeout=10s");
    let rows = member_list(&ctl);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|m| m.id != victim.id), "{rows:?}");
    put_until_ok(&ctl, "k", "after-removal");
    wait_until_serves(&ep4, "k", "after-removal");

    // A learner: listed as one, promoted only once it has caught up.
    let peer5 = format!("http://127.0.0.1:{}", free_port());
    let (id5, added) = member_add(&ctl, "node5", &peer5, true);
    let rows = member_list(&ctl);
    assert!(rows.iter().any(|m| m.id == id5 && m.is_learner), "{rows:?}");
    let id5_hex = format!("{id5:x}");
    ctl.run(&["member", "promote", &id5_hex])
        .fails_with("etcdserver: can only promote a learner member which is in sync with leader");
    let ep5 = servers.start_added(id5, "node5", &peer5, &added);
    wait_until_serves(&ep5, "k", "after-removal");
    poll("learner promoted", Duration::from_secs(30), || {
        let out = ctl.run(&["member", "promote", &id5_hex]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| out.to_string())
    });
    let rows = member_list(&ctl);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|m| !m.is_learner), "{rows:?}");
    put_until_ok(&ctl, "k", "five");
    wait_until_serves(&ep5, "k", "five");

    // etcd's refusals.
    ctl.run(&["member", "remove", "abcdef"])
        .fails_with("etcdserver: member not found");
    ctl.run(&["member", "remove", &format!("{:x}", victim.id)])
        .fails_with("etcdserver: member not found");
    ctl.run(&["member", "promote", &format!("{id4:x}")])
        .fails_with("etcdserver: can only promote a learner member");
    let taken = format!("--peer-urls={peer4}");
    reconfigure(&ctl, &["member", "add", "again", &taken])
        .fails_with("etcdserver: Peer URLs already exists");
    if servers.is_coordd() {
        // coordd's own limits: one plain-http address per member, fixed at start.
        let https = format!("--peer-urls=https://127.0.0.1:{}", free_port());
        ctl.run(&["member", "add", "tls", &https])
            .fails_with("not an http:// URL");
        ctl.run(&["member", "update", &format!("{id4:x}"), &taken])
            .fails_with("coordd does not support changing a member's peer URLs");
    }
    assert_eq!(member_list(&ctl).len(), 4);
}

/// `coordctl member` speaks the same Cluster API: the cluster picks the id, and
/// coordctl prints it with the command that starts the node.
#[test]
fn coordctl_adds_promotes_and_removes_a_member() {
    let mut cluster = TestCluster::start(3);
    let endpoints = cluster.endpoints(&[1, 2, 3]);
    let coordctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coordctl"))
            .args(["--endpoints", &endpoints.join(",")])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let addr4 = format!("127.0.0.1:{}", free_port());
    let added = poll("member add", Duration::from_secs(30), || {
        let (ok, out) = coordctl(&["member", "add", &addr4, "--learner"]);
        ok.then_some(out.clone()).ok_or(out)
    });
    assert!(
        added.starts_with(&format!("added node 4 (learner) at {addr4}\n")),
        "{added}"
    );
    assert!(
        added.contains(&format!("coordd --id 4 --listen {addr4} --peers ")),
        "{added}"
    );
    let (_, list) = coordctl(&["member", "list"]);
    assert!(list.contains(&format!("4={addr4} (learner)\n")), "{list}");

    cluster.peers.insert(4, addr4.clone());
    let dir = cluster.root.path().join("node-4");
    let node = NodeProc::start(4, &cluster.peers, dir, true);
    cluster.nodes.insert(4, node);
    poll("promote 4", Duration::from_secs(30), || {
        let (ok, out) = coordctl(&["member", "promote", "4"]);
        ok.then_some(()).ok_or(out)
    });
    let (_, list) = coordctl(&["member", "list"]);
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(!list.contains("learner"), "{list}");

    let (ok, out) = coordctl(&["member", "remove", "4"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let (ok, out) = coordctl(&["member", "remove", "4"]);
    assert!(!ok && out.contains("etcdserver: member not found"), "{out}");
}
