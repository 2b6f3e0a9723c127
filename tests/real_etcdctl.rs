//! The real `etcdctl` (Debian's etcd-client 3.4, `ETCDCTL_API=3`) against a 3-node
//! coordd cluster on 127.0.0.1, through the etcd v3 gRPC API that coordd serves on its
//! `--listen` address: KV, txn, watch (live and resumed from a revision), leases,
//! locks, member list, endpoint status and auth — with the leader SIGKILLed halfway
//! and every later step run against the survivors with all three endpoints listed,
//! as a user would.
//!
//! Every expectation is etcd's own: `REAL_ETCDCTL_SERVER=etcd cargo test --test
//! real_etcdctl` runs the same steps against a real etcd cluster (`apt-get install
//! etcd-server`), which is how they were written.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::etcdctl::{Background, Etcdctl, INSTALL_HINT};
use common::held_forwarder::HeldForwarder;
use common::servers::Servers;
use serde_json::Value;

impl Drop for Servers {
    /// A failing step is easier to read next to what the servers logged.
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
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {name} log, last {} lines", tail.len());
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        }
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after `within`.
fn poll<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    poll_explained(what, within, || check().ok_or_else(|| "-".to_string()))
}

/// [`poll`] whose failures say what the last attempt saw (`Err`).
fn poll_explained<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {what}\nlast attempt: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- endpoint status

/// One endpoint's `endpoint status -w json` entry.
#[derive(Clone, Debug)]
struct EndpointStatus {
    endpoint: String,
    member_id: u64,
    leader: u64,
    raft_term: u64,
    raft_index: u64,
}

/// Parses `endpoint status -w json`. Go's encoder omits zero fields, so absent is 0.
fn parse_endpoint_statuses(json: &str) -> Vec<EndpointStatus> {
    let entries: Vec<Value> = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("endpoint status -w json: {e}: {json}"));
    let number = |v: &Value| v.as_u64().unwrap_or(0);
    entries
        .iter()
        .map(|entry| {
            let status = &entry["Status"];
            EndpointStatus {
                endpoint: entry["Endpoint"].as_str().unwrap_or_default().to_string(),
                member_id: number(&status["header"]["member_id"]),
                leader: number(&status["leader"]),
                raft_term: number(&status["raftTerm"]),
                raft_index: number(&status["raftIndex"]),
            }
        })
        .collect()
}

/// Polls `endpoint status` on `endpoints` until every one answers and all agree on
/// a leader among them; returns the leader's own status.
fn wait_for_leader(endpoints: &[String]) -> EndpointStatus {
    let ctl = Etcdctl::new(endpoints).with_global("--command-timeout=1s");
    poll_explained(
        &format!("one leader agreed on by {endpoints:?}"),
        Duration::from_secs(20),
        || {
            let out = ctl.run(&["endpoint", "status", "-w", "json"]);
            if !out.status.success() {
                return Err(out.to_string());
            }
            let statuses = parse_endpoint_statuses(&out.stdout);
            let leader = statuses.first().map_or(0, |s| s.leader);
            let agreed = statuses.len() == endpoints.len()
                && statuses.iter().all(|s| s.leader == leader && leader != 0);
            agreed
                .then(|| statuses.into_iter().find(|s| s.member_id == leader))
                .flatten()
                .ok_or_else(|| out.to_string())
        },
    )
}

// ---------------------------------------------------------------- steps

