//! Scenario files: declarative TOML describing cluster, workload, fault plan,
//! durations, liveness bounds, checkers and the default number of seeds.
//!
//! A bad file fails with `file:line: reason` — unknown keys, wrong types and values
//! out of range alike.

pub mod bridge;
pub mod flow;
pub mod library;

use std::path::{Path, PathBuf};

use coordlab::coord::compactor::{AutoCompaction, AutoCompactionError};
use serde::Deserialize;

use super::checkers;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Defaults to the file name without `.toml`.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds run by default (`SIM_SEEDS` overrides).
    #[serde(default = "defaults::seeds")]
    pub seeds: u64,
    /// Seeds that once failed (found by sweeps and fixed since): the suite runs
    /// them after the default ones, so each schedule a sweep found keeps running.
    #[serde(default)]
    pub regression_seeds: Vec<u64>,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub workload: WorkloadSpec,
    #[serde(default)]
    pub faults: FaultSpec,
    /// Explicit fault events, in addition to (or instead of) random ones.
    #[serde(default)]
    pub timeline: Vec<TimelineEvent>,
    /// Clients of the client library: locks with a fenced resource, registry
    /// routing, config watches (`sim/library/`).
    #[serde(default)]
    pub library: library::LibrarySpec,
    /// Link Bridge brokers, agents and clients (`sim/bridge/`).
    #[serde(default)]
    pub bridge: bridge::BridgeSpec,
    /// FlowBuilder hosts with Raft service containers (`sim/flow/`).
    #[serde(default)]
    pub flow: flow::FlowSpec,
    #[serde(default)]
    pub duration: DurationSpec,
    #[serde(default)]
    pub liveness: LivenessSpec,
    #[serde(default)]
    pub checkers: CheckerSpec,
    /// The MQ control plane: LogicNodes, extra brokers, topic admin.
    #[serde(default)]
    pub mq: MqSpec,
    /// Clients of the etcd v3 API: KV registers, locks, leases, watchers and the
    /// TTL-only lock demo.
    #[serde(default)]
    pub coord: CoordSpec,
    /// Where it was loaded from (set by the loader).
    #[serde(skip)]
    pub path: PathBuf,
}

