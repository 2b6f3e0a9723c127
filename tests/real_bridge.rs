//! Real mode, Link Bridge's registry (seed 003): the bridge's commands written to a
//! 3-member cluster over the etcd API, and a broker's `RegistryView` following them
//! — across a SIGKILL of the member its watch is on, and with an agent's lease left
//! to expire, which only the leader does; then brokers served on 127.0.0.1, an
//! agent on one and a subscribed client on another.
//!
//! The bridge speaks only the etcd v3 API: `BRIDGE_SERVER=etcd cargo test --test
//! real_bridge` runs the same tests against a real 3-member etcd 3.4.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::servers::Servers;
use coordlab::bridge::record::{AgentRecord, InstanceRecord, InstanceStatus};
use coordlab::bridge::view::read;
use coordlab::bridge::{
    Agent, AgentConfig, AgentState, Broker, BrokerOptions, ClientConfig, ClientView, ClusterState,
    Command, DiscoveryClient, FailoverConfig, RegistryView, Status,
};
use coordlab::client::{Connection, ConnectionConfig};
use coordlab::library::KeptLease;
use coordlab::proto::etcdserverpb::lease_client::LeaseClient;
use coordlab::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use coordlab::proto::etcdserverpb::{LeaseGrantRequest, StatusRequest, StatusResponse};
use coordlab::proto::linkbridge::{
    self as pb, agent_message::Body, bridge_client::BridgeClient, bridge_server::BridgeServer,
    broker_message, Ack, AgentMessage, AlternativesRequest, BridgeStatusRequest, DiscoverRequest,
    Hello, Pong, ProxyRequest, RegisterInstance, RegistryUpdate, ShutdownNotice, SubscribeRequest,
    Welcome,
};
use tokio::sync::mpsc;

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
        replaced: Vec::new(),
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
                instance: instance("i1", "a1"),
                replaces: None,
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
                    instance: instance(id, "a1"),
                    replaces: None,
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
                instance: instance("i1", "a1"),
                replaces: None,
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

/// A broker of `servers`' cluster, served on 127.0.0.1; its address.
async fn serve_broker(servers: &Servers, id: &str) -> String {
    let options = BrokerOptions {
        id: id.into(),
        agent_ttl: Duration::from_secs(2),
        ping_interval: Duration::from_millis(300),
        max_clients: 1,
    };
    let broker = Broker::start(options, connect(servers))
        .await
        .expect("broker");
    let addr = format!("127.0.0.1:{}", common::free_port());
    let socket = addr.parse().expect("address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BridgeServer::new(broker))
            .serve(socket),
    );
    addr
}

async fn bridge_client(addr: &str) -> BridgeClient<tonic::transport::Channel> {
    let started = Instant::now();
    loop {
        match BridgeClient::connect(format!("http://{addr}")).await {
            Ok(client) => return client,
            // A broker in coordd listens once its cluster has a leader.
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("broker {addr} does not listen: {e}"),
        }
    }
}

/// An agent driven by the test: its messages, and the broker's answers.
struct TestAgent {
    send: mpsc::UnboundedSender<AgentMessage>,
    acks: mpsc::UnboundedReceiver<Ack>,
    seq: u64,
    welcome: Welcome,
}

impl TestAgent {
    /// Connects and answers every ping with a pong while `pongs` holds.
    async fn connect(addr: &str, id: &str, pongs: Arc<AtomicBool>) -> TestAgent {
        Self::reconnect(addr, id, pongs, 0).await
    }

    /// Connects with the lease of an earlier connection (0: a new one).
    async fn reconnect(addr: &str, id: &str, pongs: Arc<AtomicBool>, lease_id: i64) -> TestAgent {
        let (send, rx) = mpsc::unbounded_channel::<AgentMessage>();
        let outbound = futures::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        });
        let mut client = bridge_client(addr).await;
        let hello = AgentMessage {
            seq: 1,
            body: Some(Body::Hello(Hello {
                agent_id: id.into(),
                brokers: vec![],
                lease_id,
            })),
        };
        send.send(hello).unwrap();
        let mut inbound = client
            .connect_agent(outbound)
            .await
            .expect("connect")
            .into_inner();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (welcome_tx, welcome_rx) = tokio::sync::oneshot::channel();
        let pong_to = send.clone();
        tokio::spawn(async move {
            let mut welcome_tx = Some(welcome_tx);
            while let Ok(Some(m)) = inbound.message().await {
                match m.body {
                    Some(broker_message::Body::Welcome(w)) => {
                        let _ = welcome_tx.take().map(|tx| tx.send(w));
                    }
                    Some(broker_message::Body::Ping(p)) if pongs.load(Ordering::SeqCst) => {
                        let pong = Body::Pong(Pong { ping: p.seq });
                        let _ = pong_to.send(AgentMessage {
                            seq: 0,
                            body: Some(pong),
                        });
                    }
                    Some(broker_message::Body::Ack(a)) => {
                        let _ = ack_tx.send(a);
                    }
                    _ => {}
                }
            }
        });
        let welcome = welcome_rx.await.expect("welcome");
        TestAgent {
            send,
            acks,
            seq: 1,
            welcome,
        }
    }

    /// Sends `body` and waits for its ack.
    async fn call(&mut self, body: Body) -> Ack {
        self.seq += 1;
        self.send
            .send(AgentMessage {
                seq: self.seq,
                body: Some(body),
            })
            .unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(20), self.acks.recv())
            .await
            .expect("ack within 20 s")
            .expect("stream open");
        assert_eq!(ack.seq, self.seq);
        ack
    }

    async fn register(&mut self, id: &str) -> Ack {
        self.call(Body::Register(RegisterInstance {
            service: "echo".into(),
            instance_id: id.into(),
            address: format!("127.0.0.1:{}", 50000 + id.len()),
            metadata: BTreeMap::new(),
        }))
        .await
    }
}

