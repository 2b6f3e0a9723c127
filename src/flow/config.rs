//! The system configuration, which picks the implementations. In TOML:
//!
//! ```toml
//! [deployment]
//! mode = "single_node"          # or "cluster" (Raft), "p2p"
//! node_id = "worker-1"          # optional; "local" when absent
//!
//! [consensus]
//! algorithm = "noop"            # "raft", "byzantine", "pos"
//! timeout = "5s"
//! batch_size = 64
//! leader_election_timeout = "1s"
//!
//! [events]                      # optional
//! subscriber_queue = 1024
//! ```
//!
//! A cluster deployment names this node (`node_id = "worker-1"`, required) and
//! lists the Raft members' client addresses (`nodes = ["127.0.0.1:7101", …]`,
//! `bootstrap_timeout = "10s"`: how long to wait for the cluster at start), a P2P one its `bootstrap_nodes` and
//! `discovery_interval`. YAML has the same shape. Durations are humantime strings
//! ("500ms", "5s"). Unknown fields are refused, and every error names the field's
//! path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{FlowError, FlowResult};
use super::types::NodeId;
use crate::seams::disk::ReadDisk;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    pub deployment: DeploymentConfig,
    pub consensus: ConsensusConfig,
    #[serde(default)]
    pub networking: NetworkConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    /// Added to the seed: how far a subscriber may fall behind.
    #[serde(default)]
    pub events: EventsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeploymentConfig {
    SingleNode {
        #[serde(default)]
        node_id: Option<NodeId>,
    },
    /// A client of the Raft cluster whose members' client addresses `nodes` lists
    /// (coordd, or any etcd v3 cluster), as the flow node `node_id`.
    Cluster {
        node_id: NodeId,
        nodes: Vec<String>,
        #[serde(with = "humantime_serde_str")]
        bootstrap_timeout: Duration,
    },
    #[serde(rename = "p2p")]
    P2p {
        bootstrap_nodes: Vec<String>,
        #[serde(with = "humantime_serde_str")]
        discovery_interval: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusConfig {
    pub algorithm: ConsensusAlgorithm,
    /// How long a proposal may take to be decided.
    #[serde(with = "humantime_serde_str")]
    pub timeout: Duration,
    pub batch_size: usize,
    #[serde(with = "humantime_serde_str")]
    pub leader_election_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsensusAlgorithm {
    NoOp,
    Raft,
    Byzantine,
    PoS,
}

/// Unused by the local implementations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Where this node listens for its peers.
    #[serde(default)]
    pub listen_address: Option<String>,
}

/// Unused by the local implementations (they keep everything in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Items (events, changes, messages) a subscriber may leave unread; beyond
    /// that it misses them, is told so, and they are counted as dropped.
    pub subscriber_queue: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            subscriber_queue: 1024,
        }
    }
}

/// Durations as humantime strings ("500ms", "5s").
mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration like \"5s\" ({e})"))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    Toml,
    Yaml,
}

impl ConfigFormat {
    /// By the file's extension: `.toml`, `.yaml` or `.yml`.
    pub fn of(path: &Path) -> FlowResult<ConfigFormat> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Ok(ConfigFormat::Toml),
            Some("yaml" | "yml") => Ok(ConfigFormat::Yaml),
            _ => Err(FlowError::ConfigRead {
                file: path.display().to_string(),
                reason: "the name must end in .toml, .yaml or .yml".into(),
            }),
        }
    }
}

fn field_error(path: String, reason: String) -> FlowError {
    let field = if path.is_empty() || path == "." {
        "(top level)".to_string()
    } else {
        path
    };
    FlowError::Config { field, reason }
}

impl SystemConfig {
    /// One node, NoOp consensus, default timeouts.
    pub fn single_node() -> Self {
        SystemConfig {
            deployment: DeploymentConfig::SingleNode { node_id: None },
            consensus: ConsensusConfig {
                algorithm: ConsensusAlgorithm::NoOp,
                timeout: Duration::from_secs(5),
                batch_size: 64,
                leader_election_timeout: Duration::from_secs(1),
            },
            networking: NetworkConfig::default(),
            storage: StorageConfig::default(),
            events: EventsConfig::default(),
        }
    }

    /// Parses and checks a configuration's text; an error names the field.
    pub fn parse(text: &str, format: ConfigFormat) -> FlowResult<SystemConfig> {
        let config: SystemConfig = match format {
            ConfigFormat::Toml => serde_path_to_error::deserialize(toml::Deserializer::new(text))
                .map_err(|e| {
                field_error(e.path().to_string(), e.into_inner().message().to_string())
            })?,
            ConfigFormat::Yaml => {
                serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                    .map_err(|e| field_error(e.path().to_string(), e.into_inner().to_string()))?
            }
        };
        config.check()?;
        Ok(config)
    }

