//! Link Bridge: no client call reaches an instance once the client's broker has
//! shown it not serving (draining after its shutdown notice, down, or gone) for
//! longer than the client's `notice_bound_ms` — whether the instance answers the
//! call or, having stopped, refuses it. An instance stops only after its notice's
//! grace period (longer than the bound) or its deregistration, so a call to a
//! stopped instance fails this too unless the client's broker never learned.
//!
//! The bound runs from the later of: the broker's view ceasing to show the instance
//! serving, and the client's subscription moving to that broker (a client between
//! brokers, or on a broker that crashed, has nobody to tell it). The broker pushes
//! the change at once and the client's balanced channel applies it before its next
//! call, so only a call already in flight may land inside the bound.

use std::collections::{BTreeMap, BTreeSet};

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{BridgeEvent, EventKind, EventTag, TraceEvent};

pub const NAME: &str = "bridge_notice_respected";

#[derive(Default)]
struct BrokerView {
    serving: BTreeSet<String>,
    /// Instance → when the view stopped showing it serving (seq, time).
    not_serving_since: BTreeMap<String, (u64, u64)>,
    crashed: bool,
}

struct Client {
    bound_ms: u64,
    /// The broker the subscription is on, and since when.
    broker: Option<String>,
    since_ms: u64,
}

#[derive(Default)]
pub struct BridgeNoticeRespected {
    brokers: BTreeMap<String, BrokerView>,
    clients: BTreeMap<String, Client>,
}

