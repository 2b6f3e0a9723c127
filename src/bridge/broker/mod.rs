//! A broker (the seed's `Broker`): the bridge's gRPC service on a coordd node.
//! Agents and clients talk to any broker; what it answers comes from its
//! [`RegistryView`], what it changes goes through the Raft log as the bridge's
//! commands, and who is connected to it stays in its [`LocalBrokerState`].

mod agent_session;
pub mod local;
mod metrics;
mod proxy;
mod wire;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::client::Connection;
use crate::proto::linkbridge::bridge_server::Bridge;
use crate::proto::linkbridge::{
    AgentMessage, AlternativesRequest, BridgeStatusRequest, BrokerMessage, ClusterMetrics,
    DiscoverRequest, DiscoverResponse, ProxyRequest, ProxyResponse, RegistryUpdate,
    SubscribeRequest,
};
use crate::seams::mutants;
use crate::sync::watch;

use super::config::BridgeConfig;
use super::error::BridgeError;
use super::record::check_name;
use super::view::RegistryView;
pub use agent_session::send_command;
pub use local::{ClientInfo, LocalBrokerState};
use metrics::BrokerMetrics;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// This broker's id (the configuration's `node.id`).
    pub id: String,
    /// An agent nobody hears for this long is down.
    pub agent_ttl: Duration,
    /// How often the broker pings each agent; each pong renews the agent's lease.
    pub ping_interval: Duration,
    pub max_clients: usize,
}

impl BrokerOptions {
    /// From the seed's file: `local.clientTimeout` is how long an agent or client
    /// may stay silent; agents are pinged three times within it.
    pub fn from_config(config: &BridgeConfig) -> BrokerOptions {
        let b = &config.broker;
        BrokerOptions {
            id: b.node.id.clone(),
            agent_ttl: b.local.client_timeout,
            ping_interval: b.local.client_timeout / 3,
            max_clients: b.local.max_clients as usize,
        }
    }
}

/// What every session of this broker shares.
struct Shared {
    options: BrokerOptions,
    conn: Arc<Connection>,
    view: RegistryView,
    local: LocalBrokerState,
    forwarder: proxy::Forwarder,
    /// Set when the broker shuts down gracefully: sessions tell their clients
    /// and agents to move, new ones are refused.
    leaving: watch::Sender<bool>,
    metrics: Arc<BrokerMetrics>,
    /// Asks the cluster who leads, for the leader's uptime.
    leader_poll: tokio::task::JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.leader_poll.abort();
    }
}

