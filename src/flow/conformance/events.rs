//! The event bus: one order, scopes kept apart, drops counted, routing.

use std::collections::BTreeSet;

use super::{eventually, next, During};
use super::{Conformance, ConformanceError, ConformanceOptions};
use crate::flow::container::ServiceContainer;
use crate::flow::error::FlowError;
use crate::flow::events::{Event, EventEnvelope, EventStatistics, RouteAction, RoutingRule, Scope};
use crate::flow::subscription::Subscription;

fn event(n: usize) -> Event {
    Event::new("n", serde_json::json!(n))
}

/// What changed in the statistics between two readings.
fn delta(before: &EventStatistics, after: &EventStatistics) -> [u64; 8] {
    let counts = |s: &EventStatistics| {
        [
            s.cluster.published,
            s.cluster.delivered,
            s.cluster.dropped,
            s.local.published,
            s.local.delivered,
            s.local.dropped,
            s.kept_local,
            s.rejected,
        ]
    };
    let (b, a) = (counts(before), counts(after));
    std::array::from_fn(|i| a[i].saturating_sub(b[i]))
}

/// Reads `count` envelopes from `sub`.
async fn read(
    sub: &mut Subscription<EventEnvelope>,
    count: usize,
    o: &ConformanceOptions,
) -> Result<Vec<EventEnvelope>, ConformanceError> {
    let mut got = Vec::new();
    for _ in 0..count {
        got.push(next(sub, o.wait, "every subscriber receives every cluster event").await?);
    }
    Ok(got)
}

/// Cluster events published concurrently reach every subscriber once, in one
/// order with increasing sequences; the statistics count them.
pub async fn events_cluster_delivery_is_once_in_one_order(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    const PUBLISHERS: usize = 3;
    // No more than a subscriber's queue holds: nothing is read until all is sent.
    let each = (c.config.events.subscriber_queue / PUBLISHERS).clamp(1, 10);
    let topic = o.name("events.order");
    let before = c.event_bus.statistics().await.during("statistics")?;
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(
            c.event_bus
                .subscribe_cluster(&topic)
                .await
                .during("subscribe_cluster")?,
        );
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (c, topic) = (c.clone(), topic.clone());
        publishers.push(tokio::spawn(async move {
            for n in 0..each {
                c.event_bus
                    .publish_cluster(&topic, event(p * each + n))
                    .await?;
            }
            Ok::<(), FlowError>(())
        }));
    }
    for p in publishers {
        p.await
            .expect("a publisher task")
            .during("publish_cluster")?;
    }
    let total = PUBLISHERS * each;
    let first = read(&mut subs[0], total, o).await?;
    let payloads: BTreeSet<_> = first.iter().map(|e| e.event.payload.to_string()).collect();
    ensure!(
        payloads.len() == total,
        "each event once",
        "{} distinct of {total}",
        payloads.len()
    );
    ensure!(
        first.windows(2).all(|w| w[0].sequence < w[1].sequence)
            && first
                .iter()
                .all(|e| e.scope == Scope::Cluster && e.topic == topic),
        "sequences increase",
        "{:?}",
        first.iter().map(|e| e.sequence).collect::<Vec<_>>()
    );
    for sub in &mut subs[1..] {
        let other = read(sub, total, o).await?;
        ensure!(
            other == first,
            "one order for every subscriber",
            "{other:?} vs {first:?}"
        );
    }
    let after = c.event_bus.statistics().await.during("statistics")?;
    let [published, delivered, dropped, ..] = delta(&before, &after);
    let expected = [total as u64, 3 * total as u64, 0];
    ensure!(
        [published, delivered, dropped] == expected,
        "statistics count published, delivered, dropped",
        "got {:?}, expected {expected:?}",
        [published, delivered, dropped]
    );
    ensure!(
        after.cluster.subscribers >= 3,
        "statistics count subscribers",
        "{after:?}"
    );
    Ok(())
}

async fn nothing_more(
    sub: &mut Subscription<EventEnvelope>,
    o: &ConformanceOptions,
    check: &'static str,
) -> Conformance {
    tokio::time::sleep(o.settle).await;
    match sub.try_recv() {
        None => Ok(()),
        Some(extra) => Err(ConformanceError::Violation {
            check,
            detail: format!("unexpected {extra:?}"),
        }),
    }
}

