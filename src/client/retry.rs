//! When a call is tried again, and after how long.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::raft::rpc_status::leader_hint;

/// Backoff between attempts of one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryConfig {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    #[serde(with = "millis")]
    pub initial_delay: Duration,
    #[serde(with = "millis")]
    pub max_delay: Duration,
    pub multiplier: f64,
}

impl Default for RetryConfig {
    /// Seed 001's: 3 attempts, from 100 ms doubling up to 2 s.
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            multiplier: 2.0,
        }
    }
}

impl RetryConfig {
    /// Attempts until a deadline rather than a count: from 50 ms doubling up to 1 s.
    pub fn until_deadline() -> Self {
        RetryConfig {
            max_attempts: u32::MAX,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            multiplier: 2.0,
        }
    }

    /// The delay before retry number `retry` (1-based): exponential, capped, with
    /// jitter in [delay/2, delay] so clients that failed together do not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(retry.saturating_sub(1).min(64) as i32);
        let base = self.initial_delay.as_secs_f64() * exp;
        let capped = base.min(self.max_delay.as_secs_f64());
        let jitter = 0.5 + madsim::rand::random::<f64>() * 0.5;
        Duration::from_secs_f64(capped * jitter)
    }
}

/// The one rule for every client: another attempt (on this or another member) may
/// succeed — the member was unreachable, slow, or not the leader, or the proposal was
/// dropped by a leader change.
pub fn is_retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
    ) || is_not_leader(s)
}

/// etcd's "not leader" (UNAVAILABLE), or coordlab's (FAILED_PRECONDITION with the
/// leader's id and address in the metadata).
pub fn is_not_leader(s: &Status) -> bool {
    s.message() == "etcdserver: not leader" || leader_hint(s).is_some()
}

/// Durations as milliseconds in config files.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let r = RetryConfig::default();
        for retry in 1..10 {
            let d = r.delay(retry);
            let full = (0.1 * 2f64.powi(retry as i32 - 1)).min(2.0);
            assert!(d.as_secs_f64() <= full + 1e-9, "retry {retry}: {d:?}");
            assert!(d.as_secs_f64() >= full / 2.0 - 1e-9, "retry {retry}: {d:?}");
        }
        assert!(RetryConfig::until_deadline().delay(u32::MAX) <= Duration::from_secs(1));
    }

    #[test]
    fn one_rule_for_what_is_retried() {
        assert!(is_retryable(&Status::unavailable("etcdserver: not leader")));
        assert!(is_retryable(&Status::aborted(
            "proposal dropped: leader changed"
        )));
        let not_leader =
            crate::raft::rpc_status::status_from_raft_error(crate::raft::RaftError::NotLeader {
                leader_id: 2,
                leader_addr: Some("10.0.0.2:7000".into()),
            });
        assert!(is_retryable(&not_leader));
        // Refusals that another attempt cannot fix, including a late retry.
        assert!(!is_retryable(&Status::failed_precondition(
            "coordlab: request overtaken by the same client's request 2"
        )));
        assert!(!is_retryable(&Status::invalid_argument(
            "etcdserver: key is not provided"
        )));
        assert!(!is_retryable(&Status::not_found(
            "etcdserver: requested lease not found"
        )));
    }
}
