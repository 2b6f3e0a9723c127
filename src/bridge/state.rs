//! A broker's view of the replicated registry (the seed's `ClusterState`): built
//! from one range read of `/bridge/` and the watch events after it, so that at any
//! moment it is the registry as of one committed revision, never a mix.

use std::collections::BTreeMap;

use crate::library::KeyEvent;
use crate::proto::mvccpb::KeyValue;

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
    /// The registry from a range read of `/bridge/` at `revision`, and the records
    /// it could not read (left out, each error naming its key).
    pub fn from_range(kvs: &[KeyValue], revision: i64) -> (Self, Vec<BridgeError>) {
        let mut state = ClusterState::default();
        let errors = kvs
            .iter()
            .filter_map(|kv| state.put(&kv.key, &kv.value, kv.mod_revision).err())
            .collect();
        state.revision = revision;
        (state, errors)
    }

    /// The revision this view is the registry of.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Applies one watch event. Events arrive in revision order; one older than the
    /// view is refused and changes nothing (the view would mix two histories). A
    /// record that does not decode is an error and leaves its key absent.
    pub fn apply(&mut self, event: &KeyEvent) -> Result<(), BridgeError> {
        if event.revision < self.revision {
            return Err(BridgeError::StaleEvent {
                event: event.revision,
                view: self.revision,
            });
        }
        self.revision = event.revision;
        if event.deleted {
            self.delete(&event.key)
        } else {
            self.put(&event.key, &event.value, event.revision)
        }
    }

    /// Moves the view to `revision` once every event up to it was applied (a watch
    /// response's header revision).
    pub fn advance_to(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    fn put(&mut self, key: &[u8], value: &[u8], mod_revision: i64) -> Result<(), BridgeError> {
        let parsed = parse_key(key)?;
        // Whatever the key held before is gone, even if the new value is unreadable.
        self.remove(&parsed);
        match parsed {
            BridgeKey::Agent(id) => {
                let record = decode_agent(&id, value)?;
                self.agents.insert(id, record);
            }
            BridgeKey::Alive(id) => {
                self.alive
                    .insert(id, String::from_utf8_lossy(value).into_owned());
            }
            BridgeKey::Instance { service, id } => {
                let record = decode_instance(&service, &id, value)?;
                self.instances.insert((service, id), (record, mod_revision));
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), BridgeError> {
        self.remove(&parse_key(key)?);
        Ok(())
    }

    fn remove(&mut self, key: &BridgeKey) {
        match key {
            BridgeKey::Agent(id) => {
                self.agents.remove(id);
            }
            BridgeKey::Alive(id) => {
                self.alive.remove(id);
            }
            BridgeKey::Instance { service, id } => {
                self.instances.remove(&(service.clone(), id.clone()));
            }
        }
    }

    /// The instances `agent` fronts, as (service, id).
    pub fn instances_of(&self, agent: &str) -> Vec<(String, String)> {
        self.instances
            .iter()
            .filter(|(_, (record, _))| record.agent == agent)
            .map(|(key, _)| key.clone())
            .collect()
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
