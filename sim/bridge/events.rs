//! What the Link Bridge workload (`sim/bridge/`) puts in the trace. Declared from
//! `sim/trace.rs` (as `trace::BridgeEvent`) so the pure checkers can read it. An
//! event's trace node is the host that saw it (a broker, an agent, a client; 0 for
//! the harness's own control and audit).

use coordlab::bridge::{ClusterState, Status};
use serde::Serialize;

/// One instance as a registry shows it: (service, instance id, agent, status),
/// status `serving`, `draining` or `down`.
pub type ShownInstance = (String, String, String, String);

/// A registry as of one revision, in the few words the checkers compare.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct RegistrySummary {
    /// Sorted by (service, id).
    pub instances: Vec<ShownInstance>,
    /// Agents that are up, sorted.
    pub agents_up: Vec<String>,
}

impl RegistrySummary {
    /// The registry `state` shows.
    pub fn of(state: &ClusterState) -> RegistrySummary {
        let mut instances = Vec::new();
        for service in state.services() {
            for i in state.instances(service) {
                let status = match i.status {
                    Status::Serving => "serving",
                    Status::Draining { .. } => "draining",
                    Status::Down => "down",
                };
                instances.push((
                    i.record.service.clone(),
                    i.record.id.clone(),
                    i.record.agent.clone(),
                    status.to_string(),
                ));
            }
        }
        instances.sort();
        let mut agents_up: Vec<String> = state
            .agents()
            .filter(|(_, up)| *up)
            .map(|(a, _)| a.id.clone())
            .collect();
        agents_up.sort();
        RegistrySummary {
            instances,
            agents_up,
        }
    }

    /// `service`'s instances as (id, status), sorted.
    pub fn of_service(&self, service: &str) -> Vec<(String, String)> {
        let mut shown: Vec<(String, String)> = self
            .instances
            .iter()
            .filter(|(s, _, _, _)| s == service)
            .map(|(_, id, _, status)| (id.clone(), status.clone()))
            .collect();
        shown.sort();
        shown
    }

    /// The status of `service`/`id`, if the registry holds it.
    pub fn status(&self, service: &str, id: &str) -> Option<&str> {
        self.instances
            .iter()
            .find(|(s, i, _, _)| s == service && i == id)
            .map(|(_, _, _, status)| status.as_str())
    }
}

/// One committed change under the bridge's prefix, as the end-of-run audit read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RegistryChange {
    pub revision: i64,
    pub key: String,
    /// The value as written (JSON records; the broker id for a liveness key).
    pub value: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BridgeEvent {
    /// A broker serves (again, after a crash), with its registry view started.
    BrokerStarted { broker: String },
    /// The harness stops the broker gracefully: it tells its clients and agents
    /// to move (`Broker::leave`), then its host is killed (`BrokerCrashed`).
    BrokerStopping { broker: String },
    /// The harness killed the broker's host.
    BrokerCrashed { broker: String },
    /// The broker's registry view published the registry as of `revision`.
    BrokerViewed {
        broker: String,
        revision: i64,
        registry: RegistrySummary,
    },
    /// An agent (re)started on its host.
    AgentStarted { agent: String },
    /// The harness killed the agent's host: the agent and its instance stopped.
    AgentCrashed { agent: String },
    /// The harness cut the agent off from `brokers` for `for_ms`.
    AgentCutOff {
        agent: String,
        brokers: Vec<String>,
        for_ms: u64,
    },
    /// The agent's links to every broker are back.
    AgentReconnected { agent: String },
    /// The agent's connection changed: connected to `broker` (None: looking for one).
    AgentConnected {
        agent: String,
        broker: Option<String>,
    },
    /// The agent's `register` of an instance it fronts ended with `outcome`.
    InstanceRegistered {
        agent: String,
        service: String,
        instance: String,
        outcome: String,
    },
    /// The agent's `shutdown_notice`, called at `sent_ms`, ended with `outcome`;
    /// the instance stops `grace_ms` after it.
    NoticeSent {
        sent_ms: u64,
        agent: String,
        service: String,
        instance: String,
        grace_ms: u64,
        outcome: String,
    },
    /// The agent's `deregister` ended with `outcome`.
    InstanceDeregistered {
        agent: String,
        service: String,
        instance: String,
        outcome: String,
    },
    /// The instance's server stopped: nothing reaches it any more.
    InstanceStopped { instance: String },
    /// A call from `client` reached the instance's address: answered, or
    /// `refused` because the instance had stopped (madsim lets a connection the
    /// server accepted outlive the server, so a stopped instance refuses itself).
    CallReceived {
        instance: String,
        client: String,
        refused: bool,
    },
    /// A client subscribed to `service`; the bounds its checkers hold it to.
    ClientStarted {
        client: String,
        service: String,
        notice_bound_ms: u64,
        failover_bound_ms: u64,
    },
    /// The client's view changed: on `broker` (None: between brokers), `service`
    /// as of `revision`, its instances as (id, status).
    ClientViewed {
        client: String,
        broker: Option<String>,
        service: String,
        revision: i64,
        instances: Vec<(String, String)>,
    },
    /// The client stopped: calls answered and failed over the whole run.
    ClientEnded {
        client: String,
        ok: u64,
        failed: u64,
    },
    /// End of run: every committed change under `/bridge/` from revision 1 through
    /// `through_revision` (read once the cluster had healed), or why not.
    CommittedHistory {
        through_revision: i64,
        changes: Vec<RegistryChange>,
        error: Option<String>,
    },
    /// End of run: every distinct (key, value) written under `/bridge/` by the log
    /// entries (`source` `log`) or held by the snapshot (`snapshot`) on member
    /// `member`'s disk, decoded by the storage engine's recovery.
    DurableWrites {
        member: u64,
        source: String,
        entries: u64,
        writes: Vec<(String, String)>,
    },
    /// The bridge workload ended (every bridge checker's end-of-run cue).
    Ended {
        agent_ttl_ms: u64,
        down_bound_ms: u64,
    },
}

impl BridgeEvent {
    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            BridgeEvent::BrokerViewed {
                broker,
                revision,
                registry,
            } => format!(
                "bridge: {broker} views revision {revision}: {} instances, agents up {:?}",
                registry.instances.len(),
                registry.agents_up
            ),
            BridgeEvent::CommittedHistory {
                through_revision,
                changes,
                error,
            } => format!(
                "bridge: committed history through {through_revision}: {} changes{}",
                changes.len(),
                error
                    .as_ref()
                    .map(|e| format!(" (error: {e})"))
                    .unwrap_or_default()
            ),
            BridgeEvent::DurableWrites {
                member,
                source,
                entries,
                writes,
            } => format!(
                "bridge: member {member}'s {source}: {entries} entries, {} bridge writes",
                writes.len()
            ),
            other => format!(
                "bridge: {}",
                serde_json::to_string(other).unwrap_or_default()
            ),
        }
    }
}
