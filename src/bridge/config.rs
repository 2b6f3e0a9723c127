//! The broker configuration file, in the seed's YAML shape:
//!
//! ```yaml
//! broker:
//!   node: { id: "broker-1", address: "127.0.0.1:5000", dataDir: "/var/lib/bridge" }
//!   cluster:
//!     raft:
//!       port: 7000
//!       electionTimeout: "5s"
//!       heartbeatInterval: "500ms"
//!       snapshotInterval: "1h"
//!       snapshotRetention: 3
//!       snapshotCompress: true
//!     members:
//!       - { id: "broker-1", address: "127.0.0.1:7000" }
//!   local: { maxClients: 1000, clientTimeout: "30s" }
//!   shutdown: { gracePeriod: "30s", notifyClients: true }
//! ```
//!
//! Durations are humantime strings ("500ms", "5s", "1h"). Unknown fields are
//! refused, and every error names the field it is about.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::error::BridgeError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    pub broker: BrokerConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    pub node: NodeConfig,
    pub cluster: ClusterConfig,
    pub local: LocalConfig,
    pub shutdown: ShutdownConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeConfig {
    pub id: String,
    /// Where clients and agents reach this broker.
    pub address: String,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub raft: RaftConfig,
    pub members: Vec<MemberConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RaftConfig {
    pub port: u16,
    #[serde(deserialize_with = "election_timeout")]
    pub election_timeout: Duration,
    #[serde(deserialize_with = "heartbeat_interval")]
    pub heartbeat_interval: Duration,
    #[serde(deserialize_with = "snapshot_interval")]
    pub snapshot_interval: Duration,
    /// Snapshots kept on disk (the newest N).
    pub snapshot_retention: u32,
    #[serde(default)]
    pub snapshot_compress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: String,
    /// Where this member's Raft traffic goes.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalConfig {
    pub max_clients: u32,
    #[serde(deserialize_with = "client_timeout")]
    pub client_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShutdownConfig {
    #[serde(deserialize_with = "grace_period")]
    pub grace_period: Duration,
    pub notify_clients: bool,
}

fn duration<'de, D: Deserializer<'de>>(field: &str, d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("{field}: `{text}` is not a duration ({e})")))
}

/// One deserializer per duration field: serde_yaml_ng names only the enclosing map
/// in a value's error, so each names its own field.
macro_rules! duration_fields {
    ($($name:ident => $field:literal),* $(,)?) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            duration($field, d)
        }
    )*};
}

duration_fields! {
    election_timeout => "electionTimeout",
    heartbeat_interval => "heartbeatInterval",
    snapshot_interval => "snapshotInterval",
    client_timeout => "clientTimeout",
    grace_period => "gracePeriod",
}

impl BridgeConfig {
    /// Parses and checks a configuration file's text (the binary reads the file:
    /// the stack touches files only through its Disk seam); the error names the
    /// offending field.
    pub fn parse(text: &str) -> Result<BridgeConfig, BridgeError> {
        serde_yaml_ng::from_str(text)
            .map_err(|e| e.to_string())
            .and_then(|c: BridgeConfig| c.check().map(|()| c))
            .map_err(|reason| BridgeError::Config { reason })
    }

