//! A whole coordd node: storage, Raft core, transport and the client API, wired to
//! the seams it is given (real ones in `coordd`, simulated ones in the harness).

mod admin_service;
mod probe;
pub mod replicated;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

use crate::coord::compactor::{run_auto_compactor, AutoCompaction};
use crate::coord::forward::Proposer;
use crate::coord::lessor::Lessor;
use crate::coord::service::auth::AuthService;
use crate::coord::service::cluster::ClusterService;
use crate::coord::service::forward::CoordForwardService;
use crate::coord::service::kv::KvService;
use crate::coord::service::lease::LeaseService;
use crate::coord::service::lock::LockService;
use crate::coord::service::maintenance::MaintenanceService;
use crate::coord::service::watch::WatchService;
use crate::coord::service::CoordContext;
use crate::coord::state::SharedCoordState;
use crate::mq::broker::Broker;
use crate::mq::coo::{Coo, CooService, BROKER_TIMEOUT};
use crate::mq::logic_node::{LogicNode, LogicNodeMetrics};
use crate::proto::admin_server::AdminServer;
use crate::proto::coo_server::CooServer;
use crate::proto::coord_forward_server::CoordForwardServer;
use crate::proto::etcdserverpb as etcd;
use crate::proto::raft_transport_server::RaftTransportServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::raft::{self, Bootstrap, NodeEnv, RaftConfig, RaftCore, RaftError, RaftHandle};
use crate::seams::clock::Clock;
use crate::seams::disk::Disk;
use crate::seams::observer::Observer;
use crate::seams::transport::Transport;
use crate::transport::{GrpcTransport, RaftTransportService};
use replicated::ReplicatedState;

pub use admin_service::AdminService;
pub use probe::{KeyspaceSample, NodeProbe, NodeSample, ProbeSink};

/// How long a stopping node waits for its clients' streams to end.
const SERVER_CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Wraps the real transport (the harness adds its fault hooks this way). The layer
/// gets the node's handle to report what it does to messages as the real transport
/// reports delivery (a snapshot it drops was not sent).
pub type TransportLayer =
    Arc<dyn Fn(Arc<dyn Transport>, RaftHandle) -> Arc<dyn Transport> + Send + Sync>;

/// What a node is and whom it knows.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub raft: RaftConfig,
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// Every known node's address (this node's included), by id.
    pub peers: BTreeMap<u64, String>,
    /// How to start when the disk is empty.
    pub bootstrap: Bootstrap,
    /// Run a broker and a LogicNode (broker + this node's coo) in this process.
    pub broker: bool,
    /// Compact the history automatically (`None`: only when a client asks).
    pub auto_compaction: Option<AutoCompaction>,
}

/// The outside world a node is wired to.
#[derive(Clone)]
pub struct NodeSeams {
    pub disk: Arc<dyn Disk>,
    pub clock: Arc<dyn Clock>,
    pub observer: Arc<dyn Observer>,
    pub transport_layer: Option<TransportLayer>,
    /// Given the node's [`NodeProbe`] once it serves (for a metrics endpoint).
    pub probe_sink: Option<ProbeSink>,
}

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error("gRPC server on {addr}: {reason}")]
    Serve { addr: SocketAddr, reason: String },
}

