//! An agent (the seed's Agent): fronts service instances, keeps one connection to a
//! broker, answers its pings, and moves to the next broker when that connection
//! breaks — reconnecting with its lease, so that an agent some broker still hears
//! is never marked down. Registrations are sent again on every new connection;
//! requests in flight when a connection broke are sent on the next one (every
//! command is idempotent).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tracing::{debug, info};

use crate::proto::linkbridge::{
    agent_message::Body, bridge_client::BridgeClient, broker_message, AgentMessage,
    DeregisterInstance, Goodbye, Hello, Pong, RegisterInstance, ShutdownNotice, Welcome,
};
use crate::sync::watch;

use super::error::BridgeError;
use super::record::check_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub id: String,
    /// Brokers' addresses (`host:port`), tried in order, round and round.
    pub brokers: Vec<String>,
    /// Wait between two failed connection attempts.
    pub retry_interval: Duration,
    /// Deadline of connecting to a broker and of its Welcome.
    pub connect_timeout: Duration,
}

/// Where the agent is connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentState {
    /// The broker's id, while connected.
    pub broker: Option<String>,
    /// The agent's lease (0 before the first Welcome).
    pub lease: i64,
    /// Connections opened so far.
    pub connections: u64,
}

struct Call {
    body: Body,
    reply: oneshot::Sender<Result<(), BridgeError>>,
}

pub struct Agent {
    calls: mpsc::UnboundedSender<Call>,
    state: watch::Receiver<AgentState>,
    task: JoinHandle<()>,
}

impl Agent {
    /// Starts connecting in the background.
    pub fn start(config: AgentConfig) -> Result<Agent, BridgeError> {
        check_name("agent", &config.id)?;
        if config.brokers.is_empty() {
            return Err(BridgeError::Protocol("an agent needs at least one broker"));
        }
        let (calls, rx) = mpsc::unbounded_channel();
        let (publish, state) = watch::channel(AgentState::default());
        let task = tokio::spawn(run(config, rx, publish));
        Ok(Agent { calls, state, task })
    }

    /// Follows the agent's connection.
    pub fn state(&self) -> watch::Receiver<AgentState> {
        self.state.clone()
    }

    /// Registers an instance this agent fronts (again after every reconnect).
    pub async fn register(
        &self,
        service: &str,
        instance_id: &str,
        address: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), BridgeError> {
        self.call(Body::Register(RegisterInstance {
            service: service.into(),
            instance_id: instance_id.into(),
            address: address.into(),
            metadata,
        }))
        .await
    }

    pub async fn deregister(&self, service: &str, instance_id: &str) -> Result<(), BridgeError> {
        self.call(Body::Deregister(DeregisterInstance {
            service: service.into(),
            instance_id: instance_id.into(),
        }))
        .await
    }

    /// Tells clients the instance stops within `grace` (they move off it now).
    pub async fn shutdown_notice(
        &self,
        service: &str,
        instance_id: &str,
        grace: Duration,
    ) -> Result<(), BridgeError> {
        self.call(Body::Shutdown(ShutdownNotice {
            service: service.into(),
            instance_id: instance_id.into(),
            grace_ms: grace.as_millis() as u64,
        }))
        .await
    }

    /// Leaves for good: the agent and its instances are removed.
    pub async fn leave(self) -> Result<(), BridgeError> {
        self.call(Body::Goodbye(Goodbye {})).await
    }

    async fn call(&self, body: Body) -> Result<(), BridgeError> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call { body, reply })
            .map_err(|_| BridgeError::Protocol("the agent has stopped"))?;
        answer
            .await
            .map_err(|_| BridgeError::Protocol("the agent has stopped"))?
    }
}

impl Drop for Agent {
    /// Stops answering pings: unless it left, the agent is down once its lease
    /// expires.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a connection ended.
enum Ended {
    /// Broken: try the next broker after the retry interval.
    Lost,
    /// The broker shut down and said so: the next broker now.
    Moved,
    /// The agent left or was dropped.
    Done,
}

async fn run(
    config: AgentConfig,
    mut calls: mpsc::UnboundedReceiver<Call>,
    publish: watch::Sender<AgentState>,
) {
    let mut registered: BTreeMap<(String, String), RegisterInstance> = BTreeMap::new();
    // Calls sent on a connection that broke before their ack, in order.
    let mut unanswered: Vec<Call> = Vec::new();
    let mut state = AgentState::default();
    for attempt in 0usize.. {
        let addr = &config.brokers[attempt % config.brokers.len()];
        let mut connection = Connection {
            config: &config,
            registered: &mut registered,
            unanswered: &mut unanswered,
            state: &mut state,
            publish: &publish,
        };
        match connection.serve(addr, &mut calls).await {
            Ended::Done => return,
            Ended::Moved => {
                state.broker = None;
                publish.send_replace(state.clone());
            }
            Ended::Lost => {
                state.broker = None;
                publish.send_replace(state.clone());
                tokio::time::sleep(config.retry_interval).await;
            }
        }
    }
}

struct Connection<'a> {
    config: &'a AgentConfig,
    registered: &'a mut BTreeMap<(String, String), RegisterInstance>,
    unanswered: &'a mut Vec<Call>,
    state: &'a mut AgentState,
    publish: &'a watch::Sender<AgentState>,
}

