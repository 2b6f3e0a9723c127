//! Real-mode test support: `coordd` processes on 127.0.0.1 with their own data dirs.

#![allow(dead_code)]

pub mod etcd;
pub mod etcdctl;
pub mod held_forwarder;
pub mod servers;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use coordlab::client::Connection;
use coordlab::client::{AdminClient, ConnectionConfig};
use coordlab::proto::etcdserverpb::{PutRequest, RangeRequest};
use coordlab::proto::StatusResponse;

/// A port for a test server: free when checked, reserved on this machine for as
/// long as this process runs, and below Linux's ephemeral range (32768–60999) so
/// that no outgoing connection takes it before the server binds. (Ports the OS
/// hands out for `:0` may be handed out again at once; two clusters then shared
/// a port and a client read another test's cluster.)
///
/// The reservation is an exclusive `flock` on `<temp>/coordlab-test-ports/<port>`,
/// held until the process exits (the kernel drops it even after a crash), so test
/// binaries running side by side (`cargo nextest`, two `cargo test`s) never hand
/// out the same port.
pub fn free_port() -> u16 {
    use std::fs::{File, OpenOptions};
    use std::sync::Mutex;
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // The next candidate and this process's reservations.
    static RESERVED: Mutex<Option<(u32, Vec<File>)>> = Mutex::new(None);
    let mut guard = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    // Start each process elsewhere so that side-by-side binaries rarely contend.
    let dir = port_lock_dir();
    let (next, held) = guard.get_or_insert_with(|| {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        (std::process::id() % SPAN, Vec::new())
    });
    for _ in 0..SPAN {
        let port = (FIRST + *next % SPAN) as u16;
        *next += 1;
        let path = dir.join(port.to_string());
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        if lock.try_lock().is_err() {
            continue; // another process holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push(lock);
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// Where `free_port` keeps its reservations.
pub fn port_lock_dir() -> PathBuf {
    std::env::temp_dir().join("coordlab-test-ports")
}

/// Whether another open file description could reserve `port` now (false while
/// some process, this one included, holds it).
pub fn port_reservable(port: u16) -> bool {
    let path = port_lock_dir().join(port.to_string());
    std::fs::File::open(&path)
        .map(|file| file.try_lock().is_ok())
        .unwrap_or(true)
}

/// The first `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether a missing external program may skip the tests that need it: not in
/// CI (`CI` set, as `.ci/run` does) nor with `COORDLAB_REQUIRE_INTEROP=1`, where
/// nothing may be skipped silently.
pub fn may_skip_missing() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
    !set("CI") && !set("COORDLAB_REQUIRE_INTEROP")
}

/// For a test whose `program` is missing: prints one skip line naming it and how
/// to install it, and returns false — or panics where skipping is not allowed.
/// The line goes straight to stderr, past the test harness's output capture,
/// so `cargo test` shows it (and `grep -c SKIPPED` counts the skips).
pub fn skip_missing(program: &str, install: &str) -> bool {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    if !may_skip_missing() {
        panic!(
            "{program} not found on PATH: install it with `{install}` \
             (required because CI or COORDLAB_REQUIRE_INTEROP is set)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {program} not found on PATH (install: `{install}`; \
         CI=true or COORDLAB_REQUIRE_INTEROP=1 makes this a failure)"
    );
    false
}

pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    /// Extra coordd arguments (e.g. `--broker`), kept across restarts.
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl NodeProc {
    pub fn start(id: u64, peers: &BTreeMap<u64, String>, dir: PathBuf, join: bool) -> NodeProc {
        Self::start_args(id, peers, dir, join, &[])
    }

    pub fn start_args(
        id: u64,
        peers: &BTreeMap<u64, String>,
        dir: PathBuf,
        join: bool,
        extra: &[&str],
    ) -> NodeProc {
        let addr = peers[&id].clone();
        let mut node = NodeProc {
            id,
            addr,
            dir,
            extra_args: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        node.spawn(peers, join);
        node
    }

    fn spawn(&mut self, peers: &BTreeMap<u64, String>, join: bool) {
        let peers_arg: Vec<String> = peers.iter().map(|(id, a)| format!("{id}={a}")).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coordd"));
        cmd.arg("--id")
            .arg(self.id.to_string())
            .arg("--listen")
            .arg(&self.addr)
            .arg("--peers")
            .arg(peers_arg.join(","))
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--tick-ms")
            .arg("50")
            .env("RUST_LOG", "info,raft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if join {
            cmd.arg("--join");
        }
        cmd.args(&self.extra_args);
        self.child = Some(cmd.spawn().expect("start coordd"));
    }

    /// The node's stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.with_extension("log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn restart(&mut self, peers: &BTreeMap<u64, String>) {
        assert!(self.child.is_none(), "node {} is still running", self.id);
        self.spawn(peers, false);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        wait_exit(&mut child, Duration::from_secs(10)).expect("coordd exits after SIGTERM")
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let status = wait_exit(self.child.as_mut().expect("running"), within);
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` nodes on fresh ports, data dirs under `root`.
pub struct TestCluster {
    pub root: tempfile::TempDir,
    pub peers: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, NodeProc>,
}

impl TestCluster {
    pub fn start(n: u64) -> TestCluster {
        Self::start_with(n, &[])
    }

    /// `n` nodes started with `extra` coordd arguments.
    pub fn start_with(n: u64, extra: &[&str]) -> TestCluster {
        let root = tempfile::tempdir().unwrap();
        let peers: BTreeMap<u64, String> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let nodes = peers
            .keys()
            .map(|&id| {
                let dir = root.path().join(format!("node-{id}"));
                (id, NodeProc::start_args(id, &peers, dir, false, extra))
            })
            .collect();
        TestCluster { root, peers, nodes }
    }

    pub fn endpoints(&self, ids: &[u64]) -> Vec<String> {
        ids.iter().map(|id| self.peers[id].clone()).collect()
    }

    /// SIGKILL the node listening on `addr`.
    pub fn kill_at(&mut self, addr: &str) {
        self.nodes
            .values_mut()
            .find(|node| node.addr == addr)
            .unwrap_or_else(|| panic!("no node listens on {addr}"))
            .kill();
    }

    pub fn client(&self, ids: &[u64]) -> AdminClient {
        AdminClient::new(
            ConnectionConfig::new(self.endpoints(ids))
                .until(Duration::from_secs(5), Duration::from_secs(20)),
        )
        .unwrap()
    }

    /// The etcd keyspace through the nodes at `ids`.
    pub async fn kv(&self, ids: &[u64]) -> Kv {
        // Enough to ride out an election.
        let config = ConnectionConfig::new(self.endpoints(ids))
            .until(Duration::from_secs(5), Duration::from_secs(20));
        Kv(Connection::connect(config).await.unwrap())
    }
}

/// Puts and gets on the etcd keyspace, for tests.
pub struct Kv(pub Connection);

impl Kv {
    /// The revision the put made.
    pub async fn put(&self, key: &str, value: &[u8]) -> i64 {
        let put = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            ..Default::default()
        };
        let r = self
            .0
            .put(put)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        r.header.expect("a header").revision
    }

    /// `key`'s value; linearizable unless `serializable` (this member's state).
    pub async fn get(&self, key: &str, serializable: bool) -> Option<Vec<u8>> {
        let range = RangeRequest {
            key: key.as_bytes().to_vec(),
            serializable,
            ..Default::default()
        };
        let r = self
            .0
            .range(range)
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        r.kvs.into_iter().next().map(|kv| kv.value)
    }

    /// Polls this member's own state until `key` holds `value`.
    pub async fn wait_for(&self, key: &str, value: &[u8], what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get(key, true).await.as_deref() != Some(value) {
            assert!(Instant::now() < deadline, "not reached: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls the nodes at `ids` until one reports itself leader.
pub async fn wait_for_leader(client: &mut AdminClient) -> StatusResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.leader_status().await {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("no leader: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Polls `endpoint` until `done` holds for its status.
pub async fn wait_for_status(
    client: &mut AdminClient,
    endpoint: &str,
    what: &str,
    done: impl Fn(&StatusResponse) -> bool,
) -> StatusResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = client.status_of(endpoint).await {
            if done(&s) {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "{endpoint}: not reached: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
