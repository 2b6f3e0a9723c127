//! The coordinator's configuration, with seed 001's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{millis, ConnectionConfig, RetryConfig};

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

    /// The client core's settings for this configuration.
    pub fn connection_config(&self) -> ConnectionConfig {
        ConnectionConfig {
            endpoints: self.endpoints.clone(),
            credentials: self.credentials(),
            attempt_timeout: self.timeout,
            retry: self.retry.clone(),
            deadline: None,
        }
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