impl Connection<'_> {
    async fn serve(&mut self, addr: &str, calls: &mut mpsc::UnboundedReceiver<Call>) -> Ended {
        let Some((out, mut inbound, welcome)) = self.open(addr).await else {
            return Ended::Lost;
        };
        info!(agent = %self.config.id, broker = %welcome.broker_id, lease = welcome.lease_id, "agent connected");
        let welcome_ttl_ms = welcome.ttl_ms;
        self.state.broker = Some(welcome.broker_id);
        self.state.lease = welcome.lease_id;
        self.state.connections += 1;
        self.publish.send_replace(self.state.clone());

        let mut seq = 1u64;
        let mut pending: BTreeMap<u64, Call> = BTreeMap::new();
        let mut send = |body: Body, reply: Option<Call>, pending: &mut BTreeMap<u64, Call>| {
            seq += 1;
            if let Some(call) = reply {
                pending.insert(seq, call);
            }
            out.send(AgentMessage {
                seq,
                body: Some(body),
            })
            .is_ok()
        };
        // The registrations again (their acks are not waited for), then what the
        // last connection left unanswered.
        for r in self.registered.values() {
            send(Body::Register(r.clone()), None, &mut pending);
        }
        for call in std::mem::take(self.unanswered) {
            send(call.body.clone(), Some(call), &mut pending);
        }
        // A broker pings every third of the TTL; one silent for half the TTL is
        // unreachable (a stream over a dead link does not always break), and the
        // agent moves on while its lease can still be taken over.
        let silence = Duration::from_millis((welcome_ttl_ms / 2).max(1));
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                message = inbound.message() => {
                    heard = tokio::time::Instant::now();
                    let Ok(Some(message)) = message else {
                        debug!(agent = %self.config.id, addr, "connection to the broker lost");
                        self.unanswered.extend(pending.into_values());
                        return Ended::Lost;
                    };
                    match message.body {
                        Some(broker_message::Body::Ping(p)) => {
                            send(Body::Pong(Pong { ping: p.seq }), None, &mut pending);
                        }
                        Some(broker_message::Body::Leaving(_)) => {
                            debug!(agent = %self.config.id, addr, "the broker is leaving");
                            self.unanswered.extend(pending.into_values());
                            return Ended::Moved;
                        }
                        Some(broker_message::Body::Ack(ack)) => {
                            if let Some(call) = pending.remove(&ack.seq) {
                                let answer = if ack.ok { Ok(()) } else { Err(BridgeError::Refused(ack.error)) };
                                self.remember(&call.body, answer.is_ok());
                                let leaving = matches!(call.body, Body::Goodbye(_));
                                let _ = call.reply.send(answer);
                                if leaving {
                                    return Ended::Done;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(heard + silence) => {
                    debug!(agent = %self.config.id, addr, "the broker went silent");
                    self.unanswered.extend(pending.into_values());
                    return Ended::Lost;
                }
                call = calls.recv() => {
                    let Some(call) = call else { return Ended::Done };
                    if let Body::Shutdown(n) = &call.body {
                        // From the moment its notice is sent, a reconnect must not
                        // register the instance again (serving over draining).
                        self.registered.remove(&(n.service.clone(), n.instance_id.clone()));
                    }
                    let body = call.body.clone();
                    if !send(body, Some(call), &mut pending) {
                        self.unanswered.extend(pending.into_values());
                        return Ended::Lost;
                    }
                }
            }
        }
    }

    /// Keeps the registrations to send again on the next connection.
    fn remember(&mut self, body: &Body, ok: bool) {
        match body {
            Body::Register(r) if ok => {
                self.registered
                    .insert((r.service.clone(), r.instance_id.clone()), r.clone());
            }
            Body::Deregister(d) => {
                self.registered
                    .remove(&(d.service.clone(), d.instance_id.clone()));
            }
            _ => {}
        }
    }

    /// Connects, says Hello with the lease so far, and waits for the Welcome.
    async fn open(
        &mut self,
        addr: &str,
    ) -> Option<(
        mpsc::UnboundedSender<AgentMessage>,
        tonic::Streaming<crate::proto::linkbridge::BrokerMessage>,
        Welcome,
    )> {
        let timeout = self.config.connect_timeout;
        let channel = tokio::time::timeout(timeout, connect(addr)).await.ok()??;
        let (out, rx) = mpsc::unbounded_channel::<AgentMessage>();
        let hello = Hello {
            agent_id: self.config.id.clone(),
            brokers: Vec::new(),
            lease_id: self.state.lease,
        };
        out.send(AgentMessage {
            seq: 1,
            body: Some(Body::Hello(hello)),
        })
        .ok()?;
        let outbound = futures::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        });
        let opened = async {
            let mut inbound = BridgeClient::new(channel)
                .connect_agent(outbound)
                .await
                .ok()?
                .into_inner();
            match inbound.message().await {
                Ok(Some(crate::proto::linkbridge::BrokerMessage {
                    body: Some(broker_message::Body::Welcome(welcome)),
                })) => Some((inbound, welcome)),
                _ => None,
            }
        };
        let (inbound, welcome) = tokio::time::timeout(timeout, opened).await.ok()??;
        Some((out, inbound, welcome))
    }
}

async fn connect(addr: &str) -> Option<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()
}
