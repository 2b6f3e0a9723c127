//! Real mode, the seed-001 client library: a `Coordinator` against three coordd
//! processes — locks (blocking, try, fencing tokens, kept alive across a leader
//! kill), the service registry (discover, watch, balanced connections that follow
//! deregistrations, a leader kill while registering), the config center (typed
//! values, typed watches that see every change across a leader kill) and auth.
//!
//! `LIBRARY_SERVER=etcd cargo test --test real_library` runs the same tests
//! against a real 3-member etcd (`apt-get install etcd-server`): the library speaks
//! the etcd v3 API and must work against both.

// Real-mode tests run with `cargo test`; `cargo test --features sim` is the
// simulation suite and does not run them a second time.
#![cfg(not(feature = "sim"))]

mod common;

use std::time::{Duration, Instant};

use common::servers::Servers;
use coordlab::client::ClientError;
use coordlab::library::{Coordinator, CoordinatorConfig, CoordinatorError, EventType, ServiceInfo};
use coordlab::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use coordlab::proto::etcdserverpb::StatusRequest;
use serde::{Deserialize, Serialize};

impl Servers {
    /// SIGKILLs the member that leads.
    async fn kill_leader(&mut self, coordinator: &Coordinator) {
        let endpoint = leader_endpoint(coordinator, &self.endpoints()).await;
        self.kill(&endpoint);
    }
}

fn config(cluster: &Servers) -> CoordinatorConfig {
    let mut c = CoordinatorConfig::new(cluster.endpoints());
    c.timeout = Duration::from_secs(2);
    // Enough attempts to ride out an election after a leader kill.
    c.retry.max_attempts = 12;
    c
}

