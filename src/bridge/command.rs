//! The bridge's log entries (the seed's `Command`s), as etcd transactions: a
//! broker sends one through the client core, it is committed and applied like any
//! write, and a failed compare tells the broker that what it based it on changed.

use crate::proto::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};

use super::error::BridgeError;
use super::record::{
    agent_key, alive_key, check_name, encode, instance_key, AgentRecord, InstanceRecord,
    InstanceStatus,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An agent connected through `broker`: its record, and its liveness key bound
    /// to `lease` (the agent's heartbeats keep that lease alive). `replaced` are
    /// instances an earlier process of the agent registered: a new process fronts
    /// none of them, so they go in the same transaction.
    AgentUp {
        agent: AgentRecord,
        broker: String,
        lease: i64,
        replaced: Vec<(String, String)>,
    },
    /// The brokers an agent is connected to changed (the seed's `UpdateAgentStatus`).
    AgentStatus {
        agent: AgentRecord,
    },
    /// An agent left for good: its record, its liveness key and `instances` go.
    AgentLeave {
        agent: String,
        instances: Vec<(String, String)>,
    },
    /// Registers (or replaces) an instance; only for an agent that is up, and,
    /// when `replaces` is given, only if the instance's record is still the one
    /// at that mod revision (0: there is none) — so a registration never lands on
    /// a notice it did not see.
    Register {
        instance: InstanceRecord,
        replaces: Option<i64>,
    },
    Deregister {
        service: String,
        id: String,
    },
    /// The instance stops within `grace_ms`. `seen` is the instance record the
    /// broker read, at `mod_revision`: the notice is refused if it changed since.
    ShutdownNotice {
        seen: InstanceRecord,
        mod_revision: i64,
        grace_ms: u64,
    },
}

impl Command {
    /// The transaction that applies this command. It succeeds unless a condition
    /// named in the command's doc no longer holds.
    pub fn to_txn(&self) -> Result<TxnRequest, BridgeError> {
        match self {
            Command::AgentUp {
                agent,
                broker,
                lease,
                replaced,
            } => {
                check_agent(agent)?;
                check_name("broker", broker)?;
                let mut ops = vec![
                    put(agent_key(&agent.id), encode(agent), 0),
                    put(alive_key(&agent.id), broker.as_bytes().to_vec(), *lease),
                ];
                for (service, id) in replaced {
                    check_instance_names(service, id)?;
                    ops.push(delete(instance_key(service, id)));
                }
                Ok(unconditional(ops))
            }
            Command::AgentStatus { agent } => {
                check_agent(agent)?;
                Ok(unconditional(vec![put(
                    agent_key(&agent.id),
                    encode(agent),
                    0,
                )]))
            }
            Command::AgentLeave { agent, instances } => {
                check_name("agent", agent)?;
                let mut ops = vec![delete(agent_key(agent)), delete(alive_key(agent))];
                for (service, id) in instances {
                    check_instance_names(service, id)?;
                    ops.push(delete(instance_key(service, id)));
                }
                Ok(unconditional(ops))
            }
            Command::Register { instance, replaces } => {
                check_instance(instance)?;
                let key = instance_key(&instance.service, &instance.id);
                let mut compare = vec![
                    exists(agent_key(&instance.agent)),
                    exists(alive_key(&instance.agent)),
                ];
                compare.extend(replaces.map(|revision| mod_revision_is(key.clone(), revision)));
                Ok(TxnRequest {
                    compare,
                    success: vec![put(key, encode(instance), 0)],
                    failure: Vec::new(),
                })
            }
            Command::Deregister { service, id } => {
                check_instance_names(service, id)?;
                Ok(unconditional(vec![delete(instance_key(service, id))]))
            }
            Command::ShutdownNotice {
                seen,
                mod_revision,
                grace_ms,
            } => {
                check_instance(seen)?;
                let key = instance_key(&seen.service, &seen.id);
                let draining = InstanceRecord {
                    status: InstanceStatus::Draining {
                        grace_ms: *grace_ms,
                    },
                    ..seen.clone()
                };
                Ok(TxnRequest {
                    compare: vec![mod_revision_is(key.clone(), *mod_revision)],
                    success: vec![put(key, encode(&draining), 0)],
                    failure: Vec::new(),
                })
            }
        }
    }
}

fn check_agent(agent: &AgentRecord) -> Result<(), BridgeError> {
    check_name("agent", &agent.id)?;
    agent
        .brokers
        .iter()
        .try_for_each(|b| check_name("broker", b))
}

fn check_instance_names(service: &str, id: &str) -> Result<(), BridgeError> {
    check_name("service", service)?;
    check_name("instance", id)
}

fn check_instance(instance: &InstanceRecord) -> Result<(), BridgeError> {
    check_instance_names(&instance.service, &instance.id)?;
    check_name("agent", &instance.agent)
}

fn unconditional(success: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success,
        failure: Vec::new(),
    }
}

fn put(key: Vec<u8>, value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            lease,
            ..Default::default()
        })),
    }
}

fn delete(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key,
                ..Default::default()
            },
        )),
    }
}

/// Holds when `key` was last changed at `revision` (0: it does not exist).
fn mod_revision_is(key: Vec<u8>, revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key,
        target_union: Some(compare::TargetUnion::ModRevision(revision)),
        range_end: Vec::new(),
    }
}

/// Holds when `key` exists (etcd's `create_revision > 0`).
fn exists(key: Vec<u8>) -> Compare {
    Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Create as i32,
        key,
        target_union: Some(compare::TargetUnion::CreateRevision(0)),
        range_end: Vec::new(),
    }
}
