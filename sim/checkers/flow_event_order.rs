//! FlowBuilder event bus: every `publish_cluster` that returned `Ok` is delivered
//! exactly once to every subscriber that subscribed before the publish was
//! invoked and stayed subscribed without a `Lagged` gap; all cluster subscribers
//! share one total order (one sequence names one event; each subscriber's
//! sequences increase); and a `publish_local` reaches only subscribers on its own
//! node (seed 002's `ClusterEventBus`; the contract in `src/flow/events.rs`).

use std::collections::BTreeMap;

use super::{violation, violation_at_seq, RunEnd, Violation};
use crate::sim::trace::flow_scope::{CLUSTER, LOCAL};
use crate::sim::trace::{FlowEvent, TraceEvent};

pub const NAME: &str = "flow_event_order";

/// A subscription as the history shows it.
#[derive(Default)]
struct Subscriber {
    subscribed_seq: u64,
    /// Every payload received, with its sequence and event seq.
    received: BTreeMap<String, (u64, u64)>,
    last: Option<(u64, u64)>,
    lagged: bool,
    ended: bool,
}

/// A publish: the seq of its invocation, and whether it returned Ok.
struct Publish {
    invoked_seq: u64,
    scope: String,
    ok: bool,
}

/// The host that published `payload` (`<host>#<n>`).
fn publisher(payload: &str) -> &str {
    payload.rsplit_once('#').map_or(payload, |(h, _)| h)
}

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    if !FlowEvent::ended(end.events) {
        return Ok(None);
    }
    let mut publishes: BTreeMap<String, Publish> = BTreeMap::new();
    let mut subscribers: BTreeMap<(&str, &str), Subscriber> = BTreeMap::new();
    // One cluster order: sequence -> (payload, seq) and back.
    let mut at_sequence: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
    let mut sequence_of: BTreeMap<&str, u64> = BTreeMap::new();
    for e in end.events {
        match FlowEvent::of(e) {
            Some(FlowEvent::PublishInvoked { host, scope, n, .. }) => {
                let publish = Publish {
                    invoked_seq: e.seq,
                    scope: scope.clone(),
                    ok: false,
                };
                publishes.insert(format!("{host}#{n}"), publish);
            }
            Some(FlowEvent::PublishReturned {
                host,
                n,
                error: None,
                ..
            }) => {
                if let Some(p) = publishes.get_mut(&format!("{host}#{n}")) {
                    p.ok = true;
                }
            }
            Some(FlowEvent::Subscribed { host, scope, .. }) => {
                let s = subscribers
                    .entry((host.as_str(), scope.as_str()))
                    .or_default();
                s.subscribed_seq = e.seq;
            }
            // A gap, or the subscription closed: it did not stay subscribed.
            Some(FlowEvent::Lagged { host, scope, .. }) => {
                subscribers
                    .entry((host.as_str(), scope.as_str()))
                    .or_default()
                    .lagged = true;
            }
            Some(FlowEvent::SubscriberEnded { host, scope, .. }) => {
                subscribers
                    .entry((host.as_str(), scope.as_str()))
                    .or_default()
                    .ended = true;
            }
            Some(FlowEvent::Received {
                host,
                scope,
                sequence,
                origin,
                payload,
                ..
            }) => {
                let Some(p) = publishes.get(payload).filter(|p| &p.scope == scope) else {
                    return Err(violation(
                        NAME,
                        e,
                        format!(
                            "{host} received {payload} ({scope}), never published in that scope"
                        ),
                    ));
                };
                if origin != publisher(payload) {
                    return Err(violation(
                        NAME,
                        e,
                        format!("{host} received {payload} with origin {origin}"),
                    )
                    .with_related([p.invoked_seq]));
                }
                if scope == LOCAL && publisher(payload) != host {
                    return Err(violation(
                        NAME,
                        e,
                        format!("{host} received {payload}, a local event of another node"),
                    )
                    .with_related([p.invoked_seq]));
                }
                let s = subscribers
                    .entry((host.as_str(), scope.as_str()))
                    .or_default();
                if let Some((_, earlier)) = s.received.get(payload.as_str()) {
                    return Err(
                        violation(NAME, e, format!("{host} received {payload} twice"))
                            .with_related([*earlier]),
                    );
                }
                if let Some((last, last_seq)) = s.last {
                    if *sequence <= last {
                        return Err(violation(
                            NAME,
                            e,
                            format!("{host} received {payload} at sequence {sequence} after sequence {last}: out of order"),
                        )
                        .with_related([last_seq]));
                    }
                }
                s.last = Some((*sequence, e.seq));
                s.received.insert(payload.clone(), (*sequence, e.seq));
                if scope == CLUSTER {
                    one_order(e, payload, *sequence, &mut at_sequence, &mut sequence_of)?;
                }
            }
            _ => {}
        }
    }
    for ((host, scope), s) in &subscribers {
        if s.lagged || !s.ended {
            continue;
        }
        let missing = publishes.iter().find(|(payload, p)| {
            p.ok && p.scope == *scope
                && p.invoked_seq > s.subscribed_seq
                && (*scope == CLUSTER || publisher(payload) == *host)
                && !s.received.contains_key(payload.as_str())
        });
        if let Some((payload, p)) = missing {
            return Err(violation_at_seq(
                NAME,
                p.invoked_seq,
                format!("{host}'s {scope} subscription, open since before {payload} was published, never received it"),
            )
            .with_related([s.subscribed_seq]));
        }
    }
    Ok(None)
}