mod defaults {
    pub fn seeds() -> u64 {
        4
    }
    pub fn nodes() -> u64 {
        3
    }
    pub fn tick_ms() -> u64 {
        100
    }
    pub fn election_ticks() -> usize {
        10
    }
    pub fn heartbeat_ticks() -> usize {
        2
    }
    pub fn yes() -> bool {
        true
    }
    pub fn snapshot_entries() -> u64 {
        100
    }
    pub fn clients() -> u64 {
        2
    }
    pub fn keys() -> u64 {
        5
    }
    pub fn min_interval_ms() -> u64 {
        50
    }
    pub fn max_interval_ms() -> u64 {
        300
    }
    pub fn read_fraction() -> f64 {
        0.3
    }
    pub fn op_timeout_ms() -> u64 {
        5000
    }
    pub fn attempt_timeout_ms() -> u64 {
        2000
    }
    pub fn mean_interval_ms() -> u64 {
        3000
    }
    pub fn min_fault_ms() -> u64 {
        500
    }
    pub fn max_fault_ms() -> u64 {
        5000
    }
    pub fn safety_secs() -> u64 {
        20
    }
    pub fn heal_secs() -> u64 {
        15
    }
    pub fn leader_within_secs() -> u64 {
        10
    }
    pub fn ops_within_secs() -> u64 {
        12
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default = "defaults::nodes")]
    pub nodes: u64,
    /// Most nodes membership changes may grow the cluster to (default: nodes + 2).
    #[serde(default)]
    pub max_nodes: Option<u64>,
    #[serde(default = "defaults::tick_ms")]
    pub tick_ms: u64,
    #[serde(default = "defaults::election_ticks")]
    pub election_ticks: usize,
    #[serde(default = "defaults::heartbeat_ticks")]
    pub heartbeat_ticks: usize,
    #[serde(default = "defaults::yes")]
    pub pre_vote: bool,
    #[serde(default = "defaults::yes")]
    pub check_quorum: bool,
    #[serde(default = "defaults::snapshot_entries")]
    pub snapshot_entries: u64,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(default = "defaults::clients")]
    pub clients: u64,
    #[serde(default = "defaults::keys")]
    pub keys: u64,
    #[serde(default = "defaults::min_interval_ms")]
    pub min_interval_ms: u64,
    #[serde(default = "defaults::max_interval_ms")]
    pub max_interval_ms: u64,
    #[serde(default = "defaults::read_fraction")]
    pub read_fraction: f64,
    #[serde(default = "defaults::op_timeout_ms")]
    pub op_timeout_ms: u64,
    /// Deadline of one attempt; a shorter one makes clients retry writes whose
    /// answers are merely slow.
    #[serde(default = "defaults::attempt_timeout_ms")]
    pub attempt_timeout_ms: u64,
    /// Share of acknowledged puts that reach the cluster once more, as a retry
    /// delayed in the network would, after the client's next write completed: the
    /// write session must not apply the older request over the newer.
    #[serde(default)]
    pub late_duplicate_fraction: f64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// A kind of fault the random generator may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Partition,
    OneWay,
    Kill,
    /// Kill a node and never restart it (at most a minority per run, bit flips
    /// included).
    KillForGood,
    Pause,
    LeaderChurn,
    /// Cut whoever leads off from everyone else (flapping partitions around the leader).
    IsolateLeader,
    Loss,
    Duplicate,
    Reorder,
    Latency,
    DiskEio,
    DiskLatency,
    TornWrite,
    BitFlip,
    ClockJump,
    ClockDrift,
    Membership,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Each seed draws which of `kinds` are on and how hard (swarm testing).
    #[serde(default)]
    pub swarm: bool,
    #[serde(default)]
    pub kinds: Vec<FaultKind>,
    /// Mean time between random faults.
    #[serde(default = "defaults::mean_interval_ms")]
    pub mean_interval_ms: u64,
    /// How long a random fault lasts before it heals, drawn in this range.
    #[serde(default = "defaults::min_fault_ms")]
    pub min_fault_ms: u64,
    #[serde(default = "defaults::max_fault_ms")]
    pub max_fault_ms: u64,
}

impl Default for FaultSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// A fault at a fixed time; `heal_after_ms` undoes it after that long.
#[derive(Debug, Clone)]
pub struct TimelineEvent {
    pub at_ms: u64,
    pub action: Action,
}

// By hand: serde's `flatten` cannot be combined with `deny_unknown_fields`.
impl<'de> Deserialize<'de> for TimelineEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let at_ms = table
            .remove("at_ms")
            .ok_or_else(|| D::Error::custom("timeline event needs `at_ms`"))?
            .as_integer()
            .filter(|v| *v >= 0)
            .ok_or_else(|| D::Error::custom("`at_ms` must be a non-negative integer"))?
            as u64;
        let action = Action::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(TimelineEvent { at_ms, action })
    }
}

/// What the fault driver can do. Durations heal the fault after that long.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Partition {
        groups: Vec<Vec<u64>>,
        heal_after_ms: Option<u64>,
    },
    OneWay {
        from: u64,
        to: u64,
        heal_after_ms: Option<u64>,
    },
    HealNetwork,
    Kill {
        node: u64,
        restart_after_ms: Option<u64>,
    },
    Restart {
        node: u64,
    },
    /// Kill the node and never start it again (its disk is kept, unused).
    KillForGood {
        node: u64,
    },
    Pause {
        node: u64,
        resume_after_ms: Option<u64>,
    },
    KillLeader {
        restart_after_ms: Option<u64>,
    },
    IsolateLeader {
        heal_after_ms: Option<u64>,
    },
    LinkFaults {
        #[serde(default)]
        drop: f64,
        #[serde(default)]
        duplicate: f64,
        #[serde(default)]
        delay: f64,
        #[serde(default)]
        max_delay_ms: u64,
        heal_after_ms: Option<u64>,
    },
    Latency {
        min_ms: u64,
        max_ms: u64,
        heal_after_ms: Option<u64>,
    },
    DiskFaults {
        node: u64,
        #[serde(default)]
        write_eio: f64,
        #[serde(default)]
        sync_eio: f64,
        #[serde(default)]
        sync_latency_ms: (u64, u64),
        #[serde(default)]
        torn_writes: bool,
        heal_after_ms: Option<u64>,
    },
    /// Kill the node with torn writes on, then restart it.
    TornCrash {
        node: u64,
        restart_after_ms: Option<u64>,
    },
    BitFlip {
        node: u64,
        restart_after_ms: Option<u64>,
    },
    ClockJump {
        node: u64,
        delta_ms: i64,
    },
    ClockDrift {
        node: u64,
        ppm: i64,
        heal_after_ms: Option<u64>,
    },
    AddNode,
    RemoveNode {
        node: u64,
    },
}