/// Opens the node's state and serves Raft and the client API until `shutdown`
/// completes or the Raft loop stops (removal, storage failure).
pub async fn serve_node(
    options: NodeOptions,
    seams: NodeSeams,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let id = options.raft.id;
    let (handle, inbox) = raft::inbox();
    // Peers learn this address from our messages before they apply our addition.
    let own_addr = options
        .peers
        .get(&id)
        .cloned()
        .unwrap_or_else(|| options.listen.to_string());
    let grpc: Arc<dyn Transport> = Arc::new(GrpcTransport::new(
        id,
        own_addr.clone(),
        handle.clone(),
        seams.clock.clone(),
    ));
    let transport = match &seams.transport_layer {
        Some(layer) => layer(grpc, handle.clone()),
        None => grpc,
    };
    let clock = seams.clock.clone();
    let env = NodeEnv {
        disk: seams.disk,
        clock: seams.clock,
        observer: seams.observer,
        transport,
    };
    let receiver_transport = env.transport.clone();
    let observer = env.observer.clone();
    let coord_state = SharedCoordState::new(id, observer.clone());
    let (state, topics) = ReplicatedState::new(coord_state.clone());
    let coo_endpoints: Vec<String> = options.peers.values().cloned().collect();
    let core = RaftCore::open(options.raft, env, state, options.bootstrap, options.peers)?;
    let raft_task = tokio::spawn(raft::node::drive(core, inbox));
    let coo = Coo::new(handle.clone(), clock.clone(), topics);
    let expiry = tokio::spawn(coo.clone().run_broker_expiry(BROKER_TIMEOUT));
    let proposer = Arc::new(Proposer::new(handle.clone(), clock.clone()));
    let lessor = Arc::new(Lessor::new(id, proposer.clone(), coord_state.clone()));
    let lease_expiry = tokio::spawn(lessor.clone().run());
    let mut background = vec![expiry, lease_expiry];
    if let Some(policy) = options.auto_compaction {
        background.push(tokio::spawn(run_auto_compactor(
            policy,
            proposer.clone(),
            coord_state.clone(),
        )));
    }
    let coord = CoordContext {
        member_id: id,
        state: coord_state,
        proposer,
        lessor,
    };
    let logic = if options.broker {
        Some(start_logic_node(
            id,
            options.listen,
            own_addr.clone(),
            coo.clone(),
            coo_endpoints,
            clock.clone(),
            observer,
        )?)
    } else {
        None
    };
    let metrics = logic.as_ref().map(|l| l.metrics.clone());
    if let Some(sink) = &seams.probe_sink {
        sink(NodeProbe {
            handle: handle.clone(),
            coord: coord.state.clone(),
            logic_node: metrics.clone(),
        });
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (closing_tx, closing_rx) = crate::sync::watch::channel(false);
    let services = Services {
        id,
        handle: handle.clone(),
        receiver_transport,
        closing: closing_rx,
        metrics,
        coo,
        coord,
    };
    let server = services.serve(options.listen, async move {
        let _ = stop_rx.await;
    });
    tracing::info!(node = id, listen = %options.listen, "coordd node serving");
    let node = RunningNode {
        listen: options.listen,
        handle,
        raft_task,
        server_task: tokio::spawn(server),
        stop_server: stop_tx,
        closing: closing_tx,
        logic,
        background,
    };
    node.run_until(shutdown).await
}

/// A node's tasks once it serves.
struct RunningNode {
    listen: SocketAddr,
    handle: RaftHandle,
    raft_task: tokio::task::JoinHandle<Result<(), RaftError>>,
    server_task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    stop_server: tokio::sync::oneshot::Sender<()>,
    closing: crate::sync::watch::Sender<bool>,
    logic: Option<RunningLogicNode>,
    /// Broker expiry, lease expiry and auto-compaction: aborted at the end.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Runs until Raft stops (its error is the node's), the server fails, or
    /// `shutdown` fires; then stops everything, the server before Raft.
    async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let raft_result = tokio::select! {
            biased;
            result = &mut self.raft_task => Some(result),
            served = &mut self.server_task => {
                let reason = match served {
                    Ok(Ok(())) => "server stopped".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                self.handle.shutdown().await;
                let _ = self.raft_task.await;
                return Err(NodeError::Serve { addr: self.listen, reason });
            }
            _ = shutdown => None,
        };
        let _ = self.closing.send(true);
        let _ = self.stop_server.send(());
        // A graceful stop waits for every stream to end; clients' watch streams
        // (other brokers', etcd clients') do not end by themselves, so after a
        // moment the server is dropped with its connections.
        let mut server_task = self.server_task;
        if tokio::time::timeout(SERVER_CLOSE_PATIENCE, &mut server_task)
            .await
            .is_err()
        {
            tracing::warn!(listen = %self.listen, "client streams still open; closing them");
            server_task.abort();
        }
        if let Some(logic) = self.logic {
            logic.stop().await;
        }
        for task in &self.background {
            task.abort();
        }
        let raft_result = match raft_result {
            Some(result) => result,
            None => {
                self.handle.shutdown().await;
                self.raft_task.await
            }
        };
        match raft_result {
            Ok(result) => result.map_err(NodeError::from),
            Err(join) => Err(NodeError::Raft(RaftError::Stopped(format!(
                "raft task: {join}"
            )))),
        }
    }
}

/// The gRPC services of one node, over its Raft handle and replicated state.
struct Services {
    id: u64,
    handle: RaftHandle,
    /// Where the Raft receiver learns peers' addresses.
    receiver_transport: Arc<dyn Transport>,
    /// Ends peers' Raft streams, which a graceful shutdown would otherwise wait for.
    closing: crate::sync::watch::Receiver<bool>,
    metrics: Option<Arc<LogicNodeMetrics>>,
    coo: Coo,
    coord: CoordContext,
}

impl Services {
    /// Serves every service at `listen` until `stop` fires.
    fn serve(
        self,
        listen: SocketAddr,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
        let Services {
            id,
            handle,
            receiver_transport,
            closing,
            metrics,
            coo,
            coord,
        } = self;
        let raft = RaftTransportServer::new(RaftTransportService::new(
            id,
            handle.clone(),
            receiver_transport,
            closing,
        ))
        .max_decoding_message_size(crate::transport::MAX_GRPC_MESSAGE_BYTES);
        let forward = CoordForwardService::new(coord.proposer.clone(), coord.lessor.clone());
        tonic::transport::Server::builder()
            .add_service(raft)
            .add_service(AdminServer::new(AdminService::new(handle, metrics)))
            .add_service(CooServer::new(CooService::new(coo)))
            .add_service(CoordForwardServer::new(forward))
            .add_service(etcd::kv_server::KvServer::new(KvService::new(
                coord.clone(),
            )))
            .add_service(etcd::watch_server::WatchServer::new(WatchService::new(
                coord.clone(),
            )))
            .add_service(etcd::lease_server::LeaseServer::new(LeaseService::new(
                coord.clone(),
            )))
            .add_service(etcd::cluster_server::ClusterServer::new(
                ClusterService::new(coord.clone()),
            ))
            .add_service(etcd::maintenance_server::MaintenanceServer::new(
                MaintenanceService::new(coord.clone()),
            ))
            .add_service(etcd::auth_server::AuthServer::new(AuthService::new(
                coord.clone(),
            )))
            .add_service(LockServer::new(LockService::new(coord)))
            .serve_with_shutdown(listen, stop)
    }
}

/// A LogicNode running beside the node (`--broker`).
struct RunningLogicNode {
    metrics: Arc<LogicNodeMetrics>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningLogicNode {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts this node's broker and its LogicNode on the in-process coo.
fn start_logic_node(
    id: u64,
    listen: SocketAddr,
    own_addr: String,
    coo: Coo,
    coo_endpoints: Vec<String>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
) -> Result<RunningLogicNode, NodeError> {
    let broker = Broker::new(id, own_addr, observer.clone());
    let logic = LogicNode::builder()
        .id(id)
        .broker(broker)
        .coo(coo)
        .coo_endpoints(coo_endpoints)
        .clock(clock)
        .observer(observer)
        .build()
        .map_err(|reason| NodeError::Serve {
            addr: listen,
            reason,
        })?;
    let metrics = logic.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(logic.run(async move {
        let _ = stopped.await;
    }));
    Ok(RunningLogicNode {
        metrics,
        stop,
        task,
    })
}
