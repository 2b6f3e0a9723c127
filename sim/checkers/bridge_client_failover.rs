//! Link Bridge: a client whose broker crashed is subscribed through another broker
//! within its `failover_bound_ms` (the seed's `retry_interval × max_retries`, plus
//! one attempt's deadline to connect and subscribe), counted from the crash (or
//! the start of a graceful stop) or, if no other broker was serving then, from
//! when one was. That the view it then
//! holds is the committed registry is `bridge_views_committed`'s to judge.

use std::collections::BTreeMap;

use super::{violation, RunEnd, Violation};
use crate::sim::trace::{BridgeEvent, EventKind};

pub const NAME: &str = "bridge_client_failover";

struct Client {
    bound_ms: u64,
    broker: Option<String>,
    /// (seq, time, broker) of a crash of the broker it was on, until it moves.
    stranded: Option<(u64, u64, String)>,
    ended: bool,
}

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    // Broker → since when it serves (started and not crashed since).
    let mut serving: BTreeMap<String, u64> = BTreeMap::new();
    let mut failovers = 0usize;
    for e in end.events {
        // A stranded client whose bound passed without a new subscription.
        for (name, c) in &clients {
            let Some((seq, at, broker)) = &c.stranded else {
                continue;
            };
            let other_since = serving
                .iter()
                .filter(|(b, _)| *b != broker)
                .map(|(_, since)| *since)
                .min();
            let Some(from) = other_since.map(|since| since.max(*at)) else {
                continue;
            };
            if !c.ended && e.time_ms > from + c.bound_ms {
                return Err(violation(
                    NAME,
                    e,
                    format!(
                        "{name} was on {broker}, which crashed at {at} ms, and is on no \
                         other broker {} ms after one served (bound {} ms)",
                        e.time_ms - from,
                        c.bound_ms
                    ),
                )
                .with_related([*seq]));
            }
        }
        let EventKind::Bridge(event) = &e.kind else {
            continue;
        };
        match event {
            BridgeEvent::ClientStarted {
                client,
                failover_bound_ms,
                ..
            } => {
                clients.insert(
                    client.clone(),
                    Client {
                        bound_ms: *failover_bound_ms,
                        broker: None,
                        stranded: None,
                        ended: false,
                    },
                );
            }
            BridgeEvent::ClientViewed { client, broker, .. } => {
                if let Some(c) = clients.get_mut(client) {
                    if broker.is_some() && *broker != c.broker && c.stranded.take().is_some() {
                        failovers += 1;
                    }
                    c.broker = broker.clone();
                }
            }
            BridgeEvent::BrokerStarted { broker } => {
                serving.insert(broker.clone(), e.time_ms);
            }
            BridgeEvent::BrokerStopping { broker } | BridgeEvent::BrokerCrashed { broker } => {
                serving.remove(broker);
                for c in clients.values_mut() {
                    if c.broker.as_ref() == Some(broker) && c.stranded.is_none() {
                        c.stranded = Some((e.seq, e.time_ms, broker.clone()));
                    }
                }
            }
            BridgeEvent::ClientEnded { client, .. } => {
                if let Some(c) = clients.get_mut(client) {
                    c.ended = true;
                }
            }
            _ => {}
        }
    }
    Ok(Some(format!(
        "{NAME}: {failovers} clients moved off a crashed broker within their bound"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::end_of;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::TraceEvent;

    fn judge(events: &[TraceEvent]) -> Result<Option<String>, Violation> {
        check(&end_of(events))
    }

    fn viewed(h: &mut History, broker: Option<&str>) {
        h.push(
            1141,
            EventKind::Bridge(BridgeEvent::ClientViewed {
                client: "c1".into(),
                broker: broker.map(Into::into),
                service: "svc".into(),
                revision: 3,
                instances: vec![],
            }),
        );
    }

    fn history(ticks_before_moving: usize) -> Vec<TraceEvent> {
        history_with(&["b1", "b2"], ticks_before_moving)
    }

    fn history_with(started: &[&str], ticks_before_moving: usize) -> Vec<TraceEvent> {
        let mut h = History::default();
        h.push(
            1141,
            EventKind::Bridge(BridgeEvent::ClientStarted {
                client: "c1".into(),
                service: "svc".into(),
                notice_bound_ms: 10,
                failover_bound_ms: 5,
            }),
        );
        for b in started {
            h.push(
                0,
                EventKind::Bridge(BridgeEvent::BrokerStarted {
                    broker: b.to_string(),
                }),
            );
        }
        viewed(&mut h, Some("b1"));
        h.push(
            0,
            EventKind::Bridge(BridgeEvent::BrokerCrashed {
                broker: "b1".into(),
            }),
        );
        viewed(&mut h, None);
        h.ticks(ticks_before_moving);
        viewed(&mut h, Some("b2"));
        h.events()
    }

    #[test]
    fn moving_within_the_bound_passes_and_later_fails() {
        assert!(judge(&history(2)).is_ok());
        let v = judge(&history(8)).unwrap_err();
        assert!(v.message.contains("crashed at"), "{}", v.message);
    }

    #[test]
    fn the_bound_waits_for_another_broker_to_serve() {
        assert!(judge(&history_with(&["b1"], 8)).is_ok());
    }
}