impl Action {
    /// Node ids the action names (for validation).
    fn nodes(&self) -> Vec<u64> {
        match self {
            Action::Partition { groups, .. } => groups.iter().flatten().copied().collect(),
            Action::OneWay { from, to, .. } => vec![*from, *to],
            Action::Kill { node, .. }
            | Action::KillForGood { node }
            | Action::Restart { node }
            | Action::Pause { node, .. }
            | Action::DiskFaults { node, .. }
            | Action::TornCrash { node, .. }
            | Action::BitFlip { node, .. }
            | Action::ClockJump { node, .. }
            | Action::ClockDrift { node, .. }
            | Action::RemoveNode { node } => vec![*node],
            _ => vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationSpec {
    /// Phase 1: faults on, safety checked.
    #[serde(default = "defaults::safety_secs")]
    pub safety_secs: u64,
    /// Phase 2: everything healed, convergence required.
    #[serde(default = "defaults::heal_secs")]
    pub heal_secs: u64,
}

impl Default for DurationSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessSpec {
    #[serde(default = "defaults::leader_within_secs")]
    pub leader_within_secs: u64,
    #[serde(default = "defaults::ops_within_secs")]
    pub ops_within_secs: u64,
}

impl Default for LivenessSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqSpec {
    /// Every node runs a LogicNode: a broker beside its coo.
    #[serde(default)]
    pub brokers: bool,
    /// Broker-only LogicNodes on their own hosts (always External mode).
    #[serde(default)]
    pub extra_brokers: u64,
    /// Topics an admin client creates during the safety phase.
    #[serde(default)]
    pub topics: u64,
    /// Consumers `consumer-0..n` joining and leaving group `group-b` (on
    /// `topic-0` and `topic-1`) through the safety phase; 0: none.
    #[serde(default)]
    pub group_members: u64,
    /// Faults of the broker-only LogicNodes and the coo leader's clock, at fixed
    /// times of the safety phase.
    #[serde(default)]
    pub broker_faults: Vec<BrokerFault>,
}

/// One MQ fault (`[[mq.broker_faults]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerFault {
    pub at_ms: u64,
    /// `crash_for_good`, `crash` (restarted after `for_ms`), `cut_off_leader`
    /// (the links between the broker and the node leading now are cut for
    /// `for_ms`; its other links stay) or `leader_clock_jump` (`delta_ms`).
    pub action: String,
    /// Which broker-only LogicNode (1..=extra_brokers).
    #[serde(default)]
    pub broker: u64,
    #[serde(default)]
    pub for_ms: u64,
    #[serde(default)]
    pub delta_ms: i64,
}

/// The coordination-service workloads (`sim/coord/`), each off at 0 clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordSpec {
    /// Clients doing linearizable reads, puts and compare-and-set on registers.
    #[serde(default)]
    pub register_clients: u64,
    #[serde(default = "coord_defaults::registers")]
    pub registers: u64,
    #[serde(default = "coord_defaults::register_read_fraction")]
    pub register_read_fraction: f64,
    #[serde(default = "coord_defaults::register_cas_fraction")]
    pub register_cas_fraction: f64,
    /// Pause between a register client's operations, drawn in this range.
    #[serde(default = "coord_defaults::interval_min_ms")]
    pub interval_min_ms: u64,
    #[serde(default = "coord_defaults::interval_max_ms")]
    pub interval_max_ms: u64,
    /// Clients taking locks (lease + keep-alive, Lock, fencing token, fenced resource).
    #[serde(default)]
    pub lock_clients: u64,
    /// Lock names the lock clients share.
    #[serde(default = "coord_defaults::locks")]
    pub locks: u64,
    #[serde(default = "coord_defaults::ttl_secs")]
    pub lock_ttl_secs: i64,
    /// How long a holder holds, drawn in this range (above the TTL: kept alive).
    #[serde(default = "coord_defaults::hold_min_ms")]
    pub hold_min_ms: u64,
    #[serde(default = "coord_defaults::hold_max_ms")]
    pub hold_max_ms: u64,
    /// Now and then a holder's client node is paused this long while it holds the
    /// lock (0: never); past the TTL it loses the lock unknowingly.
    #[serde(default)]
    pub lock_pause_ms: u64,
    /// Clients granting leases, attaching keys, keeping some alive, letting some
    /// lapse and revoking others.
    #[serde(default)]
    pub lease_clients: u64,
    #[serde(default = "coord_defaults::ttl_secs")]
    pub lease_ttl_secs: i64,
    /// Clients watching the registers' and leases' prefixes, resuming every broken
    /// stream from the last revision seen + 1.
    #[serde(default)]
    pub watchers: u64,
    /// A client compacts the store this often (0: never), a few revisions behind.
    #[serde(default)]
    pub compact_every_ms: u64,
    /// The members' own auto-compaction, as coordd's flags of the same names
    /// (`periodic` or `revision`; retention `0`, the default, is off).
    #[serde(default = "coord_defaults::auto_compaction_mode")]
    pub auto_compaction_mode: String,
    #[serde(default = "coord_defaults::auto_compaction_retention")]
    pub auto_compaction_retention: String,
    /// TTL-only demo clients: one lock, no fencing, holders paused past the TTL.
    #[serde(default)]
    pub ttl_only_clients: u64,
    #[serde(default = "coord_defaults::ttl_only_pause_ms")]
    pub ttl_only_pause_ms: u64,
    /// Deadline of one etcd request (a Lock waits up to 4x this).
    #[serde(default = "coord_defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
}

mod coord_defaults {
    pub fn registers() -> u64 {
        3
    }
    pub fn register_read_fraction() -> f64 {
        0.4
    }
    pub fn register_cas_fraction() -> f64 {
        0.3
    }
    pub fn interval_min_ms() -> u64 {
        20
    }
    pub fn interval_max_ms() -> u64 {
        200
    }
    pub fn locks() -> u64 {
        1
    }
    pub fn ttl_secs() -> i64 {
        3
    }
    pub fn hold_min_ms() -> u64 {
        100
    }
    pub fn hold_max_ms() -> u64 {
        5000
    }
    pub fn ttl_only_pause_ms() -> u64 {
        6000
    }
    pub fn request_timeout_ms() -> u64 {
        2000
    }
    pub fn auto_compaction_mode() -> String {
        "periodic".into()
    }
    pub fn auto_compaction_retention() -> String {
        "0".into()
    }
}

impl Default for CoordSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl CoordSpec {
    /// The members' auto-compaction policy (None: off), as validated.
    pub fn auto_compaction(&self) -> Option<AutoCompaction> {
        AutoCompaction::parse(&self.auto_compaction_mode, &self.auto_compaction_retention)
            .ok()
            .flatten()
    }

