//! One agent's connection to this broker (the seed's Register / Ping–Pong /
//! Shutdown Notice): the agent's lease is granted (or taken over, when it
//! reconnects from a broker that died) and renewed on every pong; its registrations
//! and notices become the bridge's commands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::{debug, warn};

use crate::client::Connection;
use crate::library::{renew_once, CoordinatorError};
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::LeaseGrantRequest;
use crate::proto::linkbridge::{
    agent_message::Body, broker_message, Ack, AgentMessage, BrokerMessage, Hello, Ping,
    RegisterInstance, Welcome,
};

use super::super::command::Command;
use super::super::error::BridgeError;
use super::super::record::{check_name, AgentRecord, InstanceRecord, InstanceStatus};
use super::super::view::read;
use super::Shared;

type Outbound = mpsc::UnboundedSender<Result<BrokerMessage, Status>>;

/// Serves one agent until its stream ends.
pub async fn serve_agent(shared: Arc<Shared>, mut inbound: Streaming<AgentMessage>, out: Outbound) {
    let hello = match inbound.message().await {
        Ok(Some(AgentMessage {
            body: Some(Body::Hello(hello)),
            ..
        })) => hello,
        Ok(_) => {
            let _ = out.send(Err(Status::invalid_argument(
                "an agent's first message must be Hello",
            )));
            return;
        }
        Err(_) => return,
    };
    let mut session = match Session::open(shared, hello).await {
        Ok(session) => session,
        Err(e) => {
            let _ = out.send(Err(Status::unavailable(e.to_string())));
            return;
        }
    };
    let welcome = broker_message::Body::Welcome(Welcome {
        broker_id: session.shared.options.id.clone(),
        lease_id: session.lease,
        ttl_ms: session.shared.options.agent_ttl.as_millis() as u64,
    });
    if send(&out, welcome).is_err() {
        return;
    }
    let _seat = session.shared.local.seat_agent(session.agent.id.clone());
    let mut ping = tokio::time::interval(session.shared.options.ping_interval);
    let mut pings = 0u64;
    loop {
        // Biased (no random branch order): the agent's messages, then the pings.
        tokio::select! {
            biased;
            message = inbound.message() => {
                let Ok(Some(message)) = message else {
                    debug!(agent = %session.agent.id, "agent stream ended");
                    return;
                };
                let seq = message.seq;
                let Some(body) = message.body else { continue };
                let leaving = matches!(body, Body::Goodbye(_));
                if let Some(answer) = session.receive(body).await {
                    if send(&out, broker_message::Body::Ack(ack(seq, answer))).is_err() {
                        return;
                    }
                }
                if leaving {
                    return;
                }
            }
            _ = ping.tick() => {
                pings += 1;
                if send(&out, broker_message::Body::Ping(Ping { seq: pings })).is_err() {
                    return;
                }
            }
        }
    }
}

fn ack(seq: u64, answer: Result<(), BridgeError>) -> Ack {
    Ack {
        seq,
        ok: answer.is_ok(),
        error: answer.err().map(|e| e.to_string()).unwrap_or_default(),
    }
}

fn send(out: &Outbound, body: broker_message::Body) -> Result<(), ()> {
    out.send(Ok(BrokerMessage { body: Some(body) }))
        .map_err(|_| ())
}

struct Session {
    shared: Arc<Shared>,
    agent: AgentRecord,
    lease: i64,
}

impl Session {
    /// Takes over the agent's lease if it is still alive, or grants a new one, and
    /// records the agent as up.
    async fn open(shared: Arc<Shared>, hello: Hello) -> Result<Session, BridgeError> {
        check_name("agent", &hello.agent_id)?;
        let mut brokers = hello.brokers;
        brokers.push(shared.options.id.clone());
        brokers.sort();
        brokers.dedup();
        let agent = AgentRecord {
            id: hello.agent_id,
            brokers,
        };
        let alive = hello.lease_id != 0
            && renew_once(&shared.conn, hello.lease_id)
                .await
                .is_ok_and(|ttl| ttl > 0);
        let lease = if alive {
            hello.lease_id
        } else {
            grant(&shared.conn, shared.options.agent_ttl).await?
        };
        let mut session = Session {
            shared,
            agent,
            lease,
        };
        session.up().await?;
        Ok(session)
    }

    async fn up(&mut self) -> Result<(), BridgeError> {
        let command = Command::AgentUp {
            agent: self.agent.clone(),
            broker: self.shared.options.id.clone(),
            lease: self.lease,
        };
        send_command(&self.shared.conn, &command).await.map(drop)
    }

