//! The `[flow]` section of a scenario: FlowBuilder (seed 002) processes as client
//! hosts of the cluster (`sim/flow/`), each with its own Raft service container
//! (`ServiceContainer::new_cluster`), proposing, locking, publishing and
//! broadcasting state changes under the cluster's faults.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Flow hosts (`flow-1` …), each with its own container; 0: no flow workload.
    #[serde(default)]
    pub hosts: u64,
    /// The first `subscribers` hosts subscribe to the cluster topic at start.
    #[serde(default = "defaults::subscribers")]
    pub subscribers: u64,
    /// `consensus.timeout`: a proposal's deadline, and every call's.
    #[serde(default = "defaults::consensus_timeout_ms")]
    pub consensus_timeout_ms: u64,
    /// A lock hold's TTL in whole seconds (leases are), drawn in this range: at
    /// least 2 (coordd's minimum lease), and longer than one call attempt
    /// (`consensus_timeout_ms`), so a renew's answer comes within the TTL.
    #[serde(default = "defaults::lock_ttl_min_secs")]
    pub lock_ttl_min_secs: u64,
    #[serde(default = "defaults::lock_ttl_max_secs")]
    pub lock_ttl_max_secs: u64,
    /// Share of holds whose holder sleeps past the TTL before renewing.
    #[serde(default = "defaults::late_renew_fraction")]
    pub late_renew_fraction: f64,
    /// Pause between two operations of a host, drawn up to this.
    #[serde(default = "defaults::op_pause_max_ms")]
    pub op_pause_max_ms: u64,
}

mod defaults {
    pub fn subscribers() -> u64 {
        2
    }
    pub fn consensus_timeout_ms() -> u64 {
        1_500
    }
    pub fn lock_ttl_min_secs() -> u64 {
        2
    }
    pub fn lock_ttl_max_secs() -> u64 {
        3
    }
    pub fn late_renew_fraction() -> f64 {
        0.3
    }
    pub fn op_pause_max_ms() -> u64 {
        200
    }
}

impl Default for FlowSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl FlowSpec {
    pub fn any(&self) -> bool {
        self.hosts > 0
    }

    pub fn consensus_timeout(&self) -> Duration {
        Duration::from_millis(self.consensus_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.any() {
            return Ok(());
        }
        if self.hosts > 20 || self.subscribers > self.hosts {
            return Err((
                "hosts",
                "at most 20 hosts, and no more subscribers than hosts".into(),
            ));
        }
        if self.consensus_timeout_ms == 0 || self.consensus_timeout_ms > 2_000 {
            return Err((
                "consensus_timeout_ms",
                "must lie in 1..=2000: one attempt of a renew must end before a hold's TTL".into(),
            ));
        }
        if self.lock_ttl_min_secs < 2
            || self.lock_ttl_min_secs > self.lock_ttl_max_secs
            || self.lock_ttl_min_secs * 1000 <= self.consensus_timeout_ms
        {
            return Err((
                "lock_ttl_min_secs",
                "must be at least 2, above consensus_timeout_ms and at most lock_ttl_max_secs"
                    .into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.late_renew_fraction) {
            return Err(("late_renew_fraction", "must lie in 0..=1".into()));
        }
        Ok(())
    }
}
