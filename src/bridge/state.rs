//! A broker's view of the replicated registry (the seed's `ClusterState`): built
//! from one range read of `/bridge/` and the watch events after it, so that at any
//! moment it is the registry as of one committed revision, never a mix.

use std::collections::BTreeMap;

use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

use super::error::BridgeError;
use super::record::{
    decode_agent, decode_instance, parse_key, AgentRecord, BridgeKey, InstanceRecord,
    InstanceStatus,
};

/// An instance's status as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Serving,
    Draining {
        grace_ms: u64,
    },
    /// Its agent is not up (its lease expired or it left).
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub record: InstanceRecord,
    pub status: Status,
    /// The revision of the record's last change (a shutdown notice compares it).
    pub mod_revision: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    revision: i64,
    agents: BTreeMap<String, AgentRecord>,
    /// Agents whose liveness key exists → the broker that relayed their connect.
    alive: BTreeMap<String, String>,
    /// (service, instance id) → record and its mod revision.
    instances: BTreeMap<(String, String), (InstanceRecord, i64)>,
}

impl ClusterState {
    /// The registry from a range read of `/bridge/` at `revision`.
    pub fn from_range(kvs: &[KeyValue], revision: i64) -> Result<Self, BridgeError> {
        let mut state = ClusterState::default();
        for kv in kvs {
            state.put(kv)?;
        }
        state.revision = revision;
        Ok(state)
    }

    /// The revision this view is the registry of.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Applies one watch event. Events arrive in revision order; one older than the
    /// view is refused (the view would mix two histories).
    pub fn apply(&mut self, event: &Event) -> Result<(), BridgeError> {
        let Some(kv) = &event.kv else {
            return Ok(());
        };
        if kv.mod_revision < self.revision {
            return Err(BridgeError::StaleEvent {
                event: kv.mod_revision,
                view: self.revision,
            });
        }
        if event.r#type == EventType::Delete as i32 {
            self.delete(&kv.key)?;
        } else {
            self.put(kv)?;
        }
        self.revision = kv.mod_revision;
        Ok(())
    }

    /// Moves the view to `revision` once every event up to it was applied (a watch
    /// response's header revision).
    pub fn advance_to(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    fn put(&mut self, kv: &KeyValue) -> Result<(), BridgeError> {
        match parse_key(&kv.key)? {
            BridgeKey::Agent(id) => {
                let record = decode_agent(&id, &kv.value)?;
                self.agents.insert(id, record);
            }
            BridgeKey::Alive(id) => {
                self.alive
                    .insert(id, String::from_utf8_lossy(&kv.value).into_owned());
            }
            BridgeKey::Instance { service, id } => {
                let record = decode_instance(&service, &id, &kv.value)?;
                self.instances
                    .insert((service, id), (record, kv.mod_revision));
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), BridgeError> {
        match parse_key(key)? {
            BridgeKey::Agent(id) => {
                self.agents.remove(&id);
            }
            BridgeKey::Alive(id) => {
                self.alive.remove(&id);
            }
            BridgeKey::Instance { service, id } => {
                self.instances.remove(&(service, id));
            }
        }
        Ok(())
    }

    /// Whether `agent` is up: its liveness key exists.
    pub fn agent_up(&self, agent: &str) -> bool {
        self.alive.contains_key(agent)
    }

    /// Every known agent with whether it is up, by id.
    pub fn agents(&self) -> impl Iterator<Item = (&AgentRecord, bool)> {
        self.agents.values().map(|a| (a, self.agent_up(&a.id)))
    }

    /// Services with at least one instance, by name.
    pub fn services(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.instances.keys().map(|(s, _)| s.as_str()).collect();
        names.dedup();
        names
    }

    /// Every instance of `service`, by id.
    pub fn instances(&self, service: &str) -> Vec<Instance> {
        self.instances
            .range((service.to_string(), String::new())..)
            .take_while(|((s, _), _)| s == service)
            .map(|(_, (record, mod_revision))| Instance {
                status: self.status(record),
                record: record.clone(),
                mod_revision: *mod_revision,
            })
            .collect()
    }

    /// The instances of `service` a client may call now.
    pub fn serving(&self, service: &str) -> Vec<Instance> {
        let mut all = self.instances(service);
        all.retain(|i| i.status == Status::Serving);
        all
    }

    /// Where a client of `service` goes instead of instance `leaving` (the seed's
    /// "Get Alternatives").
    pub fn alternatives(&self, service: &str, leaving: &str) -> Vec<Instance> {
        let mut all = self.serving(service);
        all.retain(|i| i.record.id != leaving);
        all
    }

    fn status(&self, record: &InstanceRecord) -> Status {
        if !self.agent_up(&record.agent) {
            return Status::Down;
        }
        match record.status {
            InstanceStatus::Serving => Status::Serving,
            InstanceStatus::Draining { grace_ms } => Status::Draining { grace_ms },
        }
    }
}