/// Every cluster subscriber sees one sequence per event, one event per sequence.
fn one_order<'a>(
    e: &TraceEvent,
    payload: &'a str,
    sequence: u64,
    at_sequence: &mut BTreeMap<u64, (&'a str, u64)>,
    sequence_of: &mut BTreeMap<&'a str, u64>,
) -> Result<(), Violation> {
    if let Some((other, seq)) = at_sequence.get(&sequence) {
        if *other != payload {
            return Err(violation(
                NAME,
                e,
                format!("sequence {sequence} is {payload} here but {other} for another subscriber"),
            )
            .with_related([*seq]));
        }
    }
    if let Some(other) = sequence_of.get(payload) {
        if *other != sequence {
            return Err(violation(
                NAME,
                e,
                format!(
                    "{payload} has sequence {sequence} here but {other} for another subscriber"
                ),
            ));
        }
    }
    at_sequence.insert(sequence, (payload, e.seq));
    sequence_of.insert(payload, sequence);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::end_of;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::EventKind;

    fn flow(h: &mut History, event: FlowEvent) -> TraceEvent {
        h.push(1201, EventKind::Flow(event))
    }

    fn subscribed(h: &mut History, host: &str, scope: &str) {
        flow(
            h,
            FlowEvent::Subscribed {
                host: host.into(),
                topic: "jobs".into(),
                scope: scope.into(),
            },
        );
    }

    fn publish(h: &mut History, host: &str, scope: &str, n: u64) {
        for ok in [false, true] {
            let (topic, scope) = ("jobs".to_string(), scope.to_string());
            flow(
                h,
                if ok {
                    FlowEvent::PublishReturned {
                        host: host.into(),
                        topic,
                        scope,
                        n,
                        error: None,
                    }
                } else {
                    FlowEvent::PublishInvoked {
                        host: host.into(),
                        topic,
                        scope,
                        n,
                    }
                },
            );
        }
    }

    fn received(h: &mut History, host: &str, scope: &str, sequence: u64, payload: &str) {
        flow(
            h,
            FlowEvent::Received {
                host: host.into(),
                topic: "jobs".into(),
                scope: scope.into(),
                sequence,
                origin: publisher(payload).into(),
                payload: payload.into(),
            },
        );
    }

    fn ended(h: &mut History, hosts: &[&str]) -> Vec<TraceEvent> {
        for host in hosts {
            flow(
                h,
                FlowEvent::SubscriberEnded {
                    host: host.to_string(),
                    topic: "jobs".into(),
                    scope: CLUSTER.into(),
                    received: 0,
                },
            );
        }
        flow(h, FlowEvent::Ended);
        h.events()
    }

    fn judge(events: &[TraceEvent]) -> Result<Option<String>, Violation> {
        check(&end_of(events))
    }

    /// flow-1 and flow-2 subscribe; flow-1 publishes #1, flow-2 publishes #1.
    fn two_publishes() -> History {
        let mut h = History::default();
        subscribed(&mut h, "flow-1", CLUSTER);
        subscribed(&mut h, "flow-2", CLUSTER);
        publish(&mut h, "flow-1", CLUSTER, 1);
        publish(&mut h, "flow-2", CLUSTER, 1);
        h
    }

    #[test]
    fn one_order_delivered_to_everyone_passes() {
        let mut h = two_publishes();
        for host in ["flow-1", "flow-2"] {
            received(&mut h, host, CLUSTER, 10, "flow-1#1");
            received(&mut h, host, CLUSTER, 11, "flow-2#1");
        }
        judge(&ended(&mut h, &["flow-1", "flow-2"])).unwrap();
    }

    #[test]
    fn a_node_seeing_its_own_event_first_fails() {
        let mut h = two_publishes();
        received(&mut h, "flow-1", CLUSTER, 10, "flow-1#1");
        received(&mut h, "flow-1", CLUSTER, 11, "flow-2#1");
        received(&mut h, "flow-2", CLUSTER, 11, "flow-2#1");
        received(&mut h, "flow-2", CLUSTER, 10, "flow-1#1");
        let v = judge(&ended(&mut h, &["flow-1", "flow-2"])).unwrap_err();
        assert!(v.message.contains("out of order"), "{v}");
    }

    fn missing_one(lagged: bool) -> Vec<TraceEvent> {
        let mut h = two_publishes();
        received(&mut h, "flow-1", CLUSTER, 10, "flow-1#1");
        received(&mut h, "flow-1", CLUSTER, 11, "flow-2#1");
        received(&mut h, "flow-2", CLUSTER, 10, "flow-1#1");
        if lagged {
            flow(
                &mut h,
                FlowEvent::Lagged {
                    host: "flow-2".into(),
                    topic: "jobs".into(),
                    scope: CLUSTER.into(),
                    missed: 1,
                    closed: false,
                },
            );
        }
        ended(&mut h, &["flow-1", "flow-2"])
    }

    #[test]
    fn a_missed_event_fails_unless_the_subscriber_lagged() {
        let v = judge(&missing_one(false)).unwrap_err();
        assert!(
            v.message
                .contains("before flow-2#1 was published, never received it"),
            "{v}"
        );
        judge(&missing_one(true)).unwrap();
    }

    #[test]
    fn two_events_at_one_sequence_or_a_foreign_local_event_fail() {
        let mut h = two_publishes();
        received(&mut h, "flow-1", CLUSTER, 10, "flow-1#1");
        received(&mut h, "flow-2", CLUSTER, 10, "flow-2#1");
        let v = judge(&ended(&mut h, &[])).unwrap_err();
        assert!(v.message.contains("sequence 10 is flow-2#1"), "{v}");
        let mut h = History::default();
        subscribed(&mut h, "flow-2", LOCAL);
        publish(&mut h, "flow-1", LOCAL, 1);
        received(&mut h, "flow-2", LOCAL, 1, "flow-1#1");
        let v = judge(&ended(&mut h, &[])).unwrap_err();
        assert!(v.message.contains("local event of another node"), "{v}");
    }
}