#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Broker {
    /// A broker of the cluster `conn` reaches; it reads the registry first.
    pub async fn start(
        options: BrokerOptions,
        conn: Arc<Connection>,
    ) -> Result<Broker, BridgeError> {
        check_name("broker", &options.id)?;
        let view = RegistryView::start(conn.clone()).await?;
        let metrics = Arc::new(BrokerMetrics::default());
        let leader_poll = tokio::spawn(metrics::watch_leader(metrics.clone(), conn.clone()));
        Ok(Broker {
            shared: Arc::new(Shared {
                options,
                conn,
                view,
                local: LocalBrokerState::default(),
                forwarder: proxy::Forwarder::new(Duration::from_secs(5)),
                leaving: watch::channel(false).0,
                metrics,
                leader_poll,
            }),
        })
    }

    pub fn view(&self) -> &RegistryView {
        &self.shared.view
    }

    pub fn local(&self) -> &LocalBrokerState {
        &self.shared.local
    }

    /// Starts a graceful shutdown: every connected client and agent is told to
    /// move to another broker now (rather than finding out when this one is
    /// gone), and new ones are refused. Returns once all have left or `grace`
    /// has passed, whichever is first; whether all left.
    pub async fn leave(&self, grace: Duration) -> bool {
        self.shared.leaving.send_replace(true);
        let local = &self.shared.local;
        let all_left = async {
            while !(local.clients().is_empty() && local.agents().is_empty()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(grace, all_left).await.is_ok()
    }

    /// The seed's `ClusterMetrics` as this broker sees them (`coordctl bridge
    /// status`, coordd's metrics): it asks the cluster's status and every member.
    pub async fn cluster_metrics(&self) -> Result<ClusterMetrics, crate::client::ClientError> {
        let conn = &self.shared.conn;
        let raft = metrics::status(conn).await?;
        let metrics = &self.shared.metrics;
        let state = self.shared.view.current();
        let services = state.services();
        let instances: usize = services.iter().map(|s| state.instances(s).len()).sum();
        Ok(ClusterMetrics {
            broker_id: self.shared.options.id.clone(),
            leader_id: raft.leader,
            raft_term: raft.raft_term,
            raft_index: raft.raft_index,
            raft_applied_index: raft.raft_applied_index,
            registry_revision: state.revision(),
            registered_services: services.len() as u32,
            registered_instances: instances as u32,
            connected_agents: state.agents().filter(|(_, up)| *up).count() as u32,
            local_connected_clients: self.shared.local.clients().len() as u32,
            local_connected_agents: self.shared.local.agents().len() as u32,
            leader_uptime_ms: metrics
                .leader_uptime(raft.leader, raft.raft_term)
                .as_millis() as u64,
            node_states: metrics::member_states(conn).await,
            local_request_latency_us: metrics.request_latency().as_micros() as u64,
        })
    }
}

fn stream_of<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<Result<T, Status>>,
) -> BoxStream<T> {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// Mutant `bridge_no_notice_push`: draining instances reported as serving.
fn hide_draining(instances: &mut [crate::proto::linkbridge::Instance]) {
    use crate::proto::linkbridge::InstanceStatus as Wire;
    for i in instances {
        if i.status == Wire::Draining as i32 {
            i.status = Wire::Serving as i32;
            i.grace_ms = 0;
        }
    }
}

/// Mutant `bridge_replicates_clients`: client state written to the keyspace.
async fn replicate_client(shared: &Shared, client: &str) {
    let key = format!("/bridge/clients/{}/{client}", shared.options.id);
    let put = crate::proto::etcdserverpb::PutRequest {
        key: key.into_bytes(),
        value: client.as_bytes().to_vec(),
        ..Default::default()
    };
    let _ = shared.conn.put(put).await;
}

/// Completes once `flag` is raised (the value is not held across an await).
async fn raised(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}

fn checked(what: &'static str, name: &str) -> Result<(), Status> {
    check_name(what, name).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl Bridge for Broker {
    type ConnectAgentStream = BoxStream<BrokerMessage>;

    async fn connect_agent(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectAgentStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(agent_session::serve_agent(
            self.shared.clone(),
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(stream_of(rx)))
    }

    async fn discover(
        &self,
        request: Request<DiscoverRequest>,
    ) -> Result<Response<DiscoverResponse>, Status> {
        let service = request.into_inner().service;
        checked("service", &service)?;
        let state = self.shared.view.current();
        Ok(Response::new(DiscoverResponse {
            instances: wire::instances(&state.instances(&service)),
            revision: state.revision(),
        }))
    }

    async fn alternatives(
        &self,
        request: Request<AlternativesRequest>,
    ) -> Result<Response<DiscoverResponse>, Status> {
        let r = request.into_inner();
        checked("service", &r.service)?;
        let state = self.shared.view.current();
        Ok(Response::new(DiscoverResponse {
            instances: wire::instances(&state.alternatives(&r.service, &r.leaving_instance_id)),
            revision: state.revision(),
        }))
    }

    type SubscribeStream = BoxStream<RegistryUpdate>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = request.into_inner();
        for service in &r.services {
            checked("service", service)?;
        }
        if *self.shared.leaving.borrow() {
            return Err(Status::unavailable("the broker is shutting down"));
        }
        if mutants::active("bridge_replicates_clients") {
            replicate_client(&self.shared, &r.client_id).await;
        }
        let client = ClientInfo {
            client_id: r.client_id,
            services: r.services.clone(),
        };
        let seat = self
            .shared
            .local
            .seat_client(client, self.shared.options.max_clients)
            .ok_or_else(|| Status::resource_exhausted("the broker has its maximum of clients"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut changes = self.shared.view.subscribe();
        let leaving = self.shared.leaving.subscribe();
        tokio::spawn(async move {
            let _seat = seat;
            let mut sent: BTreeMap<String, Vec<crate::proto::linkbridge::Instance>> =
                BTreeMap::new();
            loop {
                let state = changes.borrow_and_update().clone();
                for service in &r.services {
                    let mut now = wire::instances(&state.instances(service));
                    if mutants::active("bridge_no_notice_push") {
                        hide_draining(&mut now);
                    }
                    if sent.get(service) == Some(&now) {
                        continue;
                    }
                    let update = RegistryUpdate {
                        service: service.clone(),
                        instances: now.clone(),
                        revision: state.revision(),
                        broker_leaving: false,
                    };
                    if tx.send(Ok(update)).is_err() {
                        return;
                    }
                    sent.insert(service.clone(), now);
                }
                tokio::select! {
                    biased;
                    _ = raised(leaving.clone()) => {
                        let _ = tx.send(Ok(RegistryUpdate {
                            broker_leaving: true,
                            ..Default::default()
                        }));
                        // The client hangs up once it has read that; until then it
                        // holds its seat, so the broker knows who has yet to go.
                        tx.closed().await;
                        return;
                    }
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(stream_of(rx)))
    }

    async fn status(
        &self,
        _request: Request<BridgeStatusRequest>,
    ) -> Result<Response<ClusterMetrics>, Status> {
        self.cluster_metrics()
            .await
            .map(Response::new)
            .map_err(|e| Status::unavailable(e.to_string()))
    }

    async fn proxy(
        &self,
        request: Request<ProxyRequest>,
    ) -> Result<Response<ProxyResponse>, Status> {
        let r = request.into_inner();
        checked("service", &r.service)?;
        let view = &self.shared.view;
        let (payload, instance_id) = self
            .shared
            .forwarder
            .forward(|| view.current(), &r.service, &r.method, r.payload.into())
            .await?;
        Ok(Response::new(ProxyResponse {
            payload: payload.to_vec(),
            instance_id,
        }))
    }
}
