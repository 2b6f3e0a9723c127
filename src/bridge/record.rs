//! The bridge's keys and the JSON records they hold.
//!
//! - `/bridge/agents/<agent>`: [`AgentRecord`], no lease (an agent that went down
//!   stays listed, as down);
//! - `/bridge/alive/<agent>`: the id of the broker that relayed the agent's last
//!   connect, bound to the agent's lease: present means up;
//! - `/bridge/instances/<service>/<instance>`: [`InstanceRecord`], no lease (its
//!   status is down while its agent is).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::BridgeError;

/// Everything the bridge writes is under this prefix.
pub const PREFIX: &str = "/bridge/";
const AGENTS: &str = "/bridge/agents/";
const ALIVE: &str = "/bridge/alive/";
const INSTANCES: &str = "/bridge/instances/";

/// Longest name or id accepted as a key segment.
const MAX_NAME: usize = 128;

pub fn agent_key(agent: &str) -> Vec<u8> {
    format!("{AGENTS}{agent}").into_bytes()
}

pub fn alive_key(agent: &str) -> Vec<u8> {
    format!("{ALIVE}{agent}").into_bytes()
}

pub fn instance_key(service: &str, id: &str) -> Vec<u8> {
    format!("{INSTANCES}{service}/{id}").into_bytes()
}

/// Where the instances of `service` live.
pub fn service_prefix(service: &str) -> Vec<u8> {
    format!("{INSTANCES}{service}/").into_bytes()
}

/// Refuses names that would not round-trip through a key: empty, too long, with a
/// `/` (the separator) or a control character.
pub fn check_name(what: &'static str, value: &str) -> Result<(), BridgeError> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.len() > MAX_NAME {
        "it is longer than 128 bytes"
    } else if value.contains('/') {
        "it contains `/`"
    } else if value.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(BridgeError::InvalidName {
        what,
        value: value.to_string(),
        reason,
    })
}

/// An agent and the brokers it is connected to (the seed's `AgentInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    /// Ids of the brokers the agent holds connections to, sorted.
    pub brokers: Vec<String>,
}

/// What an instance's own record says; `Down` is not stored but derived from its
/// agent's liveness ([`crate::bridge::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum InstanceStatus {
    Serving,
    /// A shutdown notice: the instance stops within `grace_ms` of the notice.
    Draining {
        grace_ms: u64,
    },
}

/// One instance of a service (the seed's `ServiceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub service: String,
    /// `host:port` where the instance serves gRPC.
    pub address: String,
    /// The agent that fronts it.
    pub agent: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(flatten)]
    pub status: InstanceStatus,
}

/// A key of the layout, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeKey {
    Agent(String),
    Alive(String),
    Instance { service: String, id: String },
}

pub fn parse_key(key: &[u8]) -> Result<BridgeKey, BridgeError> {
    let text = String::from_utf8_lossy(key);
    let unknown = || BridgeError::UnknownKey {
        key: text.to_string(),
    };
    let name = |rest: &str| -> Result<String, BridgeError> {
        check_name("key segment", rest).map_err(|_| unknown())?;
        Ok(rest.to_string())
    };
    if let Some(rest) = text.strip_prefix(AGENTS) {
        Ok(BridgeKey::Agent(name(rest)?))
    } else if let Some(rest) = text.strip_prefix(ALIVE) {
        Ok(BridgeKey::Alive(name(rest)?))
    } else if let Some(rest) = text.strip_prefix(INSTANCES) {
        let (service, id) = rest.split_once('/').ok_or_else(unknown)?;
        Ok(BridgeKey::Instance {
            service: name(service)?,
            id: name(id)?,
        })
    } else {
        Err(unknown())
    }
}

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records are plain data")
}

/// Decodes the agent record at `/bridge/agents/<id>`; its id must be the key's.
pub fn decode_agent(id: &str, value: &[u8]) -> Result<AgentRecord, BridgeError> {
    let record: AgentRecord = decode(&agent_key(id), value)?;
    if record.id != id {
        return Err(mismatch(&agent_key(id), "its id is not the key's"));
    }
    Ok(record)
}

/// Decodes the instance record at `/bridge/instances/<service>/<id>`.
pub fn decode_instance(
    service: &str,
    id: &str,
    value: &[u8],
) -> Result<InstanceRecord, BridgeError> {
    let key = instance_key(service, id);
    let record: InstanceRecord = decode(&key, value)?;
    if record.id != id || record.service != service {
        return Err(mismatch(&key, "its service or id is not the key's"));
    }
    Ok(record)
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], value: &[u8]) -> Result<T, BridgeError> {
    serde_json::from_slice(value).map_err(|e| BridgeError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn mismatch(key: &[u8], reason: &str) -> BridgeError {
    BridgeError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> InstanceRecord {
        InstanceRecord {
            id: "i1".into(),
            service: "echo".into(),
            address: "10.0.0.1:50051".into(),
            agent: "a1".into(),
            metadata: BTreeMap::from([("zone".into(), "b".into())]),
            status: InstanceStatus::Draining { grace_ms: 3000 },
        }
    }

    #[test]
    fn keys_parse_back_to_what_made_them() {
        assert_eq!(
            parse_key(&agent_key("a1")),
            Ok(BridgeKey::Agent("a1".into()))
        );
        assert_eq!(
            parse_key(&alive_key("a1")),
            Ok(BridgeKey::Alive("a1".into()))
        );
        assert_eq!(
            parse_key(&instance_key("echo", "i1")),
            Ok(BridgeKey::Instance {
                service: "echo".into(),
                id: "i1".into()
            })
        );
        assert!(instance_key("echo", "i1").starts_with(&service_prefix("echo")));
    }

    #[test]
    fn keys_outside_the_layout_are_refused_by_name() {
        for key in [
            "/bridge/other/x",
            "/bridge/instances/echo",
            "/bridge/instances/echo/i1/extra",
            "/bridge/agents/",
            "/services/echo/i1",
        ] {
            match parse_key(key.as_bytes()) {
                Err(BridgeError::UnknownKey { key: named }) => assert_eq!(named, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_that_cannot_be_key_segments_are_refused() {
        assert!(check_name("service", "echo-v2.svc").is_ok());
        for bad in ["", "a/b", "tab\there", &"x".repeat(129)] {
            let err = check_name("service", bad).unwrap_err();
            assert!(err.to_string().starts_with("service `"), "{err}");
        }
    }

    #[test]
    fn records_round_trip_and_the_status_reads_as_json_users_expect() {
        let record = instance();
        let bytes = encode(&record);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["status"], "draining");
        assert_eq!(json["grace_ms"], 3000);
        assert_eq!(decode_instance("echo", "i1", &bytes), Ok(record));
        let agent = AgentRecord {
            id: "a1".into(),
            brokers: vec!["b1".into(), "b2".into()],
        };
        assert_eq!(decode_agent("a1", &encode(&agent)), Ok(agent));
    }

    #[test]
    fn a_record_under_the_wrong_key_or_garbage_is_a_decode_error_naming_the_key() {
        let bytes = encode(&instance());
        match decode_instance("echo", "i2", &bytes) {
            Err(BridgeError::Decode { key, .. }) => assert_eq!(key, "/bridge/instances/echo/i2"),
            other => panic!("{other:?}"),
        }
        match decode_agent("a1", b"{not json") {
            Err(BridgeError::Decode { key, reason }) => {
                assert_eq!(key, "/bridge/agents/a1");
                assert!(!reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
