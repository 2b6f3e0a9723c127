//! The `[library]` section of a scenario: how many clients of the client library
//! (`coordlab::library`) run which workload, and the library configuration
//! they use — from which the checkers' time bounds follow.

use std::time::Duration;

use serde::Deserialize;

/// Client-library workloads; each is off at 0 clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibrarySpec {
    /// Clients taking locks through the library and writing, while `is_held()`,
    /// to the lock's fenced resource.
    #[serde(default)]
    pub lock_clients: u64,
    /// Lock names the lock clients share.
    #[serde(default = "defaults::one")]
    pub locks: u64,
    #[serde(default = "defaults::ttl_secs")]
    pub lock_ttl_secs: u64,
    /// Share of lock attempts made with `try_acquire` rather than `acquire`.
    #[serde(default = "defaults::try_acquire_fraction")]
    pub try_acquire_fraction: f64,
    /// How long a holder keeps a lock, drawn in this range.
    #[serde(default = "defaults::hold_min_ms")]
    pub hold_min_ms: u64,
    #[serde(default = "defaults::hold_max_ms")]
    pub hold_max_ms: u64,
    /// Share of holds during which the holder is cut off from the cluster (not from
    /// its fenced resource) for 2.5–6 s.
    #[serde(default)]
    pub isolate_fraction: f64,
    /// Clients registering and deregistering instances of one service.
    #[serde(default)]
    pub providers: u64,
    #[serde(default = "defaults::ttl_secs")]
    pub registration_ttl_secs: u64,
    /// Clients holding `get_connection` and a `registry().watch` of the service,
    /// each pinned to one member.
    #[serde(default)]
    pub consumers: u64,
    /// Clients `config().set`-ing unique values to the config keys.
    #[serde(default)]
    pub writers: u64,
    #[serde(default = "defaults::config_keys")]
    pub config_keys: u64,
    /// Clients watching the config keys: odd ones `watch(key)`, even ones
    /// `watch_prefix`.
    #[serde(default)]
    pub watchers: u64,
    /// How many watchers (the first ones) are cut off from the cluster once, for
    /// 3–5 s starting 1–4 s after their watch opened: a client-side fault (no
    /// reset, just silence) that the library must notice and resume from.
    #[serde(default)]
    pub cut_off_watchers: u64,
    /// `CoordinatorConfig::timeout`: the deadline of one attempt of one call.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `RetryConfig::max_attempts`.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// `RetryConfig::initial_delay`.
    #[serde(default = "defaults::initial_delay_ms")]
    pub initial_delay_ms: u64,
    /// `RetryConfig::max_delay`: also the longest pause before a broken watch
    /// stream reopens.
    #[serde(default = "defaults::max_delay_ms")]
    pub max_delay_ms: u64,
}

mod defaults {
    pub fn one() -> u64 {
        1
    }
    pub fn ttl_secs() -> u64 {
        2
    }
    pub fn try_acquire_fraction() -> f64 {
        0.3
    }
    pub fn hold_min_ms() -> u64 {
        1_000
    }
    pub fn hold_max_ms() -> u64 {
        8_000
    }
    pub fn config_keys() -> u64 {
        3
    }
    pub fn request_timeout_ms() -> u64 {
        1_000
    }
    pub fn max_attempts() -> u32 {
        2
    }
    pub fn initial_delay_ms() -> u64 {
        100
    }
    pub fn max_delay_ms() -> u64 {
        500
    }
}

impl Default for LibrarySpec {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// The slack the checkers allow for the harness's own scheduling (a fenced write
/// or a routing sample runs on a timer of its own).
const SCHEDULING_SLACK_MS: u64 = 100;

impl LibrarySpec {
    pub fn any(&self) -> bool {
        self.lock_clients + self.providers + self.consumers + self.writers + self.watchers > 0
    }

    /// The library configuration every client of the run uses.
    pub fn coordinator_config(
        &self,
        endpoints: Vec<String>,
    ) -> coordlab::library::CoordinatorConfig {
        coordlab::library::CoordinatorConfig {
            endpoints,
            username: String::new(),
            password: String::new(),
            timeout: Duration::from_millis(self.request_timeout_ms),
            retry: coordlab::library::RetryConfig {
                max_attempts: self.max_attempts,
                initial_delay: Duration::from_millis(self.initial_delay_ms),
                max_delay: Duration::from_millis(self.max_delay_ms),
                multiplier: 2.0,
            },
        }
    }

