//! The cluster event bus: a cluster event is a put of its topic's key, so the
//! Raft log orders every event of every topic once, and each subscription —
//! on any node — is a watch of its topic that delivers them in that order
//! (`sequence` is the put's revision). Local events, routing rules and their
//! counts stay in the process, in a [`LocalEventBus`].

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::{Deserialize, Serialize};

use super::forward::forward;
use super::keys;
use super::kv::{decode_bytes, encode, Kv};
use crate::flow::error::FlowResult;
use crate::flow::events::{
    check_topic, ClusterEventBus, Event, EventEnvelope, EventStatistics, RouteAction, RoutingRule,
    Scope, ScopeStatistics,
};
use crate::flow::local::LocalEventBus;
use crate::flow::subscription::{subscription, Offered, Subscription, SubscriptionSender};
use crate::flow::types::NodeId;
use crate::seams::mutants;

/// What a topic's key holds for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EventRecord {
    origin: NodeId,
    event: Event,
}

/// This node's cluster subscriptions by topic; their forwarders own the senders,
/// so a subscription whose watch ended closes.
type Senders = Vec<(String, Weak<SubscriptionSender<EventEnvelope>>)>;

fn live(s: &Weak<SubscriptionSender<EventEnvelope>>) -> bool {
    s.upgrade().is_some_and(|s| !s.is_closed())
}

pub struct RaftEventBus {
    kv: Kv,
    node: NodeId,
    queue_capacity: usize,
    /// Local scope, routing and the counts of both: cluster publishes a rule keeps
    /// local or rejects go through it too.
    local: LocalEventBus,
    cluster: Arc<Mutex<ScopeStatistics>>,
    subscribers: Arc<Mutex<Senders>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Offers `envelope` and counts the outcome under the statistics' lock: whoever
/// reads the statistics after receiving the event sees it counted.
fn offer_counted(
    stats: &Mutex<ScopeStatistics>,
    sender: &SubscriptionSender<EventEnvelope>,
    envelope: EventEnvelope,
) -> Offered {
    let mut stats = locked(stats);
    let offered = sender.offer(envelope);
    match offered {
        Offered::Queued => stats.delivered += 1,
        Offered::Dropped => stats.dropped += 1,
        Offered::Closed => {}
    }
    offered
}

impl RaftEventBus {
    pub fn new(kv: Kv, node: NodeId, queue_capacity: usize) -> Self {
        RaftEventBus {
            local: LocalEventBus::new(node.clone(), queue_capacity),
            kv,
            node,
            queue_capacity,
            cluster: Arc::default(),
            subscribers: Arc::default(),
        }
    }

    /// The mutant hands this node's own events to its own subscribers as soon as
    /// its put returns, ahead of the log's order (and skips them in the watch).
    fn deliver_own_early(&self, topic: &str, envelope: &EventEnvelope) {
        let senders: Vec<_> = locked(&self.subscribers)
            .iter()
            .filter(|(t, _)| t == topic)
            .filter_map(|(_, s)| s.upgrade())
            .collect();
        for sender in senders {
            offer_counted(&self.cluster, &sender, envelope.clone());
        }
    }
}

#[tonic::async_trait]
impl ClusterEventBus for RaftEventBus {
    async fn publish_cluster(&self, topic: &str, event: Event) -> FlowResult<()> {
        check_topic(topic)?;
        if self.local.route_action(topic) != RouteAction::AsPublished {
            // Kept local or rejected: the local bus applies the rule and counts it.
            return self.local.publish_cluster(topic, event).await;
        }
        let record = EventRecord {
            origin: self.node.clone(),
            event,
        };
        let revision = self
            .kv
            .put(
                "publish_cluster",
                &keys::event_topic(topic),
                encode(&record),
                0,
            )
            .await?;
        locked(&self.cluster).published += 1;
        if mutants::active("flow_events_per_node_order") {
            let envelope = EventEnvelope {
                topic: topic.to_string(),
                scope: Scope::Cluster,
                sequence: revision as u64,
                origin: record.origin,
                event: record.event,
            };
            self.deliver_own_early(topic, &envelope);
        }
        Ok(())
    }

    async fn publish_local(&self, topic: &str, event: Event) -> FlowResult<()> {
        self.local.publish_local(topic, event).await
    }

    /// Takes effect before it returns: every cluster event published after that
    /// (at a later revision) reaches the subscription.
    async fn subscribe_cluster(&self, topic: &str) -> FlowResult<Subscription<EventEnvelope>> {
        check_topic(topic)?;
        let now = self.kv.revision("subscribe_cluster").await?;
        let (sender, subscription) = subscription(self.queue_capacity);
        let sender = Arc::new(sender);
        {
            let mut subscribers = locked(&self.subscribers);
            subscribers.retain(|(_, s)| live(s));
            subscribers.push((topic.to_string(), Arc::downgrade(&sender)));
        }
        let watch = self.kv.watch_key(&keys::event_topic(topic), now + 1);
        let (topic, node, stats) = (topic.to_string(), self.node.clone(), self.cluster.clone());
        let early = mutants::active("flow_events_per_node_order");
        forward(
            watch,
            sender,
            move |e| match decode_bytes::<EventRecord>("event", &e.key, &e.value) {
                Ok(record) if early && record.origin == node => None,
                Ok(record) => Some(EventEnvelope {
                    topic: topic.clone(),
                    scope: Scope::Cluster,
                    sequence: e.revision as u64,
                    origin: record.origin,
                    event: record.event,
                }),
                Err(err) => {
                    tracing::warn!(error = %err, "flow: skipping an event that does not decode");
                    None
                }
            },
            move |sender, envelope| offer_counted(&stats, sender, envelope),
        );
        Ok(subscription)
    }

    async fn subscribe_local(&self, topic: &str) -> FlowResult<Subscription<EventEnvelope>> {
        self.local.subscribe_local(topic).await
    }

    async fn statistics(&self) -> FlowResult<EventStatistics> {
        let mut stats = self.local.statistics().await?;
        let live = {
            let mut subscribers = locked(&self.subscribers);
            subscribers.retain(|(_, s)| live(s));
            subscribers.len() as u64
        };
        stats.cluster = ScopeStatistics {
            subscribers: live,
            ..*locked(&self.cluster)
        };
        Ok(stats)
    }

    async fn configure_routing(&self, rules: Vec<RoutingRule>) -> FlowResult<()> {
        self.local.configure_routing(rules).await
    }
}