fn member_list_names_every_endpoint(ctl: &Etcdctl, endpoints: &[String]) {
    let json: Value = serde_json::from_str(&ctl.ok(&["member", "list", "-w", "json"])).unwrap();
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{json}");
    let client_urls: BTreeSet<String> = members
        .iter()
        .flat_map(|m| m["clientURLs"].as_array().cloned().unwrap_or_default())
        .map(|url| url.as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
    assert_eq!(client_urls, expected, "member list -w json: {json}");
    let ids: BTreeSet<u64> = members.iter().map(|m| m["ID"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "distinct member IDs: {json}");

    let simple = ctl.ok(&["member", "list"]);
    assert_eq!(simple.lines().count(), 3, "{simple}");
    assert!(
        simple.lines().all(|l| l.contains(", started, ")),
        "{simple}"
    );
}

/// coordctl and etcdctl read and write one keyspace: what one writes the other reads.
fn coordctl_and_etcdctl_share_one_keyspace(ctl: &Etcdctl, endpoints: &[String]) {
    let coordctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coordctl"))
            .args(["--endpoints", &endpoints.join(",")])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "coordctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(coordctl(&["put", "greeting", "hello"]).starts_with("OK revision="));
    assert_eq!(ctl.ok(&["get", "greeting"]), "greeting\nhello\n");
    ctl.ok(&["put", "greeting", "hello again"]);
    assert_eq!(coordctl(&["get", "greeting"]), "hello again\n");
    assert_eq!(coordctl(&["del", "greeting"]), "deleted 1\n");
    assert_eq!(ctl.ok(&["get", "greeting"]), "");
}

fn put_and_get_by_prefix(ctl: &Etcdctl) {
    for (key, value) in [("app/a", "1"), ("app/b", "2"), ("apq", "3")] {
        assert_eq!(ctl.ok(&["put", key, value]), "OK\n");
    }
    assert_eq!(ctl.ok(&["get", "--prefix", "app/"]), "app/a\n1\napp/b\n2\n");
    assert_eq!(
        ctl.ok(&["get", "--prefix", "app/", "--keys-only"]),
        "app/a\n\napp/b\n\n"
    );
    assert_eq!(
        ctl.ok(&[
            "get",
            "--prefix",
            "ap",
            "--sort-by=KEY",
            "--order=DESCEND",
            "--print-value-only"
        ]),
        "3\n2\n1\n"
    );
    let limited: Value =
        serde_json::from_str(&ctl.ok(&["get", "--prefix", "app/", "--limit=1", "-w", "json"]))
            .unwrap();
    assert_eq!(limited["count"], 2, "{limited}");
    assert_eq!(limited["more"], true, "{limited}");
    assert_eq!(
        limited["kvs"].as_array().map(Vec::len),
        Some(1),
        "{limited}"
    );
    assert_eq!(
        ctl.ok(&["get", "no-such-key"]),
        "",
        "a missing key prints nothing"
    );
    assert_eq!(ctl.ok(&["get", "app/a", "--consistency=s"]), "app/a\n1\n");
    // Only a change takes a revision: deleting nothing leaves it where it was.
    let before = current_revision(ctl);
    assert_eq!(ctl.ok(&["del", "no-such-key"]), "0\n");
    assert_eq!(
        current_revision(ctl),
        before,
        "`del` of nothing took a revision"
    );
}

/// The revision in a `get -w json` header.
fn current_revision(ctl: &Etcdctl) -> i64 {
    let json: Value = serde_json::from_str(&ctl.ok(&["get", "app/a", "-w", "json"])).unwrap();
    json["header"]["revision"].as_i64().expect("revision")
}

fn txn_takes_the_branch_its_compares_select(ctl: &Etcdctl) {
    ctl.ok(&["put", "txn/flag", "on"]);
    let success = ctl
        .run_with_stdin(
            &["txn"],
            "value(\"txn/flag\") = \"on\"\nversion(\"txn/flag\") = \"1\"\n\n\
             put txn/result yes\nget txn/flag\n\n\
             put txn/result no\n\n",
        )
        .ok();
    assert_eq!(success, "SUCCESS\n\nOK\n\ntxn/flag\non\n");
    let failure = ctl
        .run_with_stdin(
            &["txn"],
            "value(\"txn/flag\") = \"off\"\n\n\
             put txn/result yes\n\n\
             put txn/result no\ndel txn/flag\n\n",
        )
        .ok();
    assert_eq!(failure, "FAILURE\n\nOK\n\n1\n");
    assert_eq!(ctl.ok(&["get", "--prefix", "txn/"]), "txn/result\nno\n");
    // A branch may not both put and delete one key.
    ctl.run_with_stdin(&["txn"], "\nput txn/x 1\ndel --prefix txn/\n\n\n")
        .fails_with("etcdserver: duplicate key given in txn request");
}

/// A watch event as etcdctl's simple format prints it (no `--prev-kv`).
#[derive(Debug, PartialEq)]
struct Event {
    kind: String,
    key: String,
    value: String,
}

fn event(kind: &str, key: &str, value: &str) -> Event {
    Event {
        kind: kind.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// Whole events in `stdout`: three complete lines each (a delete's value is empty).
fn parse_watch_events(stdout: &str) -> Vec<Event> {
    let complete = &stdout[..stdout.rfind('\n').map_or(0, |i| i + 1)];
    let lines: Vec<&str> = complete.lines().collect();
    lines
        .chunks_exact(3)
        .map(|c| event(c[0], c[1], c[2]))
        .collect()
}

/// `put -w json`'s revision.
fn put_revision(ctl: &Etcdctl, key: &str, value: &str) -> i64 {
    let json: Value = serde_json::from_str(&ctl.ok(&["put", key, value, "-w", "json"])).unwrap();
    json["header"]["revision"].as_i64().expect("revision")
}

/// Starts `watch --prefix w/` with its stream on the leader (which dies later), proves
/// it is live, then puts and deletes under it. Returns the watcher and the revision of
/// the first event the test cares about.
fn watch_prints_puts_and_deletes(
    ctl: &Etcdctl,
    leader: &str,
    followers: &[String],
) -> (Background, i64) {
    // etcdctl opens the stream on whichever endpoint is ready first: the followers'
    // endpoints are held connecting until the stream is live, then opened for failover.
    let mut held: Vec<HeldForwarder> = followers.iter().map(|f| HeldForwarder::bind(f)).collect();
    let mut endpoints = vec![leader.to_string()];
    endpoints.extend(held.iter().map(|h| h.addr.clone()));
    let mut watcher = Etcdctl::new(&endpoints).spawn(&["watch", "--prefix", "w/"]);
    poll("the watcher sees w/ready", Duration::from_secs(15), || {
        ctl.ok(&["put", "w/ready", "1"]);
        std::thread::sleep(Duration::from_millis(200));
        watcher.stdout().contains("w/ready").then_some(())
    });
    held.iter_mut().for_each(HeldForwarder::open);
    let first = put_revision(ctl, "w/1", "a");
    ctl.ok(&["put", "w/2", "b"]);
    assert_eq!(ctl.ok(&["del", "w/1"]), "1\n");
    let expected = [
        event("PUT", "w/1", "a"),
        event("PUT", "w/2", "b"),
        event("DELETE", "w/1", ""),
    ];
    watcher.wait_for_stdout(
        "put w/1, put w/2, delete w/1",
        Duration::from_secs(10),
        |out| parse_watch_events(out).ends_with(&expected),
    );
    (watcher, first)
}

fn lease_id(grant_output: &str) -> String {
    // "lease 694d7a2d4d3e4a0b granted with TTL(60s)"
    let mut words = grant_output.split_whitespace();
    assert_eq!(words.next(), Some("lease"), "{grant_output}");
    let id = words.next().expect("lease id").to_string();
    assert!(
        grant_output.contains(" granted with TTL("),
        "{grant_output}"
    );
    id
}

fn lease_revoke_deletes_attached_keys(ctl: &Etcdctl) {
    let grant = ctl.ok(&["lease", "grant", "60"]);
    let lease = lease_id(&grant);
    assert!(grant.ends_with("granted with TTL(60s)\n"), "{grant}");
    let with_lease = format!("--lease={lease}");
    ctl.ok(&["put", "lease/a", "1", &with_lease]);
    ctl.ok(&["put", "lease/b", "2", &with_lease]);

    let ttl = ctl.ok(&["lease", "timetolive", &lease, "--keys"]);
    let prefix = format!("lease {lease} granted with TTL(60s), remaining(");
    assert!(ttl.starts_with(&prefix), "{ttl}");
    let remaining: u64 = ttl[prefix.len()..]
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&remaining), "{ttl}");
    let keys = ttl
        .split("attached keys([")
        .nth(1)
        .expect("keys")
        .trim_end();
    let keys: BTreeSet<&str> = keys.trim_end_matches("])").split(' ').collect();
    assert_eq!(keys, BTreeSet::from(["lease/a", "lease/b"]), "{ttl}");

    assert!(ctl.ok(&["lease", "list"]).contains(&lease));
    assert_eq!(
        ctl.ok(&["lease", "keep-alive", "--once", &lease]),
        format!("lease {lease} keepalived with TTL(60)\n")
    );
    assert_eq!(
        ctl.ok(&["lease", "revoke", &lease]),
        format!("lease {lease} revoked\n")
    );
    assert_eq!(ctl.ok(&["get", "--prefix", "lease/"]), "");
    assert_eq!(
        ctl.ok(&["lease", "timetolive", &lease]),
        format!("lease {lease} already expired\n")
    );
    ctl.run(&["lease", "revoke", &lease])
        .fails_with("etcdserver: requested lease not found");
}

/// A lease kept alive by a running `etcdctl lease keep-alive`, and the key on it.
struct KeptLease {
    lease: String,
    ttl: Duration,
    granted_at: Instant,
    keeper: Background,
}

const KEPT_KEY: &str = "kept/key";

fn keep_alive_started(ctl: &Etcdctl) -> KeptLease {
    let granted_at = Instant::now();
    let lease = lease_id(&ctl.ok(&["lease", "grant", "4"]));
    ctl.ok(&["put", KEPT_KEY, "v", &format!("--lease={lease}")]);
    let mut keeper = ctl.spawn(&["lease", "keep-alive", &lease]);
    let line = format!("lease {lease} keepalived with TTL(4)");
    keeper.wait_for_stdout(&line, Duration::from_secs(10), |out| out.contains(&line));
    KeptLease {
        lease,
        ttl: Duration::from_secs(4),
        granted_at,
        keeper,
    }
}

fn key_exists(ctl: &Etcdctl, key: &str) -> bool {
    !ctl.ok(&["get", key, "--keys-only"]).is_empty()
}

/// Writes fail while the survivors elect; they must succeed again within the bound.
fn writes_resume_after_failover(ctl: &Etcdctl) {
    let ctl = ctl.with_global("--command-timeout=2s");
    poll_explained(
        "a put succeeds after the leader died",
        Duration::from_secs(20),
        || {
            let out = ctl.run(&["put", "after-failover", "yes"]);
            out.status.success().then_some(()).ok_or(out.to_string())
        },
    );
    assert_eq!(ctl.ok(&["get", "after-failover"]), "after-failover\nyes\n");
    // Everything written before the kill is still there.
    assert_eq!(ctl.ok(&["get", "--prefix", "app/"]), "app/a\n1\napp/b\n2\n");
}

fn watch_survives_failover_and_replays_history(
    ctl: &Etcdctl,
    watcher: &mut Background,
    first: i64,
) {
    ctl.ok(&["put", "w/3", "c"]);
    watcher.wait_for_stdout(
        "w/3 after the leader died",
        Duration::from_secs(15),
        |out| parse_watch_events(out).last() == Some(&event("PUT", "w/3", "c")),
    );
    watcher.kill();
    let history = [
        event("PUT", "w/1", "a"),
        event("PUT", "w/2", "b"),
        event("DELETE", "w/1", ""),
        event("PUT", "w/3", "c"),
    ];
    // The stream moved from the dead leader to a survivor: nothing lost, nothing twice.
    let mut live = parse_watch_events(&watcher.stdout());
    live.retain(|e| e.key != "w/ready");
    assert_eq!(live, history, "the live watch across the failover");

    let mut replay = ctl.spawn(&["watch", "--prefix", "w/", &format!("--rev={first}")]);
    replay.wait_for_stdout("the replay reaches w/3", Duration::from_secs(10), |out| {
        parse_watch_events(out).len() >= history.len()
    });
    replay.kill();
    assert_eq!(parse_watch_events(&replay.stdout()), history);
}

fn leases_expire_without_keep_alive(ctl: &Etcdctl, mut kept: KeptLease) {
    let lease = lease_id(&ctl.ok(&["lease", "grant", "3"]));
    ctl.ok(&["put", "expiring/key", "v", &format!("--lease={lease}")]);
    assert!(key_exists(ctl, "expiring/key"));
    let put_at = Instant::now();
    poll(
        "the unkept lease's key vanishes",
        Duration::from_secs(15),
        || (!key_exists(ctl, "expiring/key")).then_some(()),
    );
    // Lease TTLs are whole seconds from the grant; no earlier than about 2 s.
    assert!(put_at.elapsed() >= Duration::from_secs(2), "expired early");
    assert_eq!(
        ctl.ok(&["lease", "timetolive", &lease]),
        format!("lease {lease} already expired\n")
    );

    // The kept lease has outlived its TTL twice over, across the failover.
    while kept.granted_at.elapsed() < kept.ttl * 2 {
        assert!(key_exists(ctl, KEPT_KEY), "kept lease expired");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(key_exists(ctl, KEPT_KEY), "kept lease expired");
    kept.keeper.kill();
    poll(
        "the key vanishes once keep-alives stop",
        Duration::from_secs(20),
        || (!key_exists(ctl, KEPT_KEY)).then_some(()),
    );
    assert_eq!(
        ctl.ok(&["lease", "timetolive", &kept.lease]),
        format!("lease {} already expired\n", kept.lease)
    );
}

/// Two `etcdctl lock` runs on one name: the second queues (its waiter key appears)
/// and runs its command only after the first's command ended and released.
fn lock_admits_one_holder_at_a_time(ctl: &Etcdctl, dir: &Path) {
    let order = dir.join("order");
    let release = dir.join("release");
    let (order, release) = (order.display(), release.display());
    let mut first = ctl.spawn(&[
        "lock",
        "locks/job",
        "--",
        "sh",
        "-c",
        &format!(
            "echo \"first $ETCD_LOCK_REV\" >> {order}; \
             while [ ! -e {release} ]; do sleep 0.05; done; echo first-done >> {order}"
        ),
    ]);
    let read_order = || std::fs::read_to_string(dir.join("order")).unwrap_or_default();
    poll(
        "the first lock holder runs",
        Duration::from_secs(10),
        || read_order().starts_with("first ").then_some(()),
    );
    let mut second = ctl.spawn(&[
        "lock",
        "locks/job",
        "--",
        "sh",
        "-c",
        &format!("echo \"second $ETCD_LOCK_REV\" >> {order}"),
    ]);
    poll(
        "the second locker queues its key",
        Duration::from_secs(10),
        || {
            let keys = ctl.ok(&["get", "--prefix", "locks/job/", "--keys-only"]);
            (keys.lines().filter(|l| !l.is_empty()).count() == 2).then_some(())
        },
    );
    assert_eq!(
        read_order().lines().count(),
        1,
        "second ran while first held: {}",
        read_order()
    );

    std::fs::write(dir.join("release"), "").unwrap();
    assert!(first.wait_exit(Duration::from_secs(15)).success());
    assert!(second.wait_exit(Duration::from_secs(15)).success());
    let lines: Vec<String> = read_order().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1], "first-done", "{lines:?}");
    let revision = |line: &str, who: &str| -> i64 {
        line.strip_prefix(who)
            .unwrap_or_else(|| panic!("{lines:?}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        revision(&lines[2], "second") > revision(&lines[0], "first"),
        "{lines:?}"
    );
    assert_eq!(
        ctl.ok(&["get", "--prefix", "locks/job/"]),
        "",
        "both released"
    );
}

fn endpoint_status_reports_the_new_leader(
    ctl: &Etcdctl,
    dead: &EndpointStatus,
    leader: &EndpointStatus,
) {
    let quick = ctl.with_global("--command-timeout=2s");
    let out = quick.run(&["endpoint", "status", "-w", "json"]);
    assert!(!out.status.success(), "the dead endpoint must fail: {out}");
    assert!(
        out.stderr.contains(&format!(
            "Failed to get the status of endpoint {}",
            dead.endpoint
        )),
        "{out}"
    );
    let statuses = parse_endpoint_statuses(&out.stdout);
    assert_eq!(statuses.len(), 2, "{out}");
    for status in &statuses {
        assert_eq!(status.leader, leader.member_id, "{out}");
        assert!(status.raft_term > dead.raft_term, "term moved on: {out}");
        assert!(status.raft_index > dead.raft_index, "index moved on: {out}");
    }

    // Simple format: endpoint, id, version, db size, is leader, is learner, term, index, ...
    let survivors: Vec<String> = statuses.iter().map(|s| s.endpoint.clone()).collect();
    let simple = Etcdctl::new(&survivors).ok(&["endpoint", "status"]);
    let leaders: Vec<&str> = simple
        .lines()
        .filter(|l| l.split(", ").nth(4) == Some("true"))
        .collect();
    assert_eq!(leaders.len(), 1, "{simple}");
    assert!(leaders[0].starts_with(&leader.endpoint), "{simple}");

    let health = quick.run(&["endpoint", "health"]);
    assert!(!health.status.success(), "{health}");
    let healthy = health.stdout.lines().chain(health.stderr.lines());
    let healthy: Vec<&str> = healthy.filter(|l| l.contains(" is healthy: ")).collect();
    assert_eq!(healthy.len(), 2, "{health}");
}

/// `move-leader` asks every endpoint for its status (so it gets the survivors only)
/// and sends MoveLeader to the leader; the other survivor takes over.
fn move_leader_hands_over_to_the_other_survivor(survivors: &[String], leader: &EndpointStatus) {
    let ctl = Etcdctl::new(survivors);
    let statuses = parse_endpoint_statuses(&ctl.ok(&["endpoint", "status", "-w", "json"]));
    let target = statuses
        .iter()
        .find(|s| s.member_id != leader.member_id)
        .expect("a follower among the survivors")
        .clone();
    assert_eq!(
        ctl.ok(&["move-leader", &format!("{:x}", target.member_id)]),
        format!(
            "Leadership transferred from {:x} to {:x}\n",
            leader.member_id, target.member_id
        )
    );
    let now = wait_for_leader(survivors);
    assert_eq!(now.member_id, target.member_id, "{now:?}");
    ctl.run(&["move-leader", "99"])
        .fails_with("etcdserver: bad leader transferee");
}

fn auth_checks_passwords_and_permissions(ctl: &Etcdctl) {
    assert_eq!(
        ctl.ok(&["user", "add", "root:rootpw"]),
        "User root created\n"
    );
    assert_eq!(
        ctl.ok(&["user", "add", "alice", "--new-user-password=alicepw"]),
        "User alice created\n"
    );
    assert_eq!(ctl.ok(&["role", "add", "reader"]), "Role reader created\n");
    assert_eq!(
        ctl.ok(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "app/",
            "--prefix"
        ]),
        "Role reader updated\n"
    );
    assert_eq!(
        ctl.ok(&["user", "grant-role", "alice", "reader"]),
        "Role reader is granted to user alice\n"
    );
    // etcdctl adds the root role itself when the server says it is missing.
    assert_eq!(ctl.ok(&["auth", "enable"]), "Authentication Enabled\n");

    ctl.run(&["get", "app/a"])
        .fails_with("etcdserver: user name is empty");
    ctl.as_user("root:wrong")
        .run(&["get", "app/a"])
        .fails_with("etcdserver: authentication failed, invalid user ID or password");
    let root = ctl.as_user("root:rootpw");
    assert_eq!(root.ok(&["put", "app/c", "3"]), "OK\n");
    assert_eq!(root.ok(&["get", "app/c"]), "app/c\n3\n");
    assert!(root.ok(&["user", "get", "root"]).contains("Roles: root"));

    let alice = ctl.as_user("alice:alicepw");
    assert_eq!(
        alice.ok(&["get", "--prefix", "app/"]),
        "app/a\n1\napp/b\n2\napp/c\n3\n"
    );
    alice
        .run(&["put", "app/d", "4"])
        .fails_with("etcdserver: permission denied");

    assert_eq!(root.ok(&["auth", "disable"]), "Authentication Disabled\n");
    assert_eq!(ctl.ok(&["get", "app/c"]), "app/c\n3\n");
}

// ---------------------------------------------------------------- the story

#[test]
fn etcdctl_drives_a_three_node_cluster_through_a_leader_kill() {
    if !common::etcdctl::etcdctl_or_skip() {
        return;
    }
    let version = Etcdctl::new(&[]).version();
    assert!(
        version.starts_with("etcdctl version: 3."),
        "unexpected `etcdctl version`: {version:?}; {INSTALL_HINT}"
    );
    let mut servers = Servers::start("REAL_ETCDCTL_SERVER");
    let endpoints = servers.endpoints();
    let ctl = Etcdctl::new(&endpoints);
    let old_leader = wait_for_leader(&endpoints);

    member_list_names_every_endpoint(&ctl, &endpoints);
    coordctl_and_etcdctl_share_one_keyspace(&ctl, &endpoints);
    put_and_get_by_prefix(&ctl);
    txn_takes_the_branch_its_compares_select(&ctl);
    let followers: Vec<String> = endpoints
        .iter()
        .filter(|e| **e != old_leader.endpoint)
        .cloned()
        .collect();
    let (mut watcher, first_watched) =
        watch_prints_puts_and_deletes(&ctl, &old_leader.endpoint, &followers);
    lease_revoke_deletes_attached_keys(&ctl);
    let kept = keep_alive_started(&ctl);
    // The last status before the kill, so term and index comparisons are exact.
    let old_leader = Etcdctl::new(std::slice::from_ref(&old_leader.endpoint))
        .run(&["endpoint", "status", "-w", "json"])
        .ok();
    let old_leader = parse_endpoint_statuses(&old_leader).remove(0);
    assert_eq!(old_leader.leader, old_leader.member_id, "leadership moved");

    servers.kill(&old_leader.endpoint);
    let survivors = followers;
    let new_leader = wait_for_leader(&survivors);
    assert_ne!(new_leader.member_id, old_leader.member_id);

    writes_resume_after_failover(&ctl);
    watch_survives_failover_and_replays_history(&ctl, &mut watcher, first_watched);
    leases_expire_without_keep_alive(&ctl, kept);
    let scratch = tempfile::tempdir().unwrap();
    lock_admits_one_holder_at_a_time(&ctl, scratch.path());
    member_list_names_every_endpoint(&ctl, &endpoints);
    endpoint_status_reports_the_new_leader(&ctl, &old_leader, &new_leader);
    move_leader_hands_over_to_the_other_survivor(&survivors, &new_leader);
    auth_checks_passwords_and_permissions(&ctl);
}