/// The endpoint of the member that leads (asked of each endpoint in turn).
async fn leader_endpoint(coordinator: &Coordinator, endpoints: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for endpoint in endpoints {
            let status = async {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
                let req = coordinator.connection().request(StatusRequest {});
                MaintenanceClient::new(channel).status(req).await.ok()
            };
            if let Some(s) = status.await {
                let s = s.into_inner();
                if s.leader != 0 && s.header.map(|h| h.member_id) == Some(s.leader) {
                    return endpoint.clone();
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "not reached: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_exclude_queue_fence_and_survive_a_leader_kill() {
    let mut cluster = Servers::start("LIBRARY_SERVER");
    let a = Coordinator::new(config(&cluster)).await.unwrap();
    let b = Coordinator::new(config(&cluster)).await.unwrap();
    let ttl = Duration::from_secs(3);

    let held = a.lock().acquire("res", ttl).await.unwrap();
    assert_eq!(held.key(), "res");
    assert_eq!(held.ttl(), ttl);
    let remaining = held.remaining_ttl().await.unwrap();
    assert!(
        remaining <= ttl && remaining > Duration::ZERO,
        "{remaining:?}"
    );
    match b.lock().try_acquire("res", ttl).await {
        Err(CoordinatorError::LockHeld { key }) => assert_eq!(key, "res"),
        other => panic!(
            "try_acquire on a held lock: {:?}",
            other.map(|g| g.key().to_string())
        ),
    }

    // B queues; meanwhile the leader dies and A outlives its TTL on keep-alives.
    let waiter = tokio::spawn({
        let b_lock = b.lock().clone();
        async move { b_lock.acquire("res", ttl).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill_leader(&a).await;
    tokio::time::sleep(ttl + Duration::from_secs(2)).await;
    assert!(
        held.is_held(),
        "keep-alives carried the lease over the election"
    );
    if waiter.is_finished() {
        // Say what B's acquire returned: a lock (a safety bug) or an error.
        let outcome = waiter.await.unwrap().map(|g| g.fencing_token());
        panic!("B's acquire ended while A held the lock: {outcome:?}");
    }

    let first_token = held.fencing_token();
    held.unlock().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("B acquires once A unlocks")
        .unwrap()
        .unwrap();
    assert!(
        second.fencing_token() > first_token,
        "fencing tokens increase: {} then {}",
        first_token,
        second.fencing_token()
    );

    // Dropping a guard releases the lock in the background.
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(20);
    let third = loop {
        match a.lock().try_acquire("res", ttl).await {
            Ok(g) => break g,
            Err(CoordinatorError::LockHeld { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("after a dropped guard: {e}"),
        }
    };
    assert!(third.fencing_token() > first_token);
    third.unlock().await.unwrap();
    a.close().await;
    assert_eq!(
        a.lock().try_acquire("res", ttl).await.err(),
        Some(CoordinatorError::Closed)
    );
}

/// Which member answered through a service connection's channel.
async fn member_behind(channel: tonic::transport::Channel) -> u64 {
    MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .member_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_discovers_watches_and_balances_across_a_leader_kill() {
    let mut cluster = Servers::start("LIBRARY_SERVER");
    let provider = Coordinator::new(config(&cluster)).await.unwrap();
    let consumer = Coordinator::new(config(&cluster)).await.unwrap();
    // Well above an election (up to 2 s at coordd's defaults, more on a loaded
    // machine): a keeper gives up after a whole TTL without a renewal, by design,
    // and with 2 s a leader kill under CI load once cost a registration.
    let ttl = Duration::from_secs(4);
    // The "service" instances are the cluster's members themselves: any gRPC
    // server will do, and a Status call tells which instance answered.
    let endpoints = cluster.endpoints();
    let instance = |id: u64| {
        let addr = endpoints[id as usize - 1].clone();
        let (host, port) = addr.rsplit_once(':').unwrap();
        ServiceInfo {
            id: format!("chat-{id}"),
            name: "chat".into(),
            address: host.into(),
            port: port.parse().unwrap(),
            ..Default::default()
        }
    };
    provider
        .registry()
        .register(instance(1), ttl)
        .await
        .unwrap();
    provider
        .registry()
        .register(instance(2), ttl)
        .await
        .unwrap();
    let mut found = consumer.registry().discover("chat").await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found, vec![instance(1), instance(2)]);

    let mut watch = consumer.registry().watch("chat").await.unwrap();
    let conn = consumer.registry().get_connection("chat").await.unwrap();
    let (first, ch1) = conn.next_channel().unwrap();
    let (second, ch2) = conn.next_channel().unwrap();
    assert_ne!(first.id, second.id, "round-robin alternates instances");
    assert_ne!(
        member_behind(ch1).await,
        member_behind(ch2).await,
        "two instances, two members answering"
    );
    member_behind(conn.channel()).await;

    // Register while the leader dies.
    cluster.kill_leader(&provider).await;
    provider
        .registry()
        .register(instance(3), ttl)
        .await
        .unwrap();
    let put = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("the watch sees the registration")
        .unwrap()
        .unwrap();
    assert_eq!(
        (put.kind, put.service.id.as_str()),
        (EventType::Put, "chat-3")
    );

    // Registrations outlive their TTL on keep-alives.
    tokio::time::sleep(ttl * 2).await;
    let alive = consumer.registry().discover("chat").await.unwrap();
    assert_eq!(alive.len(), 3, "registrations lost: {alive:?}");

    provider.registry().unregister("chat-1").await.unwrap();
    let del = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("the watch sees the deregistration")
        .unwrap()
        .unwrap();
    assert_eq!(
        (del.kind, del.service.id.as_str()),
        (EventType::Delete, "chat-1")
    );
    eventually("the connection drops chat-1", || {
        conn.instances().iter().all(|s| s.id != "chat-1")
    })
    .await;
    for _ in 0..6 {
        assert_ne!(conn.next_channel().unwrap().0.id, "chat-1");
    }
    assert!(matches!(
        provider.registry().unregister("chat-1").await,
        Err(CoordinatorError::NotFound { .. })
    ));

    // Closing the provider unregisters the rest.
    provider.close().await;
    let left = consumer.registry().discover("chat").await.unwrap();
    assert!(left.is_empty(), "still registered: {left:?}");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppConfig {
    name: String,
    port: u16,
    enabled: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_center_is_typed_and_its_watches_miss_nothing_across_a_leader_kill() {
    let mut cluster = Servers::start("LIBRARY_SERVER");
    let writer = Coordinator::new(config(&cluster)).await.unwrap();
    let reader = Coordinator::new(config(&cluster)).await.unwrap();
    let v1 = AppConfig {
        name: "gochat".into(),
        port: 8080,
        enabled: true,
    };
    writer.config().set("app/config", &v1).await.unwrap();
    writer
        .config()
        .set("app/limits", &vec![1, 2, 3])
        .await
        .unwrap();
    assert_eq!(
        reader
            .config()
            .get::<AppConfig>("app/config")
            .await
            .unwrap(),
        v1
    );
    match reader.config().get::<Vec<String>>("app/config").await {
        Err(CoordinatorError::Decode { key, .. }) => assert_eq!(key, "app/config"),
        other => panic!("a wrong type must be a decode error: {other:?}"),
    }
    assert!(matches!(
        reader.config().get::<AppConfig>("app/none").await,
        Err(CoordinatorError::NotFound { .. })
    ));
    assert_eq!(
        reader.config().list("app/").await.unwrap(),
        vec!["app/config".to_string(), "app/limits".to_string()]
    );

    let mut one = reader
        .config()
        .watch::<AppConfig>("app/config")
        .await
        .unwrap();
    let mut all = reader
        .config()
        .watch_prefix::<serde_json::Value>("app/")
        .await
        .unwrap();
    // Setting an equal value changes nothing (so a retried set is harmless).
    writer.config().set("app/config", &v1).await.unwrap();
    cluster.kill_leader(&writer).await;
    let mut expected = Vec::new();
    for port in 9000..9005 {
        let v = AppConfig { port, ..v1.clone() };
        writer.config().set("app/config", &v).await.unwrap();
        expected.push(v);
    }
    assert!(writer.config().delete("app/config").await.unwrap());
    let mut one_revisions = Vec::new();
    for want in &expected {
        let ev = tokio::time::timeout(Duration::from_secs(20), one.next())
            .await
            .expect("typed watch event")
            .unwrap()
            .unwrap();
        assert_eq!((ev.kind, ev.value.as_ref()), (EventType::Put, Some(want)));
        one_revisions.push(ev.revision);
    }
    let del = one.next().await.unwrap().unwrap();
    assert_eq!((del.kind, del.value), (EventType::Delete, None));
    one_revisions.push(del.revision);
    // The prefix watch saw exactly the same changes: every set once, in order.
    let mut all_revisions = Vec::new();
    for want in expected.iter().map(Some).chain([None]) {
        let ev = tokio::time::timeout(Duration::from_secs(20), all.next())
            .await
            .expect("prefix watch event")
            .unwrap()
            .unwrap();
        assert_eq!(ev.key, "app/config");
        let want = want.map(|v| serde_json::to_value(v).unwrap());
        assert_eq!(ev.value, want);
        all_revisions.push(ev.revision);
    }
    assert_eq!(all_revisions, one_revisions);
    assert!(all_revisions.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_when_auth_is_on() {
    use coordlab::proto::etcdserverpb::auth_client::AuthClient;
    use coordlab::proto::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
    };
    let cluster = Servers::start("LIBRARY_SERVER");
    let admin = Coordinator::new(config(&cluster)).await.unwrap();
    let conn = admin.connection();
    conn.call(|ch, _| async move {
        let mut auth = AuthClient::new(ch);
        auth.user_add(AuthUserAddRequest {
            name: "root".into(),
            password: "s3cret".into(),
            ..Default::default()
        })
        .await?;
        auth.role_add(AuthRoleAddRequest {
            name: "root".into(),
        })
        .await?;
        auth.user_grant_role(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await?;
        auth.auth_enable(AuthEnableRequest {}).await
    })
    .await
    .unwrap();

    match admin.config().get::<u32>("k").await {
        Err(CoordinatorError::Client(ClientError::Rejected { message, .. })) => {
            assert_eq!(message, "etcdserver: user name is empty")
        }
        other => panic!("no token must be refused: {other:?}"),
    }
    let mut wrong = config(&cluster);
    wrong.username = "root".into();
    wrong.password = "nope".into();
    match Coordinator::new(wrong).await {
        Err(CoordinatorError::Client(ClientError::Rejected { message, .. })) => assert_eq!(
            message,
            "etcdserver: authentication failed, invalid user ID or password"
        ),
        other => panic!("a wrong password must be refused: {:?}", other.err()),
    }
    let mut right = config(&cluster);
    right.username = "root".into();
    right.password = "s3cret".into();
    let user = Coordinator::new(right).await.unwrap();
    user.config().set("k", &7u32).await.unwrap();
    assert_eq!(user.config().get::<u32>("k").await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquire_leaves_the_queue() {
    let cluster = Servers::start("LIBRARY_SERVER");
    let a = Coordinator::new(config(&cluster)).await.unwrap();
    let c = Coordinator::new(config(&cluster)).await.unwrap();
    let held = a.lock().acquire("q", Duration::from_secs(3)).await.unwrap();
    // C queues behind A with a long lease, then gives up.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(800),
        c.lock().acquire("q", Duration::from_secs(60)),
    )
    .await;
    assert!(gave_up.is_err(), "C must still be waiting");
    held.unlock().await.unwrap();
    // Without revoking C's abandoned lease its queued key would block "q" for 60 s.
    let started = Instant::now();
    let next = tokio::time::timeout(
        Duration::from_secs(15),
        a.lock().acquire("q", Duration::from_secs(3)),
    )
    .await
    .expect("the cancelled waiter left the queue")
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    next.unlock().await.unwrap();
}