    /// The period of the members' auto-compaction, when it is periodic.
    pub fn auto_compaction_period(&self) -> Option<std::time::Duration> {
        match self.auto_compaction()? {
            AutoCompaction::Periodic(period) => Some(period),
            AutoCompaction::Revision(_) => None,
        }
    }

    /// Whether any coordination workload runs.
    pub fn any(&self) -> bool {
        self.register_clients
            + self.lock_clients
            + self.lease_clients
            + self.watchers
            + self.ttl_only_clients
            > 0
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, ttl) in [
            ("lock_ttl_secs", self.lock_ttl_secs),
            ("lease_ttl_secs", self.lease_ttl_secs),
        ] {
            if ttl < 2 {
                return Err((
                    key,
                    format!("{ttl} s is below etcd's minimum lease TTL of 2 s"),
                ));
            }
        }
        let clients = [
            ("register_clients", self.register_clients),
            ("lock_clients", self.lock_clients),
            ("lease_clients", self.lease_clients),
            ("watchers", self.watchers),
            ("ttl_only_clients", self.ttl_only_clients),
        ];
        if let Some((key, n)) = clients.iter().find(|(_, n)| *n > 50) {
            return Err((key, format!("{n} clients; at most 50")));
        }
        let (read, cas) = (self.register_read_fraction, self.register_cas_fraction);
        if !(0.0..=1.0).contains(&read) || !(0.0..=1.0).contains(&cas) || read + cas > 1.0 {
            return Err((
                "register_read_fraction",
                format!(
                    "read {read} and cas {cas} fractions must lie in 0..=1 and sum to at most 1"
                ),
            ));
        }
        if self.register_clients > 0 && self.registers == 0 {
            return Err((
                "registers",
                "register clients need at least one register".into(),
            ));
        }
        if self.interval_min_ms > self.interval_max_ms {
            return Err(("interval_min_ms", "must not exceed interval_max_ms".into()));
        }
        if self.lock_clients > 0 && self.locks == 0 {
            return Err(("locks", "lock clients need at least one lock".into()));
        }
        if self.hold_min_ms > self.hold_max_ms {
            return Err(("hold_min_ms", "must not exceed hold_max_ms".into()));
        }
        if self.watchers > 0 && self.register_clients + self.lease_clients == 0 {
            return Err((
                "watchers",
                "watchers watch the registers' and leases' prefixes: add register_clients or lease_clients".into(),
            ));
        }
        let auto =
            AutoCompaction::parse(&self.auto_compaction_mode, &self.auto_compaction_retention)
                .map_err(|e| match e {
                    AutoCompactionError::Mode(_) => ("auto_compaction_mode", e.to_string()),
                    _ => ("auto_compaction_retention", e.to_string()),
                })?;
        if auto.is_some() && self.lock_clients + self.ttl_only_clients > 0 {
            return Err((
                "auto_compaction_retention",
                "the lock audit reads the store at every grant's revision; compaction would erase that history".into(),
            ));
        }
        if auto.is_some() && self.compact_every_ms > 0 {
            return Err((
                "auto_compaction_retention",
                "with compact_every_ms too, a client's compactions would pass for the members' own"
                    .into(),
            ));
        }
        if self.compact_every_ms > 0 && self.lock_clients + self.ttl_only_clients > 0 {
            return Err((
                "compact_every_ms",
                "the lock audit reads the store at every grant's revision; compaction would erase that history".into(),
            ));
        }
        if self.ttl_only_clients == 1 {
            return Err((
                "ttl_only_clients",
                "the demo needs a second client waiting for the lock".into(),
            ));
        }
        let ttl_ms = self.lock_ttl_secs as u64 * 1000;
        if self.ttl_only_clients > 0 && self.ttl_only_pause_ms < ttl_ms + 1000 {
            return Err((
                "ttl_only_pause_ms",
                format!("a pause must outlast the lock TTL ({ttl_ms} ms) by a second to lose exclusivity"),
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(("request_timeout_ms", "must be positive".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckerSpec {
    /// Checkers to leave out (by name).
    #[serde(default)]
    pub disabled: Vec<String>,
}

/// A scenario file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Line of the first `key =` (or `[table]`) mention, for errors found after parsing.
fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(&format!("{key} "))
                || l.starts_with(&format!("{key}="))
                || l.starts_with(&format!("[{key}"))
        })
        .map_or(1, |i| i + 1)
}

impl Scenario {
    /// Parses and validates `text` (from `path`, for messages and the default name).
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError {
            file: file.clone(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            reason: e.message().to_string(),
        })?;
        if scenario.name.is_empty() {
            scenario.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        scenario.path = path.to_path_buf();
        scenario.validate().map_err(|(key, reason)| ScenarioError {
            line: line_of_key(text, key),
            file,
            reason: format!("{key}: {reason}"),
        })?;
        Ok(scenario)
    }

    pub fn max_nodes(&self) -> u64 {
        self.cluster.max_nodes.unwrap_or(self.cluster.nodes + 2)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let mut pinned = std::collections::BTreeSet::new();
        for &seed in &self.regression_seeds {
            if (1..=self.seeds).contains(&seed) {
                return Err((
                    "regression_seeds",
                    format!("seed {seed} is already a default seed (1..={})", self.seeds),
                ));
            }
            if !pinned.insert(seed) {
                return Err(("regression_seeds", format!("seed {seed} is listed twice")));
            }
        }
        self.library.validate()?;
        self.bridge.validate()?;
        self.flow.validate()?;
        let c = &self.cluster;
        if !(1..=7).contains(&c.nodes) {
            return Err(("nodes", format!("{} nodes; must be 1 to 7", c.nodes)));
        }
        if self.max_nodes() < c.nodes || self.max_nodes() > 9 {
            return Err(("max_nodes", "must be at least nodes and at most 9".into()));
        }
        if c.tick_ms == 0 || c.heartbeat_ticks == 0 || c.election_ticks <= c.heartbeat_ticks {
            return Err((
                "election_ticks",
                "need tick_ms > 0 and election_ticks > heartbeat_ticks > 0".into(),
            ));
        }
        if c.snapshot_entries == 0 {
            return Err(("snapshot_entries", "must be positive".into()));
        }
        let w = &self.workload;
        for (key, fraction) in [
            ("read_fraction", w.read_fraction),
            ("late_duplicate_fraction", w.late_duplicate_fraction),
        ] {
            if !(0.0..=1.0).contains(&fraction) {
                return Err((key, format!("{fraction} is not in 0..=1")));
            }
        }
        if w.keys == 0 || w.min_interval_ms > w.max_interval_ms || w.op_timeout_ms == 0 {
            return Err((
                "keys",
                "need keys > 0, min_interval_ms <= max_interval_ms, op_timeout_ms > 0".into(),
            ));
        }
        let f = &self.faults;
        if f.swarm && f.kinds.is_empty() {
            return Err((
                "swarm",
                "swarm mode needs at least one fault kind in `kinds`".into(),
            ));
        }
        if f.min_fault_ms > f.max_fault_ms || f.mean_interval_ms == 0 {
            return Err((
                "min_fault_ms",
                "need min_fault_ms <= max_fault_ms and mean_interval_ms > 0".into(),
            ));
        }
        if self.duration.safety_secs == 0 && !self.timeline.is_empty() {
            return Err(("safety_secs", "a timeline needs a safety phase".into()));
        }
        let safety_ms = self.duration.safety_secs * 1000;
        for event in &self.timeline {
            if event.at_ms > safety_ms {
                return Err((
                    "at_ms",
                    format!("{} is after the safety phase ({safety_ms} ms)", event.at_ms),
                ));
            }
            if let Some(bad) = event
                .action
                .nodes()
                .into_iter()
                .find(|&n| n == 0 || n > self.max_nodes())
            {
                return Err((
                    "node",
                    format!(
                        "node {bad} does not exist (nodes are 1..={})",
                        self.max_nodes()
                    ),
                ));
            }
        }
        if (self.mq.extra_brokers > 0 || self.mq.topics > 0) && !self.mq.brokers {
            return Err((
                "brokers",
                "extra_brokers and topics need `brokers = true`".into(),
            ));
        }
        if self.mq.extra_brokers > 8 {
            return Err(("extra_brokers", "at most 8".into()));
        }
        for f in &self.mq.broker_faults {
            let needs_broker = f.action != "leader_clock_jump";
            let known = [
                "crash_for_good",
                "crash",
                "cut_off_leader",
                "leader_clock_jump",
            ];
            if !known.contains(&f.action.as_str()) {
                return Err(("broker_faults", format!("unknown action {:?}", f.action)));
            }
            if needs_broker && !(1..=self.mq.extra_brokers).contains(&f.broker) {
                return Err((
                    "broker_faults",
                    format!(
                        "broker {} is not one of 1..={}",
                        f.broker, self.mq.extra_brokers
                    ),
                ));
            }
            if f.at_ms + f.for_ms >= self.duration.safety_secs * 1000 {
                return Err((
                    "broker_faults",
                    "a fault must end within the safety phase".into(),
                ));
            }
        }
        self.coord.validate()?;
        if let Some(period) = self.coord.auto_compaction_period() {
            // The auto-compaction liveness check wants a compaction within two
            // periods of a leader being established after healing.
            let needed = checkers::auto_compaction_live::deadline_after_heal_ms(
                self.liveness.leader_within_secs * 1000,
                period,
            ) + 1000;
            if self.duration.heal_secs * 1000 < needed {
                return Err((
                    "auto_compaction_retention",
                    format!(
                        "a {period:?} period needs heal_secs of at least {} s",
                        needed.div_ceil(1000)
                    ),
                ));
            }
        }
        for name in &self.checkers.disabled {
            if !checkers::is_registered(name) {
                return Err(("disabled", format!("unknown checker {name:?}")));
            }
        }
        Ok(())
    }
}

/// Loads every `*.toml` in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ScenarioError {
            file: dir.display().to_string(),
            line: 0,
            reason: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load_file(p)).collect()
}

pub fn load_file(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.display().to_string(),
        line: 0,
        reason: e.to_string(),
    })?;
    Scenario::parse(path, &text)
}