/// Local events reach local subscribers only, cluster events cluster subscribers
/// only, and each is counted in its own scope.
pub async fn events_local_and_cluster_stay_apart(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let topic = o.name("events.scope");
    let bus = &c.event_bus;
    let before = bus.statistics().await.during("statistics")?;
    let mut cluster = bus
        .subscribe_cluster(&topic)
        .await
        .during("subscribe_cluster")?;
    let mut local = bus
        .subscribe_local(&topic)
        .await
        .during("subscribe_local")?;
    bus.publish_local(&topic, event(1))
        .await
        .during("publish_local")?;
    bus.publish_cluster(&topic, event(2))
        .await
        .during("publish_cluster")?;
    bus.publish_local(&topic, event(3))
        .await
        .during("publish_local")?;
    let got = next(
        &mut cluster,
        o.wait,
        "cluster subscribers get cluster events",
    )
    .await?;
    ensure!(
        got.event == event(2) && got.scope == Scope::Cluster,
        "cluster subscribers get only cluster events",
        "{got:?}"
    );
    for n in [1, 3] {
        let got = next(&mut local, o.wait, "local subscribers get local events").await?;
        ensure!(
            got.event == event(n) && got.scope == Scope::Local,
            "local subscribers get only local events, in order",
            "expected event {n}, got {got:?}"
        );
    }
    nothing_more(&mut cluster, o, "local events stay local").await?;
    nothing_more(
        &mut local,
        o,
        "cluster events do not reach local subscribers",
    )
    .await?;
    let after = bus.statistics().await.during("statistics")?;
    let [c_pub, c_del, c_drop, l_pub, l_del, l_drop, ..] = delta(&before, &after);
    ensure!(
        [c_pub, c_del, c_drop, l_pub, l_del, l_drop] == [1, 1, 0, 2, 2, 0],
        "each scope counts its own events",
        "cluster {:?}, local {:?}",
        [c_pub, c_del, c_drop],
        [l_pub, l_del, l_drop]
    );
    Ok(())
}

/// A subscriber that does not read misses what does not fit its queue: it is
/// told how many (`Lagged`) after what was queued, and they are counted dropped.
pub async fn events_drops_are_counted_and_reported(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    const OVER: usize = 3;
    let queue = c.config.events.subscriber_queue;
    let topic = o.name("events.drops");
    let bus = &c.event_bus;
    let before = bus.statistics().await.during("statistics")?;
    let mut sub = bus
        .subscribe_cluster(&topic)
        .await
        .during("subscribe_cluster")?;
    for n in 0..queue + OVER {
        bus.publish_cluster(&topic, event(n))
            .await
            .during("publish_cluster")?;
    }
    let counted = eventually(o.wait, || async {
        let now = bus.statistics().await.during("statistics")?;
        let [_, delivered, dropped, ..] = delta(&before, &now);
        Ok(delivered + dropped == (queue + OVER) as u64)
    });
    ensure!(
        counted.await?,
        "every offer is counted",
        "not within {:?}",
        o.wait
    );
    let after = bus.statistics().await.during("statistics")?;
    let [published, delivered, dropped, ..] = delta(&before, &after);
    ensure!(
        [published, delivered, dropped] == [(queue + OVER) as u64, queue as u64, OVER as u64],
        "drops are counted",
        "published/delivered/dropped = {:?} with a queue of {queue}",
        [published, delivered, dropped]
    );
    for n in 0..queue {
        let got = next(&mut sub, o.wait, "queued events are kept").await?;
        ensure!(
            got.event == event(n),
            "queued events are kept, in order",
            "{n}: {got:?}"
        );
    }
    let gap = tokio::time::timeout(o.wait, sub.recv()).await;
    ensure!(
        gap == Ok(Err(FlowError::Lagged {
            missed: OVER as u64
        })),
        "a subscriber is told what it missed",
        "{gap:?}"
    );
    Ok(())
}

/// A `KeepLocal` rule turns cluster publishes on its topics local; a `Reject` rule
/// refuses them; rules with one prefix twice are refused.
pub async fn events_routing_rules_apply(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let bus = &c.event_bus;
    let chatty = o.name("events.metrics");
    let secret = o.name("events.secret");
    let rule = |prefix: &str, action| RoutingRule {
        topic_prefix: prefix.to_string(),
        action,
    };
    let twice = vec![
        rule(&chatty, RouteAction::Reject),
        rule(&chatty, RouteAction::KeepLocal),
    ];
    let refused = bus.configure_routing(twice).await;
    ensure!(
        matches!(refused, Err(FlowError::InvalidArgument { .. })),
        "ambiguous rules are refused",
        "{refused:?}"
    );
    let rules = vec![
        rule(&chatty, RouteAction::KeepLocal),
        rule(&secret, RouteAction::Reject),
    ];
    bus.configure_routing(rules)
        .await
        .during("configure_routing")?;
    let before = bus.statistics().await.during("statistics")?;
    let topic = format!("{chatty}.cpu");
    let mut cluster = bus
        .subscribe_cluster(&topic)
        .await
        .during("subscribe_cluster")?;
    let mut local = bus
        .subscribe_local(&topic)
        .await
        .during("subscribe_local")?;
    bus.publish_cluster(&topic, event(1))
        .await
        .during("publish_cluster")?;
    let got = next(&mut local, o.wait, "KeepLocal delivers locally").await?;
    ensure!(
        got.scope == Scope::Local,
        "KeepLocal delivers locally",
        "{got:?}"
    );
    nothing_more(&mut cluster, o, "KeepLocal keeps the event off the cluster").await?;
    let rejected = bus.publish_local(&format!("{secret}.x"), event(2)).await;
    ensure!(
        matches!(rejected, Err(FlowError::Rejected { .. })),
        "Reject refuses publishes",
        "{rejected:?}"
    );
    let after = bus.statistics().await.during("statistics")?;
    let [c_pub, _, _, l_pub, _, _, kept, rejected] = delta(&before, &after);
    ensure!(
        [c_pub, l_pub, kept, rejected] == [0, 1, 1, 1],
        "routing is counted",
        "cluster/local published, kept local, rejected = {:?}",
        [c_pub, l_pub, kept, rejected]
    );
    bus.configure_routing(Vec::new())
        .await
        .during("configure_routing")
}
