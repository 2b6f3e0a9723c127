//! Real mode, Link Bridge's registry (seed 003): the bridge's commands written to a
//! 3-member cluster over the etcd API, and a broker's `RegistryView` following them
//! — across a SIGKILL of the member its watch is on, and with an agent's lease left
//! to expire, which only the leader does.
//!
//! The bridge speaks only the etcd v3 API: `BRIDGE_SERVER=etcd cargo test --test
//! real_bridge` runs the same tests against a real 3-member etcd 3.4.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::servers::Servers;
use coordlab::bridge::record::{AgentRecord, InstanceRecord, InstanceStatus};
use coordlab::bridge::view::read;
use coordlab::bridge::{ClusterState, Command, RegistryView, Status};
use coordlab::client::{Connection, ConnectionConfig};
use coordlab::library::KeptLease;
use coordlab::proto::etcdserverpb::lease_client::LeaseClient;
use coordlab::proto::etcdserverpb::LeaseGrantRequest;

fn connect(servers: &Servers) -> Arc<Connection> {
    let config = ConnectionConfig::new(servers.endpoints())
        .until(Duration::from_secs(2), Duration::from_secs(30));
    Arc::new(Connection::new(config).expect("endpoints"))
}

/// Sends `command`; returns whether its compares held.
async fn send(conn: &Connection, command: Command) -> bool {
    let txn = command.to_txn().expect("valid command");
    conn.txn(txn).await.expect("txn").succeeded
}

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        brokers: vec!["broker-1".into()],
    }
}

/// Agent a1 connects through broker-1 on `lease`.
fn agent_up(lease: i64) -> Command {
    Command::AgentUp {
        agent: agent("a1"),
        broker: "broker-1".into(),
        lease,
    }
}

fn instance(id: &str, agent: &str) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        service: "echo".into(),
        address: format!("127.0.0.1:{}", 50000 + id.len()),
        agent: agent.into(),
        metadata: BTreeMap::from([("zone".into(), "a".into())]),
        status: InstanceStatus::Serving,
    }
}

/// Waits until the view's registry satisfies `ok`; panics naming `what` after 20 s.
async fn wait_for(view: &RegistryView, what: &str, ok: impl Fn(&ClusterState) -> bool) -> Duration {
    let started = Instant::now();
    let mut changes = view.subscribe();
    loop {
        if ok(&view.current()) {
            return started.elapsed();
        }
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "{what}: not seen within 20 s; view: {:?}",
            view.current()
        );
        let _ = tokio::time::timeout(left, changes.changed()).await;
    }
}

/// The view has the registry a fresh linearizable read returns.
async fn assert_matches_a_fresh_read(conn: &Connection, view: &RegistryView) {
    let fresh = read(conn).await.expect("read");
    let mut kept = (*view.current()).clone();
    kept.advance_to(fresh.revision());
    assert_eq!(kept, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brokers_view_follows_every_command_across_a_member_kill() {
    let mut servers = Servers::start("BRIDGE_SERVER");
    let conn = connect(&servers);
    let view = RegistryView::start(conn.clone()).await.expect("view");
    let lease = KeptLease::grant(conn.clone(), Duration::from_secs(5))
        .await
        .expect("lease");

    assert!(
        !send(
            &conn,
            Command::Register {
                instance: instance("i1", "a1")
            }
        )
        .await,
        "no agent yet"
    );
    assert!(send(&conn, agent_up(lease.id())).await);
    for id in ["i1", "i2", "i3"] {
        assert!(
            send(
                &conn,
                Command::Register {
                    instance: instance(id, "a1")
                }
            )
            .await
        );
    }
    wait_for(&view, "three serving instances", |s| {
        s.serving("echo").len() == 3
    })
    .await;
    assert_matches_a_fresh_read(&conn, &view).await;

    // The member the view's watch is on dies; the view resumes on another.
    let on = conn.endpoint();
    servers.kill(&on);

    let seen = read(&conn).await.expect("read").instances("echo").remove(0);
    let notice = Command::ShutdownNotice {
        seen: seen.record.clone(),
        mod_revision: seen.mod_revision,
        grace_ms: 2000,
    };
    assert!(send(&conn, notice.clone()).await);
    assert!(
        !send(&conn, notice).await,
        "a notice based on a stale record is refused"
    );
    assert!(
        send(
            &conn,
            Command::Deregister {
                service: "echo".into(),
                id: "i3".into()
            }
        )
        .await
    );
    let status_change = Command::AgentStatus {
        agent: AgentRecord {
            id: "a1".into(),
            brokers: vec!["broker-1".into(), "broker-2".into()],
        },
    };
    assert!(send(&conn, status_change).await);

    wait_for(&view, "i1 draining, i3 gone, a1 on two brokers", |s| {
        let instances = s.instances("echo");
        instances.len() == 2
            && instances[0].status == Status::Draining { grace_ms: 2000 }
            && s.alternatives("echo", "i1").len() == 1
            && s.agents().any(|(a, up)| up && a.brokers.len() == 2)
    })
    .await;
    assert_matches_a_fresh_read(&conn, &view).await;

    let leave = Command::AgentLeave {
        agent: "a1".into(),
        instances: vec![("echo".into(), "i1".into()), ("echo".into(), "i2".into())],
    };
    assert!(send(&conn, leave).await);
    wait_for(&view, "an empty registry", |s| {
        s.services().is_empty() && s.agents().count() == 0
    })
    .await;
    assert_matches_a_fresh_read(&conn, &view).await;
    drop(lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_nobody_hears_is_down_once_its_lease_expires() {
    let servers = Servers::start("BRIDGE_SERVER");
    let conn = connect(&servers);
    let view = RegistryView::start(conn.clone()).await.expect("view");
    // A lease nobody keeps alive: the agent's heartbeats stopped.
    let granted = conn
        .call(|ch, c| {
            let req = c.request(LeaseGrantRequest { ttl: 2, id: 0 });
            async move { LeaseClient::new(ch).lease_grant(req).await }
        })
        .await
        .expect("lease")
        .into_inner();
    let started = Instant::now();
    assert!(send(&conn, agent_up(granted.id)).await);
    assert!(
        send(
            &conn,
            Command::Register {
                instance: instance("i1", "a1")
            }
        )
        .await
    );
    wait_for(&view, "i1 serving", |s| s.serving("echo").len() == 1).await;

    wait_for(&view, "i1 down", |s| {
        s.instances("echo").first().map(|i| i.status) == Some(Status::Down)
    })
    .await;
    let down_after = started.elapsed();
    assert!(
        down_after >= Duration::from_millis(1900),
        "down before its 2 s lease could expire: {down_after:?}"
    );
    assert!(!view.current().agent_up("a1"));
    assert_eq!(
        view.current().agents().count(),
        1,
        "a down agent stays listed"
    );
    assert_matches_a_fresh_read(&conn, &view).await;
    eprintln!("agent down {down_after:?} after its 2 s lease was granted");
}