/// Seeds to run: `SIM_SEEDS` (a count `N`: seeds 1..=N, or a range `a..b`) or the
/// scenario's default count followed by its regression seeds.
pub fn parse_seeds(
    text: Option<&str>,
    default_count: u64,
    regression: &[u64],
) -> Result<Vec<u64>, String> {
    let Some(text) = text else {
        return Ok((1..=default_count)
            .chain(regression.iter().copied())
            .collect());
    };
    let text = text.trim();
    if let Some((a, b)) = text.split_once("..") {
        let a: u64 = a
            .parse()
            .map_err(|_| format!("SIM_SEEDS start {a:?} is not a number"))?;
        let b: u64 = b
            .parse()
            .map_err(|_| format!("SIM_SEEDS end {b:?} is not a number"))?;
        if a >= b {
            return Err(format!("SIM_SEEDS range {a}..{b} is empty"));
        }
        return Ok((a..b).collect());
    }
    let n: u64 = text
        .parse()
        .map_err(|_| format!("SIM_SEEDS {text:?} is neither a count nor a range like 100..200"))?;
    Ok((1..=n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("scenarios/test.toml"), text)
    }

    #[test]
    fn defaults_fill_an_empty_file() {
        let s = parse("").unwrap();
        assert_eq!(s.name, "test");
        assert_eq!(s.cluster.nodes, 3);
        assert!(s.timeline.is_empty());
    }

    #[test]
    fn unknown_keys_fail_with_file_and_line() {
        let err = parse("seeds = 2\n[cluster]\nnodes = 3\nnodez = 4\n").unwrap_err();
        assert_eq!(err.file, "scenarios/test.toml");
        assert_eq!(err.line, 4, "{err}");
        assert!(err.reason.contains("nodez"), "{err}");
    }

    #[test]
    fn wrong_types_and_bad_values_name_their_line() {
        let err = parse("[cluster]\nnodes = \"three\"\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = parse("[cluster]\n\nnodes = 12\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.reason.contains("1 to 7"), "{err}");
        let err = parse("[faults]\nswarm = true\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn regression_seeds_must_be_new_and_distinct() {
        let ok = parse("seeds = 2\nregression_seeds = [1300000080, 47000041]\n").unwrap();
        assert_eq!(ok.regression_seeds, vec![1300000080, 47000041]);
        let err = parse("seeds = 3\n\nregression_seeds = [9, 2]\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(
            err.reason.contains("seed 2 is already a default seed"),
            "{err}"
        );
        let err = parse("regression_seeds = [90, 90]\n").unwrap_err();
        assert!(err.reason.contains("seed 90 is listed twice"), "{err}");
        let err = parse("regression_seeds = [-4]\n").unwrap_err();
        assert_eq!(err.line, 1, "{err}");
    }

    #[test]
    fn timeline_events_are_checked() {
        let ok = parse(
            "[[timeline]]\nat_ms = 1000\naction = \"kill\"\nnode = 2\nrestart_after_ms = 500\n",
        )
        .unwrap();
        assert_eq!(
            ok.timeline[0].action,
            Action::Kill {
                node: 2,
                restart_after_ms: Some(500)
            }
        );
        let err = parse("[[timeline]]\nat_ms = 1000\naction = \"explode\"\n").unwrap_err();
        assert!(err.reason.contains("explode"), "{err}");
        let err = parse("[[timeline]]\nat_ms = 1000\naction = \"kill\"\nnode = 9\n").unwrap_err();
        assert!(err.reason.contains("node 9"), "{err}");
        let err = parse("[[timeline]]\naction = \"heal_network\"\n").unwrap_err();
        assert!(err.reason.contains("at_ms"), "{err}");
    }

    #[test]
    fn coord_sections_are_checked() {
        let ok = parse("[coord]\nregister_clients = 2\nwatchers = 1\n").unwrap();
        assert_eq!(ok.coord.register_clients, 2);
        assert!(ok.coord.any());
        let err = parse("seeds = 1\n[coord]\nlock_clients = 2\nlock_ttl_secs = 1\n").unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.reason.contains("minimum lease TTL"), "{err}");
        let err = parse("[coord]\nwatchers = 1\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = parse("[coord]\nlock_clients = 1\ncompact_every_ms = 500\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let err = parse("[coord]\nttl_only_clients = 3\nttl_only_pause_ms = 3500\n").unwrap_err();
        assert!(err.reason.contains("outlast"), "{err}");
        let err = parse("[coord]\nlock_clients = 1\nlock_tll_secs = 3\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
    }

    #[test]
    fn auto_compaction_is_checked_as_coordd_checks_its_flags() {
        let auto = |extra: &str| {
            parse(&format!(
                "[coord]\nregister_clients = 1\n{extra}\n[duration]\nheal_secs = 15\n"
            ))
        };
        let ok = auto("auto_compaction_retention = \"2s\"").unwrap();
        assert_eq!(
            ok.coord.auto_compaction(),
            Some(AutoCompaction::Periodic(std::time::Duration::from_secs(2)))
        );
        assert_eq!(auto("").unwrap().coord.auto_compaction(), None);
        let err = auto("auto_compaction_mode = \"daily\"\nauto_compaction_retention = \"2s\"")
            .unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.reason.contains("daily"), "{err}");
        let err = auto("auto_compaction_retention = \"2 fortnights\"").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let err = auto("lock_clients = 1\nauto_compaction_retention = \"2s\"").unwrap_err();
        assert!(err.reason.contains("lock audit"), "{err}");
        let err = auto("compact_every_ms = 500\nauto_compaction_retention = \"2s\"").unwrap_err();
        assert!(err.reason.contains("compact_every_ms"), "{err}");
        // Two 5 s periods after a leader within 10 s do not fit a 15 s heal.
        let err = auto("auto_compaction_retention = \"5s\"").unwrap_err();
        assert!(err.reason.contains("heal_secs of at least 21 s"), "{err}");
    }

    #[test]
    fn seeds_parse() {
        assert_eq!(parse_seeds(None, 3, &[]).unwrap(), vec![1, 2, 3]);
        assert_eq!(
            parse_seeds(None, 2, &[700, 90]).unwrap(),
            vec![1, 2, 700, 90]
        );
        // A replay names its seeds; regression seeds do not ride along.
        assert_eq!(parse_seeds(Some("2"), 9, &[700]).unwrap(), vec![1, 2]);
        assert_eq!(parse_seeds(Some("5..8"), 9, &[]).unwrap(), vec![5, 6, 7]);
        assert!(parse_seeds(Some("8..5"), 9, &[]).is_err());
        assert!(parse_seeds(Some("x"), 9, &[]).is_err());
    }
}
