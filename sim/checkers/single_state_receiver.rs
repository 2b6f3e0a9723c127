//! Single state receiver: a broker has at most one registered state receiver at any
//! instant, and none once its LogicNode has shut down (seed 000: every switch calls
//! `unleash_state_reciever` before the new loop registers; "避免内存泄漏").

use std::collections::{BTreeMap, BTreeSet};

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "single_state_receiver";

#[derive(Default)]
pub struct SingleStateReceiver {
    registered: BTreeMap<u64, BTreeSet<u64>>,
}

impl Checker for SingleStateReceiver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[
            EventTag::ReceiverRegistered,
            EventTag::ReceiverReleased,
            EventTag::LogicNodeStopped,
            EventTag::Recovered,
            EventTag::Process,
        ])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let set = self.registered.entry(event.node).or_default();
        match &event.kind {
            EventKind::ReceiverRegistered { registration } => {
                set.insert(*registration);
                if set.len() > 1 {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "broker {} has {} state receivers registered: {set:?}",
                            event.node,
                            set.len()
                        ),
                    ));
                }
            }
            EventKind::ReceiverReleased { registration } => {
                set.remove(registration);
            }
            EventKind::LogicNodeStopped if !set.is_empty() => {
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "broker {} still has receivers {set:?} after shutdown",
                        event.node
                    ),
                ));
            }
            EventKind::Recovered { .. } => set.clear(),
            EventKind::Process { change } if change == "killed" => set.clear(),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_on_a_leaked_receiver() {
        let mut h = History::default();
        let mut c = SingleStateReceiver::default();
        c.observe_read(&h.push(2, EventKind::ReceiverRegistered { registration: 1 }))
            .unwrap();
        let bad = h.push(2, EventKind::ReceiverRegistered { registration: 2 });
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_on_a_receiver_left_after_shutdown() {
        let mut h = History::default();
        let mut c = SingleStateReceiver::default();
        c.observe_read(&h.push(2, EventKind::ReceiverRegistered { registration: 1 }))
            .unwrap();
        assert!(c
            .observe_read(&h.push(2, EventKind::LogicNodeStopped))
            .is_err());
    }

    #[test]
    fn release_then_register_passes() {
        let mut h = History::default();
        let mut c = SingleStateReceiver::default();
        c.observe_read(&h.push(2, EventKind::ReceiverRegistered { registration: 1 }))
            .unwrap();
        c.observe_read(&h.push(2, EventKind::ReceiverReleased { registration: 1 }))
            .unwrap();
        c.observe_read(&h.push(2, EventKind::ReceiverRegistered { registration: 2 }))
            .unwrap();
        c.observe_read(&h.push(2, EventKind::ReceiverReleased { registration: 2 }))
            .unwrap();
        c.observe_read(&h.push(2, EventKind::LogicNodeStopped))
            .unwrap();
    }
}
