//! coordd: runs one coordlab node (or, with `--dev`, a local 3-node cluster), and
//! with `--bridge-config` Link Bridge's broker beside it.

mod bridge;
#[cfg(not(madsim))]
mod metrics_http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use coordlab::bridge::BridgeConfig;
use coordlab::coord::compactor::AutoCompaction;
use coordlab::raft::storage::SnapshotOptions;
use coordlab::raft::{Bootstrap, RaftConfig};
use coordlab::seams::clock::MonotonicClock;
use coordlab::seams::disk::FileDisk;
use coordlab::seams::observer::{NoopObserver, Observer};
use coordlab::server::{serve_node, NodeOptions, NodeSeams, ProbeSink};
use coordlab::sync::watch;

// glibc's malloc/free family was ~8 % of a 3-node cluster's CPU under 16 put
// clients (perf, ci/bench-real.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "coordd", about = "Run a coordlab Raft node")]
struct Args {
    /// This node's id (non-zero).
    #[arg(long, required_unless_present = "dev")]
    id: Option<u64>,
    /// Address to serve Raft and the client API on.
    #[arg(long, required_unless_present = "dev")]
    listen: Option<SocketAddr>,
    /// All nodes of the cluster: `1=host:port,2=host:port,...`.
    #[arg(long, value_parser = parse_peers, required_unless_present = "dev")]
    peers: Option<BTreeMap<u64, String>>,
    /// Directory of this node's WAL and snapshots.
    #[arg(long, default_value = "coordlab-data")]
    data_dir: PathBuf,
    /// Join a running cluster: start empty, with the id `coordctl member add` or
    /// `etcdctl member add` chose for this node.
    #[arg(long)]
    join: bool,
    /// Start three nodes on 127.0.0.1:7101-7103 in this process, data under --data-dir.
    #[arg(long, conflicts_with_all = ["id", "listen", "peers", "join"])]
    dev: bool,
    /// Milliseconds per Raft tick.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Ticks before a follower without a leader campaigns.
    #[arg(long, default_value_t = 10)]
    election_ticks: usize,
    /// Applied entries between snapshots (etcd's `--snapshot-count` default).
    #[arg(long, default_value_t = 100_000)]
    snapshot_entries: u64,
    /// Auto-compaction as etcd: `periodic` keeps the history of the last
    /// `--auto-compaction-retention` (hours, or a duration such as `30m`);
    /// `revision` keeps that many revisions, compacting every 5 minutes.
    #[arg(long, default_value = "periodic")]
    auto_compaction_mode: String,
    /// What auto-compaction keeps; 0 turns it off.
    #[arg(long, default_value = "0")]
    auto_compaction_retention: String,
    /// Snapshot files kept on disk, newest first (recovery reads the newest).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    snapshot_retention: u32,
    /// Write snapshot files LZ4-compressed.
    #[arg(long)]
    snapshot_compress: bool,
    /// Turn off pre-vote.
    #[arg(long)]
    no_pre_vote: bool,
    /// Turn off check-quorum.
    #[arg(long)]
    no_check_quorum: bool,
    /// Also run an MQ broker and a LogicNode (broker + this node's coo). `--dev`
    /// turns it on for every node.
    #[arg(long)]
    broker: bool,
    /// Also run Link Bridge's broker, configured by the seed's YAML file (its
    /// `cluster.raft` timeouts set the Raft timing; `node.id` must be this node).
    #[arg(long, conflicts_with_all = ["dev", "join"])]
    bridge_config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (not in a simulation build).
    #[arg(long, value_name = "ADDR", conflicts_with = "dev")]
    metrics_listen: Option<SocketAddr>,
    /// Log lines as text (coloured only on a terminal) or JSON; RUST_LOG filters.
    #[arg(long, value_enum, default_value_t)]
    log_format: coordlab::logs::LogFormat,
}

fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        if id == 0 {
            return Err("peer id 0 is reserved".into());
        }
        let addr = addr.trim();
        addr.parse::<SocketAddr>()
            .map_err(|e| format!("peer {id} address {addr:?}: {e}"))?;
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("peer {id} given twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

struct NodeSpec {
    id: u64,
    listen: SocketAddr,
    peers: BTreeMap<u64, String>,
    data_dir: PathBuf,
    join: bool,
    bridge: Option<BridgeConfig>,
}

fn raft_config(args: &Args, spec: &NodeSpec) -> RaftConfig {
    let mut raft = RaftConfig::new(spec.id);
    raft.tick_interval = Duration::from_millis(args.tick_ms);
    raft.election_ticks = args.election_ticks;
    raft.snapshot_interval_entries = args.snapshot_entries;
    raft.snapshots = SnapshotOptions {
        retention: args.snapshot_retention as usize,
        compress: args.snapshot_compress,
    };
    raft.pre_vote = !args.no_pre_vote;
    raft.check_quorum = !args.no_check_quorum;
    if let Some(bridge) = &spec.bridge {
        bridge::apply_raft_config(bridge, &mut raft);
    }
    raft
}

async fn run_node(
    args: Arc<Args>,
    spec: NodeSpec,
    auto_compaction: Option<AutoCompaction>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let disk = FileDisk::open(&spec.data_dir)
        .map_err(|e| format!("data dir {}: {e}", spec.data_dir.display()))?;
    let bootstrap = if spec.join {
        Bootstrap::Join
    } else {
        Bootstrap::NewCluster {
            voters: spec.peers.keys().copied().collect(),
        }
    };
    let metrics = match args.metrics_listen {
        Some(addr) => Some(Metrics::start(addr, spec.bridge.is_some(), stop.clone()).await?),
        None => None,
    };
    // The broker reaches the registry through every member's etcd API.
    let broker = spec.bridge.clone().map(|config| {
        let endpoints = spec.peers.values().cloned().collect();
        let slot = metrics.as_ref().and_then(Metrics::broker_slot);
        tokio::spawn(bridge::run(config, endpoints, slot, stop.clone()))
    });
    let options = NodeOptions {
        raft: raft_config(&args, &spec),
        listen: spec.listen,
        peers: spec.peers,
        bootstrap,
        broker: args.broker || args.dev,
        auto_compaction,
    };
    let (observer, probe_sink) = match &metrics {
        Some(metrics) => (metrics.observer(), Some(metrics.probe_sink())),
        None => (Arc::new(NoopObserver) as Arc<dyn Observer>, None),
    };
    let seams = NodeSeams {
        disk: Arc::new(disk),
        clock: Arc::new(MonotonicClock::new()),
        observer,
        transport_layer: None,
        probe_sink,
    };
    // The node stops after the broker beside it has let its clients go (a
    // graceful broker shutdown takes up to its grace period).
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        let _ = stop.wait_for(|stop| *stop).await;
        let broker_result = match broker {
            Some(broker) => broker
                .await
                .unwrap_or_else(|e| Err(format!("bridge broker task: {e}"))),
            None => Ok(()),
        };
        let _ = stopped_tx.send(broker_result);
    };
    let served = serve_node(options, seams, shutdown)
        .await
        .map_err(|e| format!("node {}: {e}", spec.id));
    if let Ok(Err(e)) = stopped_rx.await {
        return Err(e);
    }
    served
}

/// `--metrics-listen`: the node's series, its observer, and the endpoint serving
/// them (started before the node, so a taken port stops coordd at once).
#[cfg(not(madsim))]
struct Metrics {
    scrape: Arc<metrics_http::Scrape>,
}

#[cfg(not(madsim))]
impl Metrics {
    async fn start(
        addr: SocketAddr,
        bridge: bool,
        stop: watch::Receiver<bool>,
    ) -> Result<Metrics, String> {
        let listener = metrics_http::bind(addr).await?;
        let scrape = Arc::new(metrics_http::Scrape {
            metrics: Arc::new(coordlab::metrics::NodeMetrics::new(bridge)),
            node: Default::default(),
            broker: bridge.then(Default::default),
        });
        tokio::spawn(metrics_http::serve(listener, scrape.clone(), stop));
        Ok(Metrics { scrape })
    }

    fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(coordlab::metrics::MetricsObserver::new(
            self.scrape.metrics.clone(),
        ))
    }

    fn probe_sink(&self) -> ProbeSink {
        let slot = self.scrape.node.clone();
        Arc::new(move |probe| {
            let _ = slot.set(probe);
        })
    }

    fn broker_slot(&self) -> Option<bridge::BrokerSlot> {
        self.scrape.broker.clone()
    }
}

/// A simulation build has no real sockets to serve metrics on.
#[cfg(madsim)]
enum Metrics {}

#[cfg(madsim)]
impl Metrics {
    async fn start(
        _addr: SocketAddr,
        _bridge: bool,
        _stop: watch::Receiver<bool>,
    ) -> Result<Metrics, String> {
        Err("--metrics-listen: not available in a simulation build".into())
    }

    fn observer(&self) -> Arc<dyn Observer> {
        match *self {}
    }

    fn probe_sink(&self) -> ProbeSink {
        match *self {}
    }

    fn broker_slot(&self) -> Option<bridge::BrokerSlot> {
        match *self {}
    }
}

fn node_specs(args: &Args) -> Result<Vec<NodeSpec>, String> {
    if args.dev {
        let peers: BTreeMap<u64, String> = (1..=3)
            .map(|id| (id, format!("127.0.0.1:{}", 7100 + id)))
            .collect();
        return Ok((1..=3)
            .map(|id| NodeSpec {
                id,
                listen: peers[&id].parse().expect("dev address"),
                peers: peers.clone(),
                data_dir: args.data_dir.join(format!("node-{id}")),
                join: false,
                bridge: None,
            })
            .collect());
    }
    let id = args.id.expect("required by clap");
    let listen = args.listen.expect("required by clap");
    let mut peers = args.peers.clone().expect("required by clap");
    if id == 0 {
        return Err("--id 0 is reserved".into());
    }
    match peers.get(&id) {
        Some(_) => {}
        None if args.join => {
            peers.insert(id, listen.to_string());
        }
        None => return Err(format!("--peers does not list this node's id {id}")),
    }
    let bridge = match &args.bridge_config {
        Some(path) => Some(bridge::load(path, id, peers.len())?),
        None => None,
    };
    Ok(vec![NodeSpec {
        id,
        listen,
        peers,
        data_dir: args.data_dir.clone(),
        join: args.join,
        bridge,
    }])
}

/// Completes on Ctrl-C or (on Unix, outside the simulator) SIGTERM.
async fn shutdown_signal() {
    #[cfg(all(unix, not(madsim)))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(any(not(unix), madsim))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    coordlab::logs::init(args.log_format, "info,raft=warn");
    let specs = match node_specs(&args) {
        Ok(specs) => specs,
        Err(e) => {
            eprintln!("coordd: {e}");
            std::process::exit(2);
        }
    };
    let auto_compaction =
        match AutoCompaction::parse(&args.auto_compaction_mode, &args.auto_compaction_retention) {
            Ok(policy) => policy,
            Err(e) => {
                eprintln!("coordd: {e}");
                std::process::exit(2);
            }
        };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut nodes = Vec::new();
    for spec in specs {
        nodes.push(tokio::spawn(run_node(
            args.clone(),
            spec,
            auto_compaction,
            stop_rx.clone(),
        )));
    }
    let signal_task = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });
    let mut failed = false;
    for node in nodes {
        match node.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("coordd: {e}");
                failed = true;
            }
            Err(e) => {
                eprintln!("coordd: node task failed: {e}");
                failed = true;
            }
        }
    }
    signal_task.abort();
    std::process::exit(if failed { 1 } else { 0 });
}