    /// Reads `name` from `disk` (the stack's only way to files) and parses it in
    /// the format its extension names.
    pub fn load(disk: &dyn ReadDisk, name: &str) -> FlowResult<SystemConfig> {
        let format = ConfigFormat::of(Path::new(name))?;
        let read_error = |reason: String| FlowError::ConfigRead {
            file: name.to_string(),
            reason,
        };
        let bytes = disk.read(name).map_err(|e| read_error(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| read_error(e.to_string()))?;
        SystemConfig::parse(&text, format)
    }

    /// This node's id: the configured one, or `NodeId::local()`.
    pub fn node_id(&self) -> NodeId {
        match &self.deployment {
            DeploymentConfig::SingleNode { node_id: Some(id) }
            | DeploymentConfig::Cluster { node_id: id, .. } => id.clone(),
            _ => NodeId::local(),
        }
    }

    /// Checks what the types cannot say.
    fn check(&self) -> FlowResult<()> {
        let bad = |field: &str, reason: &str| Err(field_error(field.into(), reason.into()));
        let c = &self.consensus;
        if c.timeout.is_zero() {
            return bad("consensus.timeout", "must be more than 0");
        }
        if c.leader_election_timeout.is_zero() {
            return bad("consensus.leader_election_timeout", "must be more than 0");
        }
        if c.batch_size == 0 {
            return bad("consensus.batch_size", "must be at least 1");
        }
        if self.events.subscriber_queue == 0 {
            return bad("events.subscriber_queue", "must be at least 1");
        }
        match &self.deployment {
            DeploymentConfig::SingleNode { node_id: Some(id) } if id.as_str().is_empty() => {
                bad("deployment.node_id", "must not be empty")
            }
            DeploymentConfig::Cluster { node_id, .. } if node_id.as_str().is_empty() => {
                bad("deployment.node_id", "must not be empty")
            }
            DeploymentConfig::Cluster { nodes, .. } => check_addresses("deployment.nodes", nodes),
            DeploymentConfig::P2p {
                bootstrap_nodes, ..
            } => check_addresses("deployment.bootstrap_nodes", bootstrap_nodes),
            DeploymentConfig::SingleNode { .. } => Ok(()),
        }
    }
}

fn check_addresses(field: &str, addresses: &[String]) -> FlowResult<()> {
    if addresses.is_empty() {
        return Err(field_error(
            field.into(),
            "must list at least one address".into(),
        ));
    }
    for (i, address) in addresses.iter().enumerate() {
        if address.is_empty() {
            return Err(field_error(
                format!("{field}[{i}]"),
                "must not be empty".into(),
            ));
        }
        if addresses[..i].contains(address) {
            let reason = format!("`{address}` is listed twice");
            return Err(field_error(format!("{field}[{i}]"), reason));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
[deployment]
mode = "single_node"
node_id = "worker-1"

[consensus]
algorithm = "noop"
timeout = "5s"
batch_size = 64
leader_election_timeout = "1s"
"#;

    const YAML: &str = r#"
deployment:
  mode: cluster
  node_id: worker-2
  nodes: ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
  bootstrap_timeout: 10s
consensus:
  algorithm: raft
  timeout: 2s
  batch_size: 16
  leader_election_timeout: 500ms
events:
  subscriber_queue: 8
"#;

    fn field_of(result: FlowResult<SystemConfig>) -> (String, String) {
        match result {
            Err(FlowError::Config { field, reason }) => (field, reason),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_toml_file_and_a_yaml_file_parse() {
        let toml = SystemConfig::parse(TOML, ConfigFormat::Toml).unwrap();
        assert_eq!(toml.node_id(), NodeId::from("worker-1"));
        assert_eq!(toml.consensus.algorithm, ConsensusAlgorithm::NoOp);
        assert_eq!(toml.events.subscriber_queue, 1024);
        let yaml = SystemConfig::parse(YAML, ConfigFormat::Yaml).unwrap();
        assert_eq!(
            yaml.consensus.leader_election_timeout,
            Duration::from_millis(500)
        );
        assert!(matches!(
            yaml.deployment,
            DeploymentConfig::Cluster { ref nodes, bootstrap_timeout, .. }
                if nodes.len() == 3 && bootstrap_timeout == Duration::from_secs(10)
        ));
        assert_eq!(yaml.node_id(), NodeId::from("worker-2"));
        let text = YAML.replace("  node_id: worker-2\n", "");
        let (field, reason) = field_of(SystemConfig::parse(&text, ConfigFormat::Yaml));
        assert_eq!(field, "deployment");
        assert!(reason.contains("missing field `node_id`"), "{reason}");
    }

    #[test]
    fn the_default_single_node_config_round_trips_through_toml() {
        let config = SystemConfig::single_node();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(
            SystemConfig::parse(&text, ConfigFormat::Toml).unwrap(),
            config
        );
    }

    #[test]
    fn an_unknown_field_is_refused_by_its_path() {
        let text = TOML.replace("batch_size = 64", "batch_size = 64\nbatch_sise = 3");
        let (field, reason) = field_of(SystemConfig::parse(&text, ConfigFormat::Toml));
        assert_eq!(field, "consensus.batch_sise");
        assert!(reason.contains("unknown field `batch_sise`"), "{reason}");
        let yaml = YAML.replace("subscriber_queue: 8", "subscriber_queue: 8\n  colour: red");
        let (field, reason) = field_of(SystemConfig::parse(&yaml, ConfigFormat::Yaml));
        assert_eq!(field, "events.colour");
        assert!(reason.contains("unknown field `colour`"), "{reason}");
    }

    #[test]
    fn a_bad_value_names_its_field() {
        let text = TOML.replace("timeout = \"5s\"", "timeout = \"soon\"");
        let (field, reason) = field_of(SystemConfig::parse(&text, ConfigFormat::Toml));
        assert_eq!(field, "consensus.timeout");
        assert!(reason.contains("`soon` is not a duration"), "{reason}");
        let text = YAML.replace("algorithm: raft", "algorithm: paxos");
        let (field, _) = field_of(SystemConfig::parse(&text, ConfigFormat::Yaml));
        assert_eq!(field, "consensus.algorithm");
        let text = YAML.replace("batch_size: 16", "batch_size: -1");
        let (field, _) = field_of(SystemConfig::parse(&text, ConfigFormat::Yaml));
        assert_eq!(field, "consensus.batch_size");
        let text = YAML.replace("mode: cluster", "mode: mesh");
        let (field, reason) = field_of(SystemConfig::parse(&text, ConfigFormat::Yaml));
        assert_eq!(field, "deployment.mode");
        assert!(reason.contains("mesh"), "{reason}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let text = TOML.replace("batch_size = 64\n", "");
        let (field, reason) = field_of(SystemConfig::parse(&text, ConfigFormat::Toml));
        assert_eq!(field, "consensus");
        assert!(reason.contains("missing field `batch_size`"), "{reason}");
    }

    #[test]
    fn values_the_types_allow_but_the_system_does_not_are_named() {
        let text = TOML.replace("batch_size = 64", "batch_size = 0");
        let (field, _) = field_of(SystemConfig::parse(&text, ConfigFormat::Toml));
        assert_eq!(field, "consensus.batch_size");
        let text = YAML.replace("127.0.0.1:7103", "127.0.0.1:7101");
        let (field, reason) = field_of(SystemConfig::parse(&text, ConfigFormat::Yaml));
        assert_eq!(field, "deployment.nodes[2]");
        assert!(reason.contains("listed twice"), "{reason}");
        let text = YAML.replace("subscriber_queue: 8", "subscriber_queue: 0");
        let (field, _) = field_of(SystemConfig::parse(&text, ConfigFormat::Yaml));
        assert_eq!(field, "events.subscriber_queue");
    }

    #[test]
    fn a_file_is_read_through_the_disk_seam_by_its_extension() {
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::seams::disk::FileDisk::open(dir.path()).unwrap();
        crate::seams::disk::Disk::write(&disk, "flow.yaml", YAML.as_bytes()).unwrap();
        crate::seams::disk::Disk::write(&disk, "flow.ini", YAML.as_bytes()).unwrap();
        assert_eq!(
            SystemConfig::load(&disk, "flow.yaml").unwrap(),
            SystemConfig::parse(YAML, ConfigFormat::Yaml).unwrap()
        );
        assert!(matches!(
            SystemConfig::load(&disk, "flow.ini"),
            Err(FlowError::ConfigRead { .. })
        ));
        assert!(matches!(
            SystemConfig::load(&disk, "absent.toml"),
            Err(FlowError::ConfigRead { .. })
        ));
    }
}
