//! The event bus: cluster-wide and node-local events on topics.

use serde::{Deserialize, Serialize};

use super::error::{FlowError, FlowResult};
use super::subscription::Subscription;
use super::types::NodeId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    pub payload: serde_json::Value,
}

impl Event {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Event {
            kind: kind.into(),
            payload,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Every subscriber in the cluster.
    Cluster,
    /// Subscribers on the publishing node only.
    Local,
}

/// An event as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub topic: String,
    pub scope: Scope,
    /// The event's place in its scope's one order (every topic): increasing, the
    /// same for every subscriber that receives it.
    pub sequence: u64,
    pub origin: NodeId,
    pub event: Event,
}

/// Counts for one scope. Every publish offers the event to each subscriber of its
/// topic: it is `delivered` into the subscriber's queue or, the queue being full,
/// `dropped` (and the subscriber sees a `Lagged` gap there). So `delivered +
/// dropped` grows by the topic's subscriber count with each publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeStatistics {
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Live subscriptions now.
    pub subscribers: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStatistics {
    pub cluster: ScopeStatistics,
    pub local: ScopeStatistics,
    /// `publish_cluster` calls a `KeepLocal` rule turned into local publishes
    /// (counted in `local.published`).
    pub kept_local: u64,
    /// Publishes a `Reject` rule refused.
    pub rejected: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteAction {
    /// Events go where they were published to (the default).
    AsPublished,
    /// `publish_cluster` on these topics stays on the node: it reaches this
    /// node's local subscribers (chatty topics off the cluster).
    KeepLocal,
    /// Publishes on these topics fail with `Rejected`.
    Reject,
}

/// Applies to topics starting with `topic_prefix`; the longest matching prefix wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRule {
    pub topic_prefix: String,
    pub action: RouteAction,
}

/// Where a publish on `topic` goes under `rules`: the matching rule's prefix and
/// action (`AsPublished` and no prefix when none matches).
pub fn route<'a>(rules: &'a [RoutingRule], topic: &str) -> (Option<&'a str>, RouteAction) {
    rules
        .iter()
        .filter(|r| topic.starts_with(&r.topic_prefix))
        .max_by_key(|r| r.topic_prefix.len())
        .map_or((None, RouteAction::AsPublished), |r| {
            (Some(r.topic_prefix.as_str()), r.action)
        })
}

/// Refuses a rule set with a prefix listed twice (which one would win is unclear).
pub fn check_rules(rules: &[RoutingRule]) -> FlowResult<()> {
    for (i, rule) in rules.iter().enumerate() {
        if rules[..i]
            .iter()
            .any(|r| r.topic_prefix == rule.topic_prefix)
        {
            return Err(FlowError::invalid(
                "routing rules",
                format!("prefix {:?} is listed twice", rule.topic_prefix),
            ));
        }
    }
    Ok(())
}

/// Topics are non-empty.
pub fn check_topic(topic: &str) -> FlowResult<()> {
    if topic.is_empty() {
        return Err(FlowError::invalid("topic", "must not be empty"));
    }
    Ok(())
}

/// An event bus.
///
/// Contract: an event `publish_cluster` returned `Ok` for reaches every
/// subscription to its topic taken by `subscribe_cluster` before the call and still
/// open, on every node, once, in one order shared by all of them (`sequence`
/// increasing); `publish_local` reaches only the publishing node's
/// `subscribe_local` subscriptions. Cluster and local events never cross over
/// except by a `KeepLocal` rule. A subscriber too slow to keep up misses events, is
/// told so (`Lagged`), and they are counted as dropped in `statistics`.
#[tonic::async_trait]
pub trait ClusterEventBus: Send + Sync {
    async fn publish_cluster(&self, topic: &str, event: Event) -> FlowResult<()>;

    async fn publish_local(&self, topic: &str, event: Event) -> FlowResult<()>;

    async fn subscribe_cluster(&self, topic: &str) -> FlowResult<Subscription<EventEnvelope>>;

    async fn subscribe_local(&self, topic: &str) -> FlowResult<Subscription<EventEnvelope>>;

    /// Counts on this node since it started.
    async fn statistics(&self) -> FlowResult<EventStatistics>;

    /// Replaces the routing rules.
    async fn configure_routing(&self, rules: Vec<RoutingRule>) -> FlowResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, action: RouteAction) -> RoutingRule {
        RoutingRule {
            topic_prefix: prefix.into(),
            action,
        }
    }

    #[test]
    fn the_longest_matching_prefix_routes() {
        let rules = [
            rule("metrics", RouteAction::KeepLocal),
            rule("metrics.audit", RouteAction::AsPublished),
            rule("", RouteAction::Reject),
        ];
        assert_eq!(
            route(&rules, "metrics.cpu"),
            (Some("metrics"), RouteAction::KeepLocal)
        );
        assert_eq!(
            route(&rules, "metrics.audit.x"),
            (Some("metrics.audit"), RouteAction::AsPublished)
        );
        assert_eq!(route(&rules, "other"), (Some(""), RouteAction::Reject));
        assert_eq!(route(&[], "other"), (None, RouteAction::AsPublished));
        assert!(check_rules(&rules).is_ok());
        assert!(check_rules(&[
            rule("a", RouteAction::Reject),
            rule("a", RouteAction::KeepLocal)
        ])
        .is_err());
    }
}
