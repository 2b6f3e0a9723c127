//! The event bus of a single-node deployment: the cluster is this node, so cluster
//! events reach this node's cluster subscribers; local events its local ones.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::flow::error::{FlowError, FlowResult};
use crate::flow::events::{
    check_rules, check_topic, route, ClusterEventBus, Event, EventEnvelope, EventStatistics,
    RouteAction, RoutingRule, Scope, ScopeStatistics,
};
use crate::flow::subscription::{subscription, Offered, Subscription, SubscriptionSender};
use crate::flow::types::NodeId;

/// Subscribers and counts of one scope.
#[derive(Default)]
struct Channel {
    topics: BTreeMap<String, Vec<SubscriptionSender<EventEnvelope>>>,
    last_sequence: u64,
    stats: ScopeStatistics,
}

impl Channel {
    /// Offers the event to every live subscriber of `topic`, counting each outcome.
    fn publish(&mut self, topic: &str, envelope: impl Fn(u64) -> EventEnvelope) {
        self.last_sequence += 1;
        self.stats.published += 1;
        let envelope = envelope(self.last_sequence);
        let stats = &mut self.stats;
        if let Some(subscribers) = self.topics.get_mut(topic) {
            subscribers.retain(|s| match s.offer(envelope.clone()) {
                Offered::Queued => {
                    stats.delivered += 1;
                    true
                }
                Offered::Dropped => {
                    stats.dropped += 1;
                    true
                }
                Offered::Closed => false,
            });
        }
    }

    fn statistics(&mut self) -> ScopeStatistics {
        let mut subscribers = 0;
        for senders in self.topics.values_mut() {
            senders.retain(|s| !s.is_closed());
            subscribers += senders.len() as u64;
        }
        self.topics.retain(|_, senders| !senders.is_empty());
        ScopeStatistics {
            subscribers,
            ..self.stats
        }
    }
}

struct Bus {
    cluster: Channel,
    local: Channel,
    rules: Vec<RoutingRule>,
    kept_local: u64,
    rejected: u64,
}

pub struct LocalEventBus {
    node: NodeId,
    queue_capacity: usize,
    bus: Mutex<Bus>,
}

impl LocalEventBus {
    /// `queue_capacity`: events a subscriber may leave unread before it lags.
    pub fn new(node: NodeId, queue_capacity: usize) -> Self {
        LocalEventBus {
            node,
            queue_capacity,
            bus: Mutex::new(Bus {
                cluster: Channel::default(),
                local: Channel::default(),
                rules: Vec::new(),
                kept_local: 0,
                rejected: 0,
            }),
        }
    }

    fn bus(&self) -> MutexGuard<'_, Bus> {
        self.bus.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the routing rules do with a publish on `topic`.
    pub fn route_action(&self, topic: &str) -> RouteAction {
        route(&self.bus().rules, topic).1
    }

    fn publish(&self, scope: Scope, topic: &str, event: Event) -> FlowResult<()> {
        check_topic(topic)?;
        // One lock for sequence and offers: every subscriber sees one order.
        let mut bus = self.bus();
        let (prefix, action) = route(&bus.rules, topic);
        let scope = match (action, scope) {
            (RouteAction::Reject, _) => {
                let prefix = prefix.unwrap_or_default().to_string();
                bus.rejected += 1;
                return Err(FlowError::Rejected {
                    topic: topic.to_string(),
                    prefix,
                });
            }
            (RouteAction::KeepLocal, Scope::Cluster) => {
                bus.kept_local += 1;
                Scope::Local
            }
            (_, scope) => scope,
        };
        let channel = match scope {
            Scope::Cluster => &mut bus.cluster,
            Scope::Local => &mut bus.local,
        };
        channel.publish(topic, |sequence| EventEnvelope {
            topic: topic.to_string(),
            scope,
            sequence,
            origin: self.node.clone(),
            event: event.clone(),
        });
        Ok(())
    }