impl Checker for BridgeNoticeRespected {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Bridge])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let EventKind::Bridge(bridge) = &event.kind else {
            return Ok(());
        };
        let now = (event.seq, event.time_ms);
        match bridge {
            BridgeEvent::BrokerStarted { broker } => {
                // A new view: what it shows from now on counts.
                self.brokers.insert(broker.clone(), BrokerView::default());
            }
            BridgeEvent::BrokerCrashed { broker } => {
                self.brokers.entry(broker.clone()).or_default().crashed = true;
            }
            BridgeEvent::BrokerViewed {
                broker, registry, ..
            } => {
                let view = self.brokers.entry(broker.clone()).or_default();
                let serving: BTreeSet<String> = registry
                    .instances
                    .iter()
                    .filter(|(_, _, _, status)| status == "serving")
                    .map(|(_, id, _, _)| id.clone())
                    .collect();
                for gone in view.serving.difference(&serving) {
                    view.not_serving_since.insert(gone.clone(), now);
                }
                for id in &serving {
                    view.not_serving_since.remove(id);
                }
                view.serving = serving;
            }
            BridgeEvent::ClientStarted {
                client,
                notice_bound_ms,
                ..
            } => {
                self.clients.insert(
                    client.clone(),
                    Client {
                        bound_ms: *notice_bound_ms,
                        broker: None,
                        since_ms: event.time_ms,
                    },
                );
            }
            BridgeEvent::ClientViewed { client, broker, .. } => {
                if let Some(c) = self.clients.get_mut(client) {
                    if c.broker != *broker {
                        c.broker = broker.clone();
                        c.since_ms = event.time_ms;
                    }
                }
            }
            BridgeEvent::CallReceived {
                instance, client, ..
            } => {
                self.check_call(event, instance, client)?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl BridgeNoticeRespected {
    fn check_call(
        &self,
        event: &TraceEvent,
        instance: &str,
        client: &str,
    ) -> Result<(), Violation> {
        let Some(c) = self.clients.get(client) else {
            return Ok(());
        };
        let Some(broker) = &c.broker else {
            return Ok(());
        };
        let Some(view) = self.brokers.get(broker) else {
            return Ok(());
        };
        if view.crashed || view.serving.contains(instance) {
            return Ok(());
        }
        let (since_seq, since_ms) = view
            .not_serving_since
            .get(instance)
            .map_or((None, 0), |&(seq, at)| (Some(seq), at));
        let from = since_ms.max(c.since_ms);
        if event.time_ms > from + c.bound_ms {
            let why = match since_seq {
                Some(_) => format!("stopped showing it serving at {since_ms} ms"),
                None => "never showed it serving".to_string(),
            };
            return Err(violation(
                NAME,
                event,
                format!(
                    "{client}'s call reached {instance} at {} ms, but {client}'s broker {broker} \
                     (its broker since {} ms) {why}: more than the bound of {} ms",
                    event.time_ms, c.since_ms, c.bound_ms
                ),
            )
            .with_related(since_seq));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::RegistrySummary;

    fn viewed(h: &mut History, broker: &str, revision: i64, instances: &[(&str, &str)]) {
        h.push(
            1101,
            EventKind::Bridge(BridgeEvent::BrokerViewed {
                broker: broker.into(),
                revision,
                registry: RegistrySummary {
                    instances: instances
                        .iter()
                        .map(|(id, status)| {
                            (
                                "svc".into(),
                                id.to_string(),
                                "bridge-agent-1".into(),
                                status.to_string(),
                            )
                        })
                        .collect(),
                    agents_up: vec!["bridge-agent-1".into()],
                },
            }),
        );
    }

    fn start_client(h: &mut History) {
        h.push(
            1141,
            EventKind::Bridge(BridgeEvent::ClientStarted {
                client: "c1".into(),
                service: "svc".into(),
                notice_bound_ms: 10,
                failover_bound_ms: 100,
            }),
        );
        h.push(
            1141,
            EventKind::Bridge(BridgeEvent::ClientViewed {
                client: "c1".into(),
                broker: Some("b1".into()),
                service: "svc".into(),
                revision: 5,
                instances: vec![],
            }),
        );
    }

    fn call(h: &mut History, instance: &str) -> TraceEvent {
        reach(h, instance, false)
    }

    fn reach(h: &mut History, instance: &str, refused: bool) -> TraceEvent {
        h.push(
            1121,
            EventKind::Bridge(BridgeEvent::CallReceived {
                instance: instance.into(),
                client: "c1".into(),
                refused,
            }),
        )
    }

    fn run(events: &[TraceEvent]) -> Result<(), Violation> {
        let mut c = BridgeNoticeRespected::default();
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    #[test]
    fn calls_within_the_bound_after_a_notice_pass_and_later_ones_fail() {
        let mut h = History::default();
        start_client(&mut h);
        viewed(&mut h, "b1", 5, &[("bridge-agent-1-g1-i1", "serving")]);
        let mut events = vec![call(&mut h, "bridge-agent-1-g1-i1")];
        viewed(&mut h, "b1", 6, &[("bridge-agent-1-g1-i1", "draining")]);
        // In flight: inside the 10 ms bound.
        events.push(call(&mut h, "bridge-agent-1-g1-i1"));
        let good = h.events();
        assert_eq!(run(&good), Ok(()));
        h.ticks(12);
        let late = call(&mut h, "bridge-agent-1-g1-i1");
        let all = h.events();
        let v = run(&all).unwrap_err();
        assert_eq!(v.event_seq, late.seq);
        assert!(
            v.message.contains("stopped showing it serving"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_call_refused_by_a_stopped_instance_long_after_its_deregistration_fails() {
        let mut h = History::default();
        start_client(&mut h);
        viewed(&mut h, "b1", 5, &[("bridge-agent-1-g1-i1", "serving")]);
        viewed(&mut h, "b1", 6, &[]);
        h.ticks(12);
        let refused = reach(&mut h, "bridge-agent-1-g1-i1", true);
        let v = run(&h.events()).unwrap_err();
        assert_eq!(v.event_seq, refused.seq);
    }

    #[test]
    fn a_client_on_a_crashed_broker_is_not_held_to_its_view() {
        let mut h = History::default();
        start_client(&mut h);
        viewed(&mut h, "b1", 5, &[("bridge-agent-1-g1-i1", "serving")]);
        h.push(
            0,
            EventKind::Bridge(BridgeEvent::BrokerCrashed {
                broker: "b1".into(),
            }),
        );
        h.ticks(20);
        call(&mut h, "bridge-agent-1-g1-i1");
        assert_eq!(run(&h.events()), Ok(()));
    }
}
