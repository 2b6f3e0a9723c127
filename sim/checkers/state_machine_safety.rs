//! State machine safety: every node applies the same entry at each index, in index
//! order, without gaps (Raft paper §5.4.3, Figure 3).

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "state_machine_safety";

#[derive(Default)]
pub struct StateMachineSafety {
    /// index → (term, digest, first node that applied it).
    applied_at: BTreeMap<u64, (u64, u64, u64)>,
    /// node → last index applied in this incarnation.
    last_applied: BTreeMap<u64, u64>,
}

impl Checker for StateMachineSafety {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[
            EventTag::Recovered,
            EventTag::SnapshotPersisted,
            EventTag::Applied,
        ])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            // The state machine is rebuilt from the snapshot at start-up.
            EventKind::Recovered { snapshot_index, .. } => {
                self.last_applied.insert(event.node, *snapshot_index);
            }
            EventKind::SnapshotPersisted { index, .. } => {
                let last = self.last_applied.entry(event.node).or_default();
                *last = (*last).max(*index);
            }
            EventKind::Applied { entry, .. } => {
                let last = self.last_applied.entry(event.node).or_default();
                if entry.index != *last + 1 {
                    return Err(violation(
                        NAME,
                        event,
                        format!("node {} applied {} after {}", event.node, entry.index, last),
                    ));
                }
                *last = entry.index;
                let first = *self.applied_at.entry(entry.index).or_insert((
                    entry.term,
                    entry.digest,
                    event.node,
                ));
                if (first.0, first.1) != (entry.term, entry.digest) {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "node {} applied {}@{} at index {}, node {} applied {}@{}",
                            event.node,
                            entry.digest,
                            entry.term,
                            entry.index,
                            first.2,
                            first.1,
                            first.0
                        ),
                    ));
                }
            }
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
    fn fires_on_different_entries_applied_at_one_index() {
        let mut h = History::default();
        let mut c = StateMachineSafety::default();
        c.observe_read(&h.applied(1, 1, 1, 10)).unwrap();
        let bad = h.applied(2, 1, 2, 11);
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_on_a_gap() {
        let mut h = History::default();
        let mut c = StateMachineSafety::default();
        c.observe_read(&h.applied(1, 1, 1, 10)).unwrap();
        assert!(c.observe_read(&h.applied(1, 3, 1, 30)).is_err());
    }
}