    fn subscribe(&self, scope: Scope, topic: &str) -> FlowResult<Subscription<EventEnvelope>> {
        check_topic(topic)?;
        let (sender, subscription) = subscription(self.queue_capacity);
        let mut bus = self.bus();
        let channel = match scope {
            Scope::Cluster => &mut bus.cluster,
            Scope::Local => &mut bus.local,
        };
        channel
            .topics
            .entry(topic.to_string())
            .or_default()
            .push(sender);
        Ok(subscription)
    }
}

#[tonic::async_trait]
impl ClusterEventBus for LocalEventBus {
    async fn publish_cluster(&self, topic: &str, event: Event) -> FlowResult<()> {
        self.publish(Scope::Cluster, topic, event)
    }

    async fn publish_local(&self, topic: &str, event: Event) -> FlowResult<()> {
        self.publish(Scope::Local, topic, event)
    }

    async fn subscribe_cluster(&self, topic: &str) -> FlowResult<Subscription<EventEnvelope>> {
        self.subscribe(Scope::Cluster, topic)
    }

    async fn subscribe_local(&self, topic: &str) -> FlowResult<Subscription<EventEnvelope>> {
        self.subscribe(Scope::Local, topic)
    }

    async fn statistics(&self) -> FlowResult<EventStatistics> {
        let mut bus = self.bus();
        Ok(EventStatistics {
            cluster: bus.cluster.statistics(),
            local: bus.local.statistics(),
            kept_local: bus.kept_local,
            rejected: bus.rejected,
        })
    }

    async fn configure_routing(&self, rules: Vec<RoutingRule>) -> FlowResult<()> {
        check_rules(&rules)?;
        self.bus().rules = rules;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Event {
        Event::new("n", serde_json::json!(n))
    }

    #[tokio::test]
    async fn a_full_queue_counts_drops_and_tells_the_subscriber() {
        let bus = LocalEventBus::new("n".into(), 2);
        let mut slow = bus.subscribe_cluster("t").await.unwrap();
        let mut fast = bus.subscribe_cluster("t").await.unwrap();
        for n in 1..=3 {
            bus.publish_cluster("t", event(n)).await.unwrap();
            if n < 3 {
                assert_eq!(fast.recv().await.unwrap().sequence, n);
            }
        }
        let stats = bus.statistics().await.unwrap();
        assert_eq!(
            stats.cluster,
            ScopeStatistics {
                published: 3,
                delivered: 5,
                dropped: 1,
                subscribers: 2
            }
        );
        assert_eq!(slow.recv().await.unwrap().sequence, 1);
        assert_eq!(slow.recv().await.unwrap().sequence, 2);
        assert_eq!(slow.recv().await, Err(FlowError::Lagged { missed: 1 }));
        assert_eq!(fast.recv().await.unwrap().sequence, 3);
        drop(slow);
        assert_eq!(bus.statistics().await.unwrap().cluster.subscribers, 1);
    }

    #[tokio::test]
    async fn routing_keeps_topics_local_or_rejects_them() {
        let bus = LocalEventBus::new("n".into(), 8);
        let rules = vec![
            RoutingRule {
                topic_prefix: "metrics".into(),
                action: RouteAction::KeepLocal,
            },
            RoutingRule {
                topic_prefix: "secret".into(),
                action: RouteAction::Reject,
            },
        ];
        bus.configure_routing(rules).await.unwrap();
        let mut cluster = bus.subscribe_cluster("metrics.cpu").await.unwrap();
        let mut local = bus.subscribe_local("metrics.cpu").await.unwrap();
        bus.publish_cluster("metrics.cpu", event(1)).await.unwrap();
        let got = local.try_recv().unwrap().unwrap();
        assert_eq!(got.scope, Scope::Local);
        assert!(cluster.try_recv().is_none());
        assert!(matches!(
            bus.publish_local("secret.x", event(2)).await,
            Err(FlowError::Rejected { .. })
        ));
        let stats = bus.statistics().await.unwrap();
        assert_eq!((stats.kept_local, stats.rejected), (1, 1));
        assert_eq!((stats.cluster.published, stats.local.published), (0, 1));
    }
}