    /// Acts on one agent message; `None` for a message that is not answered.
    async fn receive(&mut self, body: Body) -> Option<Result<(), BridgeError>> {
        match body {
            Body::Hello(_) => Some(Err(BridgeError::Protocol("Hello was already sent"))),
            Body::Pong(_) => {
                if let Err(e) = self.renew().await {
                    warn!(agent = %self.agent.id, error = %e, "renewing an agent's lease failed");
                }
                None
            }
            Body::Register(r) => Some(self.register(r).await),
            Body::Deregister(d) => Some(
                self.run(Command::Deregister {
                    service: d.service,
                    id: d.instance_id,
                })
                .await,
            ),
            Body::Shutdown(s) => Some(self.notice(&s.service, &s.instance_id, s.grace_ms).await),
            Body::Goodbye(_) => Some(self.leave().await),
        }
    }

    /// A pong: the agent was heard. A lease that expired meanwhile (nobody heard
    /// it for a TTL, so it is down) is replaced and the agent is up again.
    async fn renew(&mut self) -> Result<(), BridgeError> {
        let ttl = renew_once(&self.shared.conn, self.lease)
            .await
            .map_err(cluster)?;
        if ttl == 0 {
            self.lease = grant(&self.shared.conn, self.shared.options.agent_ttl).await?;
            self.up().await?;
        }
        Ok(())
    }

    async fn register(&mut self, r: RegisterInstance) -> Result<(), BridgeError> {
        let instance = InstanceRecord {
            id: r.instance_id,
            service: r.service,
            address: r.address,
            agent: self.agent.id.clone(),
            metadata: r.metadata.into_iter().collect::<BTreeMap<_, _>>(),
            status: InstanceStatus::Serving,
        };
        self.run(Command::Register { instance }).await
    }

    /// Marks the instance draining; retried while other changes to its record
    /// race with the notice.
    async fn notice(&mut self, service: &str, id: &str, grace_ms: u64) -> Result<(), BridgeError> {
        for _ in 0..5 {
            let fresh = read(&self.shared.conn).await?;
            let Some(seen) = fresh
                .instances(service)
                .into_iter()
                .find(|i| i.record.id == id && i.record.agent == self.agent.id)
            else {
                return Err(BridgeError::NotFound(format!(
                    "{service}/{id} of agent {}",
                    self.agent.id
                )));
            };
            let command = Command::ShutdownNotice {
                seen: seen.record,
                mod_revision: seen.mod_revision,
                grace_ms,
            };
            if send_command(&self.shared.conn, &command).await? {
                return Ok(());
            }
        }
        Err(BridgeError::Conflict(format!(
            "{service}/{id} kept changing"
        )))
    }

    /// Goodbye: the agent's record, liveness and instances go.
    async fn leave(&mut self) -> Result<(), BridgeError> {
        let fresh = read(&self.shared.conn).await?;
        let instances = fresh
            .services()
            .into_iter()
            .flat_map(|s| fresh.instances(s))
            .filter(|i| i.record.agent == self.agent.id)
            .map(|i| (i.record.service, i.record.id))
            .collect();
        self.run(Command::AgentLeave {
            agent: self.agent.id.clone(),
            instances,
        })
        .await
    }

    /// Sends a command whose only condition is that the agent is up.
    async fn run(&mut self, command: Command) -> Result<(), BridgeError> {
        if send_command(&self.shared.conn, &command).await? {
            Ok(())
        } else {
            Err(BridgeError::Conflict(format!(
                "agent {} is not up",
                self.agent.id
            )))
        }
    }
}

/// Sends `command` as one transaction; `Ok(false)` when its compares failed.
pub async fn send_command(conn: &Connection, command: &Command) -> Result<bool, BridgeError> {
    let txn = command.to_txn()?;
    let response = conn.txn(txn).await.map_err(|e| cluster(e.into()))?;
    Ok(response.succeeded)
}

async fn grant(conn: &Connection, ttl: Duration) -> Result<i64, BridgeError> {
    let secs = (ttl.as_millis().div_ceil(1000) as i64).max(1);
    let granted = conn
        .call(|ch, c| {
            let req = c.request(LeaseGrantRequest { ttl: secs, id: 0 });
            async move { LeaseClient::new(ch).lease_grant(req).await }
        })
        .await
        .map_err(|e| cluster(e.into()))?;
    Ok(granted.into_inner().id)
}

fn cluster(e: CoordinatorError) -> BridgeError {
    BridgeError::Cluster(e.to_string())
}