    /// How long after the cluster removed a held lock's lease the guard may still
    /// say `is_held()`. The library promises that `is_held()` turns false once no
    /// renewal succeeded for a whole TTL; without clock faults the leader removes a
    /// lease no earlier than a TTL after the last renewal it answered, and that
    /// answer reaches the client within one renewal attempt (the library gives an
    /// attempt TTL/3). So a TTL and a third (+ scheduling slack). A leader whose
    /// clock jumped may remove a lease early, but then the holder's next renewal,
    /// due within TTL/3 and answered within another TTL/3, finds it gone: the same
    /// bound holds.
    pub fn stale_bound_ms(&self, ttl_ms: u64) -> u64 {
        ttl_ms + ttl_ms / 3 + SCHEDULING_SLACK_MS
    }

    /// How long after a consumer's own registry watch delivered a deregistration
    /// `next_channel()` may still return the instance. The consumer's watch and its
    /// connection's watch are served by the same member, whose watch hub hands a
    /// change to all its watchers at once; a stream that broke reopens after at most
    /// `max_delay` and reads what it missed. One second covers the reopening round
    /// trip and the delivery under the harness's worst latency faults (≤ 200 ms a
    /// message).
    pub fn routing_bound_ms(&self) -> u64 {
        self.max_delay_ms + 1_000 + SCHEDULING_SLACK_MS
    }

    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.lock_ttl_secs < 2 || self.registration_ttl_secs < 2 {
            return Err((
                "lock_ttl_secs",
                "lease TTLs below 2 s are raised to coordd's minimum; ask for at least 2".into(),
            ));
        }
        if self.lock_clients > 0 && self.locks == 0 {
            return Err(("locks", "lock clients need at least one lock".into()));
        }
        if !(0.0..=1.0).contains(&self.try_acquire_fraction) {
            return Err(("try_acquire_fraction", "must lie in 0..=1".into()));
        }
        if !(0.0..=1.0).contains(&self.isolate_fraction) {
            return Err(("isolate_fraction", "must lie in 0..=1".into()));
        }
        if self.hold_min_ms > self.hold_max_ms {
            return Err(("hold_min_ms", "must not exceed hold_max_ms".into()));
        }
        if (self.writers > 0 || self.watchers > 0) && self.config_keys == 0 {
            return Err(("config_keys", "writers and watchers need a key".into()));
        }
        if self.cut_off_watchers > self.watchers {
            return Err((
                "cut_off_watchers",
                "cannot cut off more watchers than there are".into(),
            ));
        }
        if self.consumers > 0 && self.providers == 0 {
            return Err((
                "consumers",
                "consumers route to providers' instances: add providers".into(),
            ));
        }
        let clients =
            self.lock_clients + self.providers + self.consumers + self.writers + self.watchers;
        if self
            .lock_clients
            .max(self.providers)
            .max(self.consumers)
            .max(self.writers)
            .max(self.watchers)
            > 20
            || clients > 60
        {
            return Err(("lock_clients", "at most 20 clients of each kind".into()));
        }
        if self.request_timeout_ms == 0 || self.max_attempts == 0 {
            return Err((
                "request_timeout_ms",
                "request_timeout_ms and max_attempts must be positive".into(),
            ));
        }
        if self.initial_delay_ms > self.max_delay_ms {
            return Err(("initial_delay_ms", "must not exceed max_delay_ms".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_the_library_configuration() {
        let spec = LibrarySpec::default();
        // 2 s + 666 ms + slack.
        assert_eq!(spec.stale_bound_ms(2_000), 2_766);
        // 500 ms of backoff + 1 s + slack.
        assert_eq!(spec.routing_bound_ms(), 1_600);
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |text: &str| {
            toml::from_str::<LibrarySpec>(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .0
        };
        assert_eq!(bad("lock_ttl_secs = 1"), "lock_ttl_secs");
        assert_eq!(bad("consumers = 1"), "consumers");
        assert_eq!(bad("writers = 1\nconfig_keys = 0"), "config_keys");
        assert_eq!(bad("hold_min_ms = 5\nhold_max_ms = 1"), "hold_min_ms");
        assert_eq!(
            bad("watchers = 1\ncut_off_watchers = 2"),
            "cut_off_watchers"
        );
        assert!(LibrarySpec::default().validate().is_ok());
        assert!(!LibrarySpec::default().any());
    }
}
