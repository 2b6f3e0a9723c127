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
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{LeaseGrantRequest, RangeRequest};
use crate::proto::linkbridge::{
    agent_message::Body, broker_message, Ack, AgentMessage, BrokerMessage, Hello, Leaving, Ping,
    RegisterInstance, Welcome,
};
use crate::seams::mutants;

use super::super::command::Command;
use super::super::error::BridgeError;
use super::super::record::{
    check_name, decode_instance, instance_key, AgentRecord, InstanceRecord, InstanceStatus,
};
use super::super::view::read;
use super::{raised, Shared};

/// Attempts of a command that raced with another change to its record.
const RACE_ATTEMPTS: usize = 5;

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
    if *shared.leaving.borrow() {
        let _ = out.send(Err(Status::unavailable("the broker is shutting down")));
        return;
    }
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
    let leaving = session.shared.leaving.subscribe();
    loop {
        // Biased (no random branch order): leaving, the agent's messages, pings.
        tokio::select! {
            biased;
            _ = raised(leaving.clone()) => {
                let _ = send(&out, broker_message::Body::Leaving(Leaving {}));
                // The agent hangs up once it has read that; until then it holds
                // its seat, so the broker knows who has yet to go.
                while let Ok(Some(_)) = inbound.message().await {}
                return;
            }
            message = inbound.message() => {
                let Ok(Some(message)) = message else {
                    debug!(agent = %session.agent.id, "agent stream ended");
                    if mutants::active("bridge_broker_expires_agents") {
                        tokio::spawn(mark_down_on_own_clock(session.shared.clone(), session.agent.id.clone()));
                    }
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

/// Mutant `bridge_broker_expires_agents`: this broker decides, on its own clock,
/// that an agent it stopped hearing is down, though another broker may hear it.
async fn mark_down_on_own_clock(shared: Arc<Shared>, agent: String) {
    tokio::time::sleep(shared.options.agent_ttl).await;
    let delete = crate::proto::etcdserverpb::DeleteRangeRequest {
        key: super::super::record::alive_key(&agent),
        ..Default::default()
    };
    let _ = shared.conn.delete_range(delete).await;
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
        // No lease from an earlier connection: a new process of the agent, which
        // fronts none of the instances an earlier one registered.
        let replaced = if hello.lease_id == 0 {
            read(&shared.conn).await?.instances_of(&agent.id)
        } else {
            Vec::new()
        };
        let mut session = Session {
            shared,
            agent,
            lease,
        };
        session.up(replaced).await?;
        Ok(session)
    }

    async fn up(&mut self, replaced: Vec<(String, String)>) -> Result<(), BridgeError> {
        let command = Command::AgentUp {
            agent: self.agent.clone(),
            broker: self.shared.options.id.clone(),
            lease: self.lease,
            replaced,
        };
        self.shared
            .metrics
            .timed(send_command(&self.shared.conn, &command))
            .await
            .map(drop)
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
    /// it for a TTL, so it is down) is replaced and the agent is up again. So is
    /// a liveness key that went with another lease: a session the agent had
    /// already abandoned (its Hello processed after the agent gave up waiting)
    /// may have bound the key to a lease that nobody renews.
    async fn renew(&mut self) -> Result<(), BridgeError> {
        let ttl = self
            .shared
            .metrics
            .timed(renew_once(&self.shared.conn, self.lease))
            .await
            .map_err(cluster)?;
        if ttl == 0 {
            self.lease = grant(&self.shared.conn, self.shared.options.agent_ttl).await?;
            self.up(Vec::new()).await?;
        } else if !self.shared.view.current().agent_up(&self.agent.id) {
            self.up(Vec::new()).await?;
        }
        Ok(())
    }

    /// Registers (or re-registers) an instance of this agent. A draining one is
    /// refused: a shutdown notice is final (a registration resent from an earlier
    /// connection must not make it serving again), and the registration lands
    /// only on the record it read.
    async fn register(&mut self, r: RegisterInstance) -> Result<(), BridgeError> {
        let instance = InstanceRecord {
            id: r.instance_id,
            service: r.service,
            address: r.address,
            agent: self.agent.id.clone(),
            metadata: r.metadata.into_iter().collect::<BTreeMap<_, _>>(),
            status: InstanceStatus::Serving,
        };
        for _ in 0..RACE_ATTEMPTS {
            let seen = read_instance(&self.shared.conn, &instance.service, &instance.id).await?;
            if let Some((record, _)) = &seen {
                if matches!(record.status, InstanceStatus::Draining { .. }) {
                    return Err(BridgeError::Conflict(format!(
                        "{}/{} is draining: a shutdown notice is final",
                        instance.service, instance.id
                    )));
                }
            }
            let command = Command::Register {
                instance: instance.clone(),
                replaces: Some(seen.map_or(0, |(_, revision)| revision)),
            };
            if self
                .shared
                .metrics
                .timed(send_command(&self.shared.conn, &command))
                .await?
            {
                return Ok(());
            }
            if !read(&self.shared.conn).await?.agent_up(&self.agent.id) {
                return Err(self.not_up());
            }
        }
        Err(BridgeError::Conflict(format!(
            "{}/{} kept changing",
            instance.service, instance.id
        )))
    }

    /// Marks the instance draining; retried while other changes to its record
    /// race with the notice.
    async fn notice(&mut self, service: &str, id: &str, grace_ms: u64) -> Result<(), BridgeError> {
        for _ in 0..RACE_ATTEMPTS {
            let seen = read_instance(&self.shared.conn, service, id)
                .await?
                .filter(|(record, _)| record.agent == self.agent.id);
            let Some((record, mod_revision)) = seen else {
                return Err(BridgeError::NotFound(format!(
                    "{service}/{id} of agent {}",
                    self.agent.id
                )));
            };
            let command = Command::ShutdownNotice {
                seen: record,
                mod_revision,
                grace_ms,
            };
            if self
                .shared
                .metrics
                .timed(send_command(&self.shared.conn, &command))
                .await?
            {
                return Ok(());
            }
        }
        Err(BridgeError::Conflict(format!(
            "{service}/{id} kept changing"
        )))
    }

    fn not_up(&self) -> BridgeError {
        BridgeError::Conflict(format!("agent {} is not up", self.agent.id))
    }

    /// Goodbye: the agent's record, liveness and instances go.
    async fn leave(&mut self) -> Result<(), BridgeError> {
        let instances = read(&self.shared.conn).await?.instances_of(&self.agent.id);
        self.run(Command::AgentLeave {
            agent: self.agent.id.clone(),
            instances,
        })
        .await
    }

    /// Sends a command whose only condition is that the agent is up.
    async fn run(&mut self, command: Command) -> Result<(), BridgeError> {
        if self
            .shared
            .metrics
            .timed(send_command(&self.shared.conn, &command))
            .await?
        {
            Ok(())
        } else {
            Err(self.not_up())
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

/// An instance's record and its mod revision, read linearizably (None: absent).
async fn read_instance(
    conn: &Connection,
    service: &str,
    id: &str,
) -> Result<Option<(InstanceRecord, i64)>, BridgeError> {
    let key = instance_key(service, id);
    let response = conn
        .call(|ch, c| {
            let req = c.request(RangeRequest {
                key: key.clone(),
                ..Default::default()
            });
            async move { KvClient::new(ch).range(req).await }
        })
        .await
        .map_err(|e| cluster(e.into()))?
        .into_inner();
    response
        .kvs
        .first()
        .map(|kv| decode_instance(service, id, &kv.value).map(|r| (r, kv.mod_revision)))
        .transpose()
}
