//! The coordinator's configuration, with seed 001's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Backoff between retries of one call.
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
    /// The delay before retry number `retry` (1-based): exponential, capped, with
    /// jitter in [delay/2, delay] so clients that failed together do not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(retry.saturating_sub(1) as i32);
        let base = self.initial_delay.as_secs_f64() * exp;
        let capped = base.min(self.max_delay.as_secs_f64());
        let jitter = 0.5 + madsim::rand::random::<f64>() * 0.5;
        Duration::from_secs_f64(capped * jitter)
    }
}

/// How to reach the cluster (seed 001's `CoordinatorConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorConfig {
    /// Member addresses (`host:port`); coordd's or etcd's client port.
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Deadline of one attempt of one call (and of connecting).
    #[serde(with = "millis")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry: RetryConfig,
}

impl Default for CoordinatorConfig {
    /// `localhost:2379`, 5 s, 3 attempts from 100 ms doubling up to 2 s (seed 001).
    fn default() -> Self {
        CoordinatorConfig {
            endpoints: vec!["localhost:2379".to_string()],
            username: String::new(),
            password: String::new(),
            timeout: Duration::from_secs(5),
            retry: RetryConfig::default(),
        }
    }
}

impl CoordinatorConfig {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        CoordinatorConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Credentials, if a username is set.
    pub fn credentials(&self) -> Option<(String, String)> {
        (!self.username.is_empty()).then(|| (self.username.clone(), self.password.clone()))
    }
}

mod millis {
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
    fn defaults_are_the_seeds() {
        let c = CoordinatorConfig::default();
        assert_eq!(c.endpoints, vec!["localhost:2379"]);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.retry.initial_delay, Duration::from_millis(100));
        assert_eq!(c.retry.max_delay, Duration::from_secs(2));
        assert_eq!(c.credentials(), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let r = RetryConfig::default();
        for retry in 1..10 {
            let d = r.delay(retry);
            let full = (0.1 * 2f64.powi(retry as i32 - 1)).min(2.0);
            assert!(d.as_secs_f64() <= full + 1e-9, "retry {retry}: {d:?}");
            assert!(d.as_secs_f64() >= full / 2.0 - 1e-9, "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = CoordinatorConfig {
            username: "u".into(),
            password: "p".into(),
            ..CoordinatorConfig::new(["a:1", "b:2"])
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CoordinatorConfig>(&json).unwrap(), c);
    }
}
