//! The `[bridge]` section of a scenario: Link Bridge (seed 003) brokers, agents and
//! clients beside the cluster (`sim/bridge/`), and the faults that hit them on top
//! of the cluster's own: brokers crashing, agents crashing or cut off from some
//! brokers, agents' instances leaving with shutdown notices.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    /// Brokers, each on its own host with a connection to every member; 0: no bridge.
    #[serde(default)]
    pub brokers: u64,
    /// Agents, each fronting one instance of the service at a time.
    #[serde(default = "defaults::agents")]
    pub agents: u64,
    /// Clients subscribed to the service, calling it through a balanced channel.
    #[serde(default = "defaults::clients")]
    pub clients: u64,
    /// An agent nobody hears for this long is down (`local.clientTimeout`).
    #[serde(default = "defaults::agent_ttl_ms")]
    pub agent_ttl_ms: u64,
    /// Share of instance retirements announced by a shutdown notice (the others
    /// deregister without one).
    #[serde(default = "defaults::notice_fraction")]
    pub notice_fraction: f64,
    /// A notice's grace period, drawn in this range.
    #[serde(default = "defaults::grace_min_ms")]
    pub grace_min_ms: u64,
    #[serde(default = "defaults::grace_max_ms")]
    pub grace_max_ms: u64,
    /// Broker crashes during the safety phase (one broker down at a time).
    #[serde(default)]
    pub broker_crashes: u64,
    /// Agent crashes (the agent and its instance die; most come back).
    #[serde(default)]
    pub agent_crashes: u64,
    /// Times an agent is cut off from some (or all) brokers for 2–6 s.
    #[serde(default)]
    pub agent_cut_offs: u64,
    /// The clients' `FailoverConfig`.
    #[serde(default = "defaults::retry_interval_ms")]
    pub retry_interval_ms: u64,
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// Deadline of one client attempt (connect, subscribe, call).
    #[serde(default = "defaults::client_timeout_ms")]
    pub client_timeout_ms: u64,
    /// A client calls the service this often.
    #[serde(default = "defaults::call_interval_ms")]
    pub call_interval_ms: u64,
}

mod defaults {
    pub fn agents() -> u64 {
        3
    }
    pub fn clients() -> u64 {
        3
    }
    pub fn agent_ttl_ms() -> u64 {
        2_000
    }
    pub fn notice_fraction() -> f64 {
        0.7
    }
    pub fn grace_min_ms() -> u64 {
        1_500
    }
    pub fn grace_max_ms() -> u64 {
        3_000
    }
    pub fn retry_interval_ms() -> u64 {
        300
    }
    pub fn max_retries() -> u32 {
        3
    }
    pub fn client_timeout_ms() -> u64 {
        500
    }
    pub fn call_interval_ms() -> u64 {
        100
    }
}

impl Default for BridgeSpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// Slack for the harness's own scheduling (a call in flight, a task's turn).
const SCHEDULING_SLACK_MS: u64 = 200;

impl BridgeSpec {
    pub fn any(&self) -> bool {
        self.brokers > 0
    }

    pub fn agent_ttl(&self) -> Duration {
        Duration::from_millis(self.agent_ttl_ms)
    }

    /// How long after its broker's view stopped showing an instance serving a
    /// client may still call it: the broker pushes the change at once, the
    /// client's channel applies it before its next call, and a call already sent
    /// takes at most one attempt.
    pub fn notice_bound_ms(&self) -> u64 {
        self.client_timeout_ms + SCHEDULING_SLACK_MS
    }

    /// How long a client whose broker died may go without one: the seed's
    /// `retry_interval × max_retries`, plus one attempt's deadline (connecting and
    /// subscribing to the next broker).
    pub fn failover_bound_ms(&self) -> u64 {
        self.retry_interval_ms * u64::from(self.max_retries)
            + 2 * self.client_timeout_ms
            + SCHEDULING_SLACK_MS
    }

    /// How long after healing an agent nobody hears may still be up: its lease's
    /// TTL, the leader's expiry pass and a commit.
    pub fn down_bound_ms(&self) -> u64 {
        self.agent_ttl_ms + 3_000
    }

    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.any() {
            return Ok(());
        }
        if self.agent_ttl_ms < 2_000 {
            return Err((
                "agent_ttl_ms",
                "leases below 2 s are raised to coordd's minimum; ask for at least 2000".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.notice_fraction) {
            return Err(("notice_fraction", "must lie in 0..=1".into()));
        }
        if self.grace_min_ms > self.grace_max_ms || self.grace_min_ms <= self.notice_bound_ms() {
            return Err((
                "grace_min_ms",
                format!(
                    "must not exceed grace_max_ms and must exceed the notice bound ({} ms), \
                     or a broker that never pushes notices could not be told apart",
                    self.notice_bound_ms()
                ),
            ));
        }
        if self.agents == 0 || self.agents > 20 || self.clients > 20 || self.brokers > 9 {
            return Err((
                "agents",
                "need 1 to 20 agents, at most 20 clients and at most 9 brokers".into(),
            ));
        }
        if self.broker_crashes > 0 && self.brokers < 2 {
            return Err((
                "broker_crashes",
                "a client can fail over only with at least two brokers".into(),
            ));
        }
        if self.retry_interval_ms == 0 || self.client_timeout_ms == 0 || self.call_interval_ms == 0
        {
            return Err((
                "retry_interval_ms",
                "retry_interval_ms, client_timeout_ms and call_interval_ms must be positive".into(),
            ));
        }
        Ok(())
    }
}