/// Client c1 subscribed to `echo` at the broker on `addr`.
async fn subscribe_echo(
    addr: &str,
) -> (
    BridgeClient<tonic::transport::Channel>,
    tonic::Streaming<RegistryUpdate>,
) {
    let mut client = bridge_client(addr).await;
    let subscribe = SubscribeRequest {
        services: vec!["echo".into()],
        client_id: "c1".into(),
    };
    let updates = client
        .subscribe(subscribe)
        .await
        .expect("subscribe")
        .into_inner();
    (client, updates)
}

/// Reads updates until one shows exactly `want` (instance id, status), in 20 s.
async fn until(updates: &mut tonic::Streaming<RegistryUpdate>, want: &[(&str, i32)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let update = tokio::time::timeout(left, updates.message())
            .await
            .unwrap_or_else(|_| panic!("no update showing {want:?} within 20 s"))
            .expect("stream")
            .expect("open");
        let got: Vec<(&str, i32)> = update
            .instances
            .iter()
            .map(|i| (i.instance_id.as_str(), i.status))
            .collect();
        if got == want {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_instances_and_notices_reach_a_client_on_another_broker() {
    let servers = Servers::start("BRIDGE_SERVER");
    let b1 = serve_broker(&servers, "broker-1").await;
    let b2 = serve_broker(&servers, "broker-2").await;

    let pongs = Arc::new(AtomicBool::new(true));
    let mut agent = TestAgent::connect(&b1, "a1", pongs.clone()).await;
    assert_eq!(agent.welcome.broker_id, "broker-1");
    assert!(agent.register("i1").await.ok);
    assert!(agent.register("i2").await.ok);

    let mut client = bridge_client(&b2).await;
    let subscribe = SubscribeRequest {
        services: vec!["echo".into()],
        client_id: "c1".into(),
    };
    let mut updates = client
        .subscribe(subscribe.clone())
        .await
        .expect("subscribe")
        .into_inner();
    let serving = pb::InstanceStatus::Serving as i32;
    let draining = pb::InstanceStatus::Draining as i32;
    let down = pb::InstanceStatus::Down as i32;
    until(&mut updates, &[("i1", serving), ("i2", serving)]).await;

    // A second client is refused: broker-2 takes one.
    let refused = bridge_client(&b2)
        .await
        .subscribe(subscribe)
        .await
        .map(|_| ());
    assert_eq!(refused.unwrap_err().code(), tonic::Code::ResourceExhausted);
    let status = client
        .status(BridgeStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        (
            status.broker_id.as_str(),
            status.local_connected_clients,
            status.registered_instances,
            status.connected_agents
        ),
        ("broker-2", 1, 2, 1)
    );
    assert_ne!(status.leader_id, 0);

    // The shutdown notice reaches the client on the other broker.
    let noticed = Instant::now();
    let ack = agent
        .call(Body::Shutdown(ShutdownNotice {
            service: "echo".into(),
            instance_id: "i1".into(),
            grace_ms: 5000,
        }))
        .await;
    assert!(ack.ok, "{}", ack.error);
    until(&mut updates, &[("i1", draining), ("i2", serving)]).await;
    let notice_reached = noticed.elapsed();
    let alternatives = client
        .alternatives(AlternativesRequest {
            service: "echo".into(),
            leaving_instance_id: "i1".into(),
        })
        .await
        .expect("alternatives")
        .into_inner();
    assert_eq!(
        alternatives
            .instances
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect::<Vec<_>>(),
        vec!["i2"]
    );

    // A notice for an instance the agent does not front is refused by name.
    let ack = agent
        .call(Body::Shutdown(ShutdownNotice {
            service: "echo".into(),
            instance_id: "i9".into(),
            grace_ms: 1,
        }))
        .await;
    assert!(!ack.ok && ack.error.contains("echo/i9"), "{ack:?}");

    // The agent falls silent: nobody renews its lease, and after its 2 s TTL
    // every instance of it is down.
    pongs.store(false, Ordering::SeqCst);
    let silent = Instant::now();
    until(&mut updates, &[("i1", down), ("i2", down)]).await;
    let down_after = silent.elapsed();
    assert!(
        down_after >= Duration::from_millis(1500),
        "down {down_after:?} after it fell silent, before its TTL"
    );
    eprintln!("notice reached the other broker's client in {notice_reached:?}; silent agent down after {down_after:?}");
}

/// The seed's YAML for broker `n` of three: its broker on `brokers[n-1]`, Raft
/// members on `peers`, agents down after 2 s of silence.
fn bridge_yaml(n: u64, brokers: &[String], peers: &BTreeMap<u64, String>) -> String {
    let members: String = peers
        .iter()
        .map(|(id, addr)| format!("      - id: \"broker-{id}\"\n        address: \"{addr}\"\n"))
        .collect();
    format!(
        "broker:\n  node:\n    id: \"broker-{n}\"\n    address: \"{}\"\n    dataDir: \"/unused\"\n  cluster:\n    raft:\n      port: 7000\n      electionTimeout: \"500ms\"\n      heartbeatInterval: \"100ms\"\n      snapshotInterval: \"1h\"\n      snapshotRetention: 3\n    members:\n{members}  local:\n    maxClients: 10\n    clientTimeout: \"2s\"\n  shutdown:\n    gracePeriod: \"5s\"\n    notifyClients: true\n",
        brokers[n as usize - 1]
    )
}

/// Three coordd, each running broker-N on its own port; the brokers' addresses.
fn start_bridged_cluster() -> (
    tempfile::TempDir,
    BTreeMap<u64, common::NodeProc>,
    Vec<String>,
) {
    let root = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", common::free_port())))
        .collect();
    let brokers: Vec<String> = (1..=3)
        .map(|_| format!("127.0.0.1:{}", common::free_port()))
        .collect();
    let mut nodes: BTreeMap<u64, common::NodeProc> = BTreeMap::new();
    for id in 1..=3u64 {
        let config = root.path().join(format!("bridge-{id}.yaml"));
        std::fs::write(&config, bridge_yaml(id, &brokers, &peers)).unwrap();
        let dir = root.path().join(format!("node-{id}"));
        let config = config.to_str().unwrap().to_string();
        nodes.insert(
            id,
            common::NodeProc::start_args(id, &peers, dir, false, &["--bridge-config", &config]),
        );
    }

    (root, nodes, brokers)
}

/// Agent a1 on `brokers`, in that order; it waits for brokers still starting.
fn start_agent(brokers: Vec<String>) -> Agent {
    Agent::start(AgentConfig {
        id: "a1".into(),
        brokers,
        retry_interval: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(20),
    })
    .expect("agent")
}

/// The node whose broker the agent is connected to (broker-N runs in node N).
fn node_of(state: &AgentState) -> u64 {
    state
        .broker
        .as_deref()
        .and_then(|b| b.strip_prefix("broker-"))
        .and_then(|n| n.parse().ok())
        .expect("connected to a broker-N")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_fails_over_to_another_broker_and_stays_up_when_its_broker_dies() {
    let (_root, mut nodes, brokers) = start_bridged_cluster();
    let agent = start_agent(brokers.clone());
    agent
        .register("echo", "i1", "127.0.0.1:50001", BTreeMap::new())
        .await
        .expect("register i1");
    agent
        .register("echo", "i2", "127.0.0.1:50002", BTreeMap::new())
        .await
        .expect("register i2");
    let first = agent.state().borrow().clone();
    // The agent is on broker-N, which runs in node N; the client on another one.
    let agents_node = node_of(&first);
    let clients_node = agents_node % 3 + 1;
    let (_client, mut updates) = subscribe_echo(&brokers[clients_node as usize - 1]).await;
    let serving = pb::InstanceStatus::Serving as i32;
    let draining = pb::InstanceStatus::Draining as i32;
    let down = pb::InstanceStatus::Down as i32;
    until(&mut updates, &[("i1", serving), ("i2", serving)]).await;

    // The agent's broker's node dies; the agent moves to the next broker with its
    // lease.
    nodes.get_mut(&agents_node).unwrap().kill();
    let mut state = agent.state();
    let moved = tokio::time::timeout(
        Duration::from_secs(20),
        state.wait_for(|s| s.broker.is_some() && s.broker != first.broker),
    )
    .await
    .expect("the agent reconnects within 20 s")
    .expect("agent running")
    .clone();
    assert_eq!(
        moved.lease, first.lease,
        "the live lease is taken over, not replaced"
    );
    assert_eq!(moved.connections, 2);

    // For twice the TTL the client sees nothing go down.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        let left = Duration::from_secs(4).saturating_sub(watched.elapsed());
        if let Ok(update) = tokio::time::timeout(left, updates.message()).await {
            let update = update.expect("stream").expect("open");
            assert!(
                update.instances.iter().all(|i| i.status == serving),
                "an agent heard by another broker was marked down: {update:?}"
            );
        }
    }
    let broker_now = brokers[node_of(&moved) as usize - 1].clone();
    let status = bridge_client(&broker_now)
        .await
        .status(BridgeStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        (
            status.local_connected_agents,
            status.connected_agents,
            status.registered_instances
        ),
        (1, 1, 2)
    );

    // Through its new broker, the agent's notice reaches the client.
    agent
        .shutdown_notice("echo", "i1", Duration::from_secs(5))
        .await
        .expect("notice");
    until(&mut updates, &[("i1", draining), ("i2", serving)]).await;

    // The agent process dies: nobody hears it, and its instances go down.
    drop(agent);
    until(&mut updates, &[("i1", down), ("i2", down)]).await;
}

#[test]
fn coordd_refuses_a_bad_bridge_file_naming_the_field() {
    let root = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", 7000 + id)))
        .collect();
    let brokers: Vec<String> = (1..=3)
        .map(|id| format!("127.0.0.1:{}", 5000 + id))
        .collect();
    let good = bridge_yaml(1, &brokers, &peers);
    let cases = [
        (good.replace("\"100ms\"", "\"1s\""), "heartbeatInterval"),
        (
            good.replace("maxClients: 10", "maxClients: many"),
            "maxClients",
        ),
        (
            good.replace(
                "id: \"broker-1\"\n    address",
                "id: \"broker-2\"\n    address",
            ),
            "broker.node.id",
        ),
    ];
    for (text, field) in cases {
        let path = root.path().join("bridge.yaml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coordd"))
            .args([
                "--id",
                "1",
                "--listen",
                "127.0.0.1:7001",
                "--peers",
                "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
            ])
            .arg("--data-dir")
            .arg(root.path().join("data"))
            .arg("--bridge-config")
            .arg(&path)
            .output()
            .expect("run coordd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(
            stderr.contains(field) && stderr.contains("bridge.yaml"),
            "{field}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_agent_binary_drains_its_instances_before_it_stops() {
    let (_root, _nodes, brokers) = start_bridged_cluster();
    let mut args = vec![
        "--id".to_string(),
        "a2".into(),
        "--instance".into(),
        "echo/i1=127.0.0.1:50001".into(),
        "--grace".into(),
        "1500ms".into(),
        "--retry-interval".into(),
        "100ms".into(),
    ];
    for b in &brokers {
        args.extend(["--broker".to_string(), b.clone()]);
    }
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_bridge-agent"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start bridge-agent");
    let (_client, mut updates) = subscribe_echo(&brokers[0]).await;
    until(&mut updates, &[("i1", pb::InstanceStatus::Serving as i32)]).await;

    let term = std::process::Command::new("kill")
        .args(["-TERM", &process.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let stopping = Instant::now();
    until(&mut updates, &[("i1", pb::InstanceStatus::Draining as i32)]).await;
    let noticed = stopping.elapsed();
    until(&mut updates, &[]).await;
    let gone = stopping.elapsed();
    let status = process.wait().expect("bridge-agent exits");
    assert!(status.success(), "bridge-agent: {status}");
    assert!(
        gone >= Duration::from_millis(1500),
        "removed {gone:?} after SIGTERM, before its 1.5 s grace"
    );
    eprintln!("bridge-agent: draining seen {noticed:?} after SIGTERM, removed after {gone:?} (grace 1.5 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_broker_dies_fails_over_and_resynchronises() {
    let (_root, mut nodes, brokers) = start_bridged_cluster();
    // The agent stays off node 1, whose broker the client starts on.
    let agent = start_agent(vec![brokers[2].clone(), brokers[1].clone()]);
    agent
        .register("echo", "i1", "127.0.0.1:50001", BTreeMap::new())
        .await
        .expect("register");

    let failover = FailoverConfig {
        retry_interval: Duration::from_millis(200),
        max_retries: 3,
        enable_auto_failover: true,
        continuous_retry: true,
    };
    let client = DiscoveryClient::new(ClientConfig {
        client_id: "c1".into(),
        broker_addresses: brokers.clone(),
        failover: failover.clone(),
        timeout: Duration::from_secs(2),
    })
    .expect("client");
    // Before the brokers listen, calls fail over and give up by name.
    let subscription = client.subscribe(vec!["echo".into()]);
    let mut view = subscription.view();
    let ids = |v: &ClientView| {
        v.serving("echo")
            .iter()
            .map(|i| i.instance_id.clone())
            .collect::<Vec<_>>()
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        view.wait_for(|v| v.broker.is_some() && ids(v) == ["i1"]),
    )
    .await
    .expect("subscribed within 30 s")
    .expect("running");
    let on = subscription.current().broker.expect("on a broker");
    let node: u64 = brokers
        .iter()
        .position(|b| *b == on)
        .expect("a known broker") as u64
        + 1;

    // The client's broker dies; meanwhile the registry changes.
    nodes.get_mut(&node).unwrap().kill();
    let killed = Instant::now();
    let register = agent.register("echo", "i2", "127.0.0.1:50002", BTreeMap::new());
    let resubscribe = async {
        let moved = view.wait_for(|v| v.broker.as_ref().is_some_and(|b| *b != on));
        tokio::time::timeout(Duration::from_secs(20), moved)
            .await
            .expect("on another broker within 20 s")
            .expect("running");
        killed.elapsed()
    };
    let (registered, served_again) = tokio::join!(register, resubscribe);
    registered.expect("register i2");
    tokio::time::timeout(
        Duration::from_secs(20),
        view.wait_for(|v| ids(v) == ["i1", "i2"]),
    )
    .await
    .expect("the change made during the failover arrives within 20 s")
    .expect("running");
    assert!(subscription.current().subscriptions >= 2);
    // retry_interval x max_retries, plus the attempts themselves: this file's
    // tests run side by side, nine coordd processes on 2 cores, so the time
    // bound is judged in the simulator (simulated time); here it catches a client
    // that waits for some long timeout instead of failing over.
    let bound = failover.retry_interval * failover.max_retries + Duration::from_secs(5);
    assert!(
        served_again <= bound,
        "served again {served_again:?} after its broker died, beyond retry_interval x max_retries"
    );

    // Calls fail over too.
    let found = client.discover("echo").await.expect("discover");
    assert_eq!(found.len(), 2);
    let others = client
        .alternatives("echo", "i1")
        .await
        .expect("alternatives");
    assert_eq!(
        others
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect::<Vec<_>>(),
        ["i2"]
    );
    eprintln!(
        "client served again {served_again:?} after its broker died (retry interval 200 ms x 3)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_brokers_gives_up_after_its_retries() {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let failover = FailoverConfig {
        retry_interval: Duration::from_millis(50),
        max_retries: 2,
        enable_auto_failover: true,
        continuous_retry: false,
    };
    let client = DiscoveryClient::new(ClientConfig {
        client_id: "c1".into(),
        broker_addresses: vec![addr.clone()],
        failover,
        timeout: Duration::from_millis(500),
    })
    .expect("client");
    let err = client.discover("echo").await.unwrap_err().to_string();
    assert!(err.contains("3 attempts") && err.contains(&addr), "{err}");
    let subscription = client.subscribe(vec!["echo".into()]);
    let mut view = subscription.view();
    tokio::time::timeout(Duration::from_secs(10), view.wait_for(|v| v.gave_up))
        .await
        .expect("gives up within 10 s")
        .expect("running");
}

/// Maintenance/Status through the broker's proxy: (the instance that answered,
/// the member id the answer carries).
async fn proxied_status(broker: &mut BridgeClient<tonic::transport::Channel>) -> (String, u64) {
    use prost::Message as _;
    let request = ProxyRequest {
        service: "etcd".into(),
        method: "/etcdserverpb.Maintenance/Status".into(),
        payload: StatusRequest {}.encode_to_vec(),
    };
    let answer = broker
        .proxy(request)
        .await
        .expect("proxied call")
        .into_inner();
    let status = StatusResponse::decode(answer.payload.as_slice())
        .expect("a StatusResponse, passed through");
    (answer.instance_id, status.header.expect("header").member_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_forwards_any_method_and_skips_draining_and_dead_instances() {
    let (_root, mut nodes, brokers) = start_bridged_cluster();
    // The "service" is the members' own etcd API: each answer names its member.
    let agent = start_agent(vec![brokers[0].clone(), brokers[1].clone()]);
    for (id, node) in &nodes {
        agent
            .register("etcd", &format!("m{id}"), &node.addr, BTreeMap::new())
            .await
            .expect("register");
    }
    let mut broker = bridge_client(&brokers[0]).await;
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (instance, member) = proxied_status(&mut broker).await;
        assert_eq!(
            instance,
            format!("m{member}"),
            "the payload came back unaltered from the instance named"
        );
        answered.insert(instance);
    }
    assert_eq!(
        answered.len(),
        3,
        "calls rotate over the serving instances: {answered:?}"
    );

    // A client's balanced channel over the same instances.
    let client = DiscoveryClient::new(ClientConfig {
        client_id: "c1".into(),
        broker_addresses: vec![brokers[0].clone()],
        failover: FailoverConfig::default(),
        timeout: Duration::from_secs(5),
    })
    .expect("client");
    let subscription = client.subscribe(vec!["etcd".into()]);
    let mut view = subscription.view();
    tokio::time::timeout(
        Duration::from_secs(20),
        view.wait_for(|v| v.serving("etcd").len() == 3),
    )
    .await
    .expect("three serving instances in the client's view")
    .expect("running");
    let balanced = subscription.channel("etcd");
    let member_of = |channel: tonic::transport::Channel| async move {
        let status = MaintenanceClient::new(channel)
            .status(StatusRequest {})
            .await
            .expect("balanced call");
        status.into_inner().header.expect("header").member_id
    };
    let mut reached = std::collections::BTreeSet::new();
    for _ in 0..30 {
        reached.insert(member_of(balanced.channel()).await);
    }
    assert!(reached.len() >= 2, "the channel balances: {reached:?}");

    // m1's shutdown notice: no proxied call reaches it afterwards.
    agent
        .shutdown_notice("etcd", "m1", Duration::from_secs(30))
        .await
        .expect("notice");
    let started = Instant::now();
    loop {
        let found = broker
            .discover(DiscoverRequest {
                service: "etcd".into(),
            })
            .await
            .expect("discover")
            .into_inner();
        if found
            .instances
            .iter()
            .any(|i| i.instance_id == "m1" && i.status == pb::InstanceStatus::Draining as i32)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the notice never reached broker-1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..12 {
        assert_ne!(proxied_status(&mut broker).await.0, "m1");
    }
    // Nor a call on the balanced channel, once the notice reached the client.
    let mut routed = balanced.routed();
    tokio::time::timeout(
        Duration::from_secs(20),
        routed.wait_for(|r| r.len() == 2 && !r.contains(&"m1".to_string())),
    )
    .await
    .expect("m1 leaves the client's balance")
    .expect("running");
    for _ in 0..20 {
        assert_ne!(
            member_of(balanced.channel()).await,
            1,
            "a call reached draining m1"
        );
    }

    // coordctl reads the same registry.
    let coordctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coordctl"))
            .arg("--endpoints")
            .arg(&nodes[&2].addr)
            .args(args)
            .output()
            .expect("run coordctl");
        assert!(
            out.status.success(),
            "coordctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let services = coordctl(&["bridge", "services"]);
    assert!(
        services.contains(&format!(
            "etcd/m1 {} draining(grace=30000ms) agent=a1",
            nodes[&1].addr
        )),
        "{services}"
    );
    assert!(
        services.contains(&format!("etcd/m2 {} serving agent=a1", nodes[&2].addr)),
        "{services}"
    );
    let agents = coordctl(&["bridge", "agents"]);
    assert!(agents.starts_with("a1 up brokers=broker-"), "{agents}");
    let status = coordctl(&["bridge", "status", "--broker", &brokers[0]]);
    assert!(
        status.contains("broker_id: broker-1") && status.contains("registered_instances: 3"),
        "{status}"
    );
    // Every member's state, one leader among them; the leader has led a while;
    // the broker's own requests were timed.
    assert_eq!(status.matches(": leader\n").count(), 1, "{status}");
    assert_eq!(status.matches(": follower\n").count(), 2, "{status}");
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim_end_matches(" ms").parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    assert!(field("leader_uptime") > 0.0, "{status}");
    assert!(field("local_request_latency") > 0.0, "{status}");

    // m3's process dies (it is still registered as serving): calls skip it.
    nodes.get_mut(&3).unwrap().kill();
    for _ in 0..12 {
        assert_eq!(proxied_status(&mut broker).await.0, "m2");
    }

    // The instance's own errors come back as they are.
    let wrong = ProxyRequest {
        service: "etcd".into(),
        method: "/etcdserverpb.Maintenance/NoSuchMethod".into(),
        payload: vec![],
    };
    assert_eq!(
        broker.proxy(wrong).await.unwrap_err().code(),
        tonic::Code::Unimplemented
    );
    let none = ProxyRequest {
        service: "nothing".into(),
        method: "/a.B/C".into(),
        payload: vec![],
    };
    assert_eq!(
        broker.proxy(none).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_shutting_down_tells_its_clients_and_agents_to_move_at_once() {
    let (_root, mut nodes, brokers) = start_bridged_cluster();
    // Every broker serves before the agent and the client start on broker-1.
    for broker in &brokers {
        bridge_client(broker).await;
    }
    let agent = start_agent(vec![brokers[0].clone(), brokers[1].clone()]);
    agent
        .register("echo", "i1", "127.0.0.1:50001", BTreeMap::new())
        .await
        .expect("register");
    // A retry interval far above what the move may take: a client that moved
    // quickly was told, it did not find out by failing.
    let client = DiscoveryClient::new(ClientConfig {
        client_id: "c1".into(),
        broker_addresses: brokers.clone(),
        failover: FailoverConfig {
            retry_interval: Duration::from_secs(10),
            max_retries: 3,
            enable_auto_failover: true,
            continuous_retry: true,
        },
        timeout: Duration::from_secs(2),
    })
    .expect("client");
    let subscription = client.subscribe(vec!["echo".into()]);
    let mut view = subscription.view();
    tokio::time::timeout(
        Duration::from_secs(30),
        view.wait_for(|v| v.broker.as_deref() == Some(&brokers[0]) && v.serving("echo").len() == 1),
    )
    .await
    .expect("on broker-1 with i1 within 30 s")
    .expect("running");
    let mut agent_state = agent.state();
    assert_eq!(
        node_of(&agent_state.borrow()),
        1,
        "the agent starts on broker-1"
    );

    // SIGTERM node 1: its broker tells everyone to move, then the node stops.
    let mut node1 = nodes.remove(&1).unwrap();
    let log1 = node1.log_path();
    let began = Instant::now();
    let exited = tokio::task::spawn_blocking(move || node1.terminate());
    let moved = view.wait_for(|v| v.broker.as_ref().is_some_and(|b| *b != brokers[0]));
    if tokio::time::timeout(Duration::from_secs(5), moved)
        .await
        .is_err()
    {
        panic!(
            "the client did not move within 5 s (its retry interval is 10 s): {:?}; agent {:?}; node 1's log:\n{}",
            subscription.current(),
            *agent_state.borrow(),
            std::fs::read_to_string(&log1).unwrap_or_default()
        );
    }
    let client_moved = began.elapsed();
    tokio::time::timeout(
        Duration::from_secs(5),
        agent_state.wait_for(|s| s.broker.as_deref().is_some_and(|b| b != "broker-1")),
    )
    .await
    .expect("the agent moved within 5 s")
    .expect("running");
    let agent_moved = began.elapsed();
    let status = exited.await.unwrap_or_else(|e| {
        panic!(
            "{e}; node 1's log:\n{}",
            std::fs::read_to_string(&log1).unwrap_or_default()
        )
    });
    assert!(
        status.success(),
        "coordd exits cleanly after SIGTERM: {status:?}"
    );
    // Nothing went down on the way: the agent moved with its lease.
    assert_eq!(
        subscription.current().serving("echo").len(),
        1,
        "{:?}",
        subscription.current()
    );
    eprintln!(
        "broker shutdown: client on another broker after {client_moved:?}, agent after {agent_moved:?} (retry interval 10 s)"
    );
}

/// A small gRPC service for agents to front: coordlab's `Admin`, whose `Status`
/// answers with the instance's number (its other methods are refused).
struct NumberedInstance(u64);

#[tonic::async_trait]
impl coordlab::proto::admin_server::Admin for NumberedInstance {
    async fn status(
        &self,
        _: tonic::Request<coordlab::proto::StatusRequest>,
    ) -> Result<tonic::Response<coordlab::proto::StatusResponse>, tonic::Status> {
        Ok(tonic::Response::new(coordlab::proto::StatusResponse {
            id: self.0,
            ..Default::default()
        }))
    }

    async fn add_member(
        &self,
        _: tonic::Request<coordlab::proto::AddMemberRequest>,
    ) -> Result<tonic::Response<coordlab::proto::MembershipResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "an instance serves Status only",
        ))
    }

    async fn remove_member(
        &self,
        _: tonic::Request<coordlab::proto::RemoveMemberRequest>,
    ) -> Result<tonic::Response<coordlab::proto::MembershipResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "an instance serves Status only",
        ))
    }
}

/// Serves instance `n` on a free port until the returned sender is used or dropped.
async fn serve_instance(n: u64) -> (String, tokio::sync::oneshot::Sender<()>) {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listen = addr.parse().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(coordlab::proto::admin_server::AdminServer::new(
                NumberedInstance(n),
            ))
            .serve_with_shutdown(listen, async move {
                let _ = stopped.await;
            })
            .await
            .expect("instance serves");
    });
    (addr, stop)
}

/// Answers by instance number, and failed calls.
type Tally = Arc<std::sync::Mutex<(BTreeMap<u64, u64>, u64)>>;

/// Calls the service through `channel` every 20 ms until `stop`, counting into
/// `tally`.
async fn call_until(channel: tonic::transport::Channel, stop: Arc<AtomicBool>, tally: Tally) {
    while !stop.load(Ordering::SeqCst) {
        let mut admin = coordlab::proto::admin_client::AdminClient::new(channel.clone());
        let call = admin.status(coordlab::proto::StatusRequest {});
        let answer = tokio::time::timeout(Duration::from_secs(2), call).await;
        {
            let mut t = tally.lock().unwrap();
            match answer {
                Ok(Ok(answer)) => *t.0.entry(answer.into_inner().id).or_insert(0) += 1,
                _ => t.1 += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_keep_working_through_a_notice_and_the_leaders_death() {
    let (_root, mut nodes, brokers) = start_bridged_cluster();
    for broker in &brokers {
        bridge_client(broker).await;
    }
    // Two agents, each fronting one small gRPC service.
    let agent = |id: &str, first: usize| {
        Agent::start(AgentConfig {
            id: id.into(),
            brokers: vec![brokers[first].clone(), brokers[(first + 1) % 3].clone()],
            retry_interval: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
        })
        .expect("agent")
    };
    let (a1, a2) = (agent("a1", 0), agent("a2", 1));
    let (addr1, stop1) = serve_instance(1).await;
    let (addr2, _stop2) = serve_instance(2).await;
    a1.register("echo", "i1", &addr1, BTreeMap::new())
        .await
        .expect("register i1");
    a2.register("echo", "i2", &addr2, BTreeMap::new())
        .await
        .expect("register i2");

    // Two clients on different brokers, calling through their balanced channels.
    let stop = Arc::new(AtomicBool::new(false));
    let mut subscriptions = Vec::new();
    let mut callers = Vec::new();
    for (name, first) in [("c1", 0), ("c2", 2)] {
        let client = DiscoveryClient::new(ClientConfig {
            client_id: name.into(),
            broker_addresses: (0..3).map(|i| brokers[(first + i) % 3].clone()).collect(),
            failover: FailoverConfig {
                retry_interval: Duration::from_millis(200),
                ..FailoverConfig::default()
            },
            timeout: Duration::from_secs(2),
        })
        .expect("client");
        let subscription = client.subscribe(vec!["echo".into()]);
        let mut view = subscription.view();
        tokio::time::timeout(
            Duration::from_secs(20),
            view.wait_for(|v| v.serving("echo").len() == 2),
        )
        .await
        .expect("both instances serving in the client's view")
        .expect("running");
        let channel = subscription.channel("echo");
        let tally = Tally::default();
        callers.push((
            tokio::spawn(call_until(channel.channel(), stop.clone(), tally.clone())),
            tally,
        ));
        subscriptions.push((subscription, channel));
    }
    // Both clients reach both instances before anything happens.
    let started = Instant::now();
    while !callers.iter().all(|(_, tally)| {
        let t = tally.lock().unwrap();
        t.0.contains_key(&1) && t.0.contains_key(&2)
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "calls reach i1 and i2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // a1's notice: both clients move off i1 within its grace period, so stopping
    // i1 at the end of it fails no call.
    a1.shutdown_notice("echo", "i1", Duration::from_secs(2))
        .await
        .expect("notice");
    for (subscription, channel) in &subscriptions {
        let mut routed = channel.routed();
        tokio::time::timeout(
            Duration::from_secs(2),
            routed.wait_for(|r| r == &["i2".to_string()]),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "i1 left the balance within its grace: {:?}",
                subscription.current()
            )
        })
        .expect("running");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop1.send(());
    a1.deregister("echo", "i1").await.expect("deregister i1");
    let (addr3, _stop3) = serve_instance(3).await;
    a1.register("echo", "i3", &addr3, BTreeMap::new())
        .await
        .expect("register i3");

    // The leader's node dies (its broker with it).
    let leader = {
        let mut any = MaintenanceClient::connect(format!("http://{}", nodes[&1].addr))
            .await
            .expect("member 1");
        any.status(StatusRequest {})
            .await
            .expect("status")
            .into_inner()
            .leader
    };
    let killed = nodes
        .values_mut()
        .find(|n| n.id == leader)
        .expect("the leader is a member");
    killed.kill();
    // Discovery still works for every client: a2 registers one more instance (a2's
    // agent and the clients fail over if their broker was the leader's).
    let (addr4, _stop4) = serve_instance(4).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        a2.register("echo", "i4", &addr4, BTreeMap::new()),
    )
    .await
    .expect("register i4 within 30 s of the leader's death")
    .expect("register i4");
    for (subscription, _) in &subscriptions {
        let mut view = subscription.view();
        tokio::time::timeout(
            Duration::from_secs(30),
            view.wait_for(|v| {
                let mut ids: Vec<&str> = v
                    .serving("echo")
                    .iter()
                    .map(|i| i.instance_id.as_str())
                    .collect();
                ids.sort_unstable();
                ids == ["i2", "i3", "i4"]
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("the client sees i2, i3, i4: {:?}", subscription.current()))
        .expect("running");
    }
    // And the proxy, through a broker whose node lives.
    let survivor = (1..=3u64).find(|&id| id != leader).unwrap();
    let mut broker = bridge_client(&brokers[survivor as usize - 1]).await;
    use prost::Message as _;
    let proxied = broker
        .proxy(ProxyRequest {
            service: "echo".into(),
            method: "/coordlab.Admin/Status".into(),
            payload: coordlab::proto::StatusRequest {}.encode_to_vec(),
        })
        .await
        .expect("a proxied call after the leader's death")
        .into_inner();
    let answered = coordlab::proto::StatusResponse::decode(proxied.payload.as_slice())
        .expect("a StatusResponse")
        .id;
    assert!(
        [2, 3, 4].contains(&answered),
        "answered by instance {answered}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for (caller, tally) in callers {
        caller.await.unwrap();
        let (answers, failed) = tally.lock().unwrap().clone();
        assert_eq!(
            failed, 0,
            "no call failed through the notice and the leader's death: {answers:?}"
        );
        assert!(answers.get(&2).is_some_and(|n| *n > 0), "{answers:?}");
        eprintln!("client calls by instance: {answers:?}, failed: {failed}");
    }
}