    fn check(&self) -> Result<(), String> {
        let b = &self.broker;
        let raft = &b.cluster.raft;
        if b.node.id.is_empty() {
            return Err("broker.node.id: must not be empty".into());
        }
        if raft.heartbeat_interval.is_zero() {
            return Err("broker.cluster.raft.heartbeatInterval: must be more than 0".into());
        }
        if raft.heartbeat_interval >= raft.election_timeout {
            return Err(format!(
                "broker.cluster.raft.heartbeatInterval: {:?} must be shorter than electionTimeout ({:?})",
                raft.heartbeat_interval, raft.election_timeout
            ));
        }
        if raft.snapshot_retention == 0 {
            return Err(
                "broker.cluster.raft.snapshotRetention: must keep at least 1 snapshot".into(),
            );
        }
        if b.cluster.members.is_empty() {
            return Err("broker.cluster.members: must list at least this node".into());
        }
        for (i, m) in b.cluster.members.iter().enumerate() {
            if b.cluster.members[..i].iter().any(|o| o.id == m.id) {
                return Err(format!(
                    "broker.cluster.members[{i}].id: `{}` is listed twice",
                    m.id
                ));
            }
        }
        if !b.cluster.members.iter().any(|m| m.id == b.node.id) {
            return Err(format!(
                "broker.cluster.members: does not list this node (`{}`)",
                b.node.id
            ));
        }
        if b.local.max_clients == 0 {
            return Err("broker.local.maxClients: must be more than 0".into());
        }
        Ok(())
    }

    /// This node's position in `members`, from 1: its Raft id.
    pub fn raft_id(&self) -> u64 {
        let b = &self.broker;
        let at = b.cluster.members.iter().position(|m| m.id == b.node.id);
        at.expect("checked: members list this node") as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
broker:
  node:
    id: "broker-1"
    address: "broker-1:5000"
    dataDir: "/var/lib/service-discovery"
  cluster:
    raft:
      port: 7000
      electionTimeout: "5s"
      heartbeatInterval: "500ms"
      snapshotInterval: "1h"
      snapshotRetention: 3
    members:
      - id: "broker-1"
        address: "broker-1:7000"
      - id: "broker-2"
        address: "broker-2:7000"
      - id: "broker-3"
        address: "broker-3:7000"
  local:
    maxClients: 1000
    clientTimeout: "30s"
  shutdown:
    gracePeriod: "30s"
    notifyClients: true
"#;

    #[test]
    fn the_seeds_example_parses_as_written() {
        let c = BridgeConfig::parse(SEED).unwrap();
        let raft = &c.broker.cluster.raft;
        assert_eq!(raft.election_timeout, Duration::from_secs(5));
        assert_eq!(raft.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(raft.snapshot_interval, Duration::from_secs(3600));
        assert_eq!(raft.snapshot_retention, 3);
        assert!(!raft.snapshot_compress);
        assert_eq!(c.broker.cluster.members.len(), 3);
        assert_eq!(c.broker.local.client_timeout, Duration::from_secs(30));
        assert!(c.broker.shutdown.notify_clients);
        assert_eq!(c.raft_id(), 1);
    }

    /// Each bad file names the field at fault.
    #[test]
    fn a_bad_file_is_an_error_naming_the_field() {
        let cases = [
            (SEED.replace("\"500ms\"", "\"soon\""), "heartbeatInterval"),
            (SEED.replace("\"500ms\"", "\"6s\""), "heartbeatInterval"),
            (
                SEED.replace("maxClients: 1000", "maxClients: 0"),
                "maxClients",
            ),
            (
                SEED.replace("maxClients: 1000", "maxClients: lots"),
                "maxClients",
            ),
            (
                SEED.replace("snapshotRetention: 3", "snapshotRetention: 0"),
                "snapshotRetention",
            ),
            (
                SEED.replace("id: \"broker-2\"", "id: \"broker-1\""),
                "members[1].id",
            ),
            (
                SEED.replace(
                    "id: \"broker-1\"\n    address",
                    "id: \"broker-9\"\n    address",
                ),
                "members",
            ),
            (
                SEED.replace(
                    "notifyClients: true",
                    "notifyClients: true\n    notifyAgents: true",
                ),
                "notifyAgents",
            ),
            (
                SEED.replace("    gracePeriod: \"30s\"\n", ""),
                "gracePeriod",
            ),
        ];
        for (text, field) in cases {
            let err = BridgeConfig::parse(&text).expect_err(field).to_string();
            assert!(
                err.contains(field),
                "error for {field} does not name it: {err}"
            );
        }
    }
}
