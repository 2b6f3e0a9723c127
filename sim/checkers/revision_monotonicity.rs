//! Revision monotonicity: a node's store revision never decreases while it runs, and
//! the coordination command at one log index leaves the store at the same revision
//! on every node, across restarts too (etcd's MVCC: the revision is a deterministic
//! function of the applied log).

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "revision_monotonicity";

#[derive(Default)]
pub struct RevisionMonotonicity {
    /// Each running node's last applied (index, revision), since its last start.
    last: BTreeMap<u64, (u64, i64)>,
    /// The revision each log index left the store at, and the node that said so first.
    revision_at: BTreeMap<u64, (i64, u64)>,
}

impl Checker for RevisionMonotonicity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Recovered, EventTag::CoordApplied])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            // A restart replays the log from its snapshot: earlier revisions again.
            EventKind::Recovered { .. } => {
                self.last.remove(&event.node);
            }
            EventKind::CoordApplied { index, revision } => {
                let node = event.node;
                let (first, by) = *self.revision_at.entry(*index).or_insert((*revision, node));
                if first != *revision {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "log index {index} left node {node} at revision {revision}, but node {by} at revision {first}"
                        ),
                    ));
                }
                if let Some(&(last_index, last_revision)) = self.last.get(&node) {
                    if *revision < last_revision {
                        return Err(violation(
                            NAME,
                            event,
                            format!(
                                "node {node}'s revision went back from {last_revision} (index {last_index}) to {revision} (index {index})"
                            ),
                        ));
                    }
                }
                self.last.insert(node, (*index, *revision));
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

    fn applied(h: &mut History, node: u64, index: u64, revision: i64) -> TraceEvent {
        h.push(node, EventKind::CoordApplied { index, revision })
    }

    #[test]
    fn fires_when_a_node_goes_back() {
        let mut h = History::default();
        let mut c = RevisionMonotonicity::default();
        c.observe_read(&applied(&mut h, 1, 5, 3)).unwrap();
        c.observe_read(&applied(&mut h, 1, 7, 4)).unwrap();
        let bad = applied(&mut h, 1, 9, 2);
        let v = c.observe_read(&bad).unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
        assert!(v.message.contains("went back from 4"), "{v}");
    }

    #[test]
    fn a_restart_may_replay_earlier_revisions_but_not_different_ones() {
        let mut h = History::default();
        let mut c = RevisionMonotonicity::default();
        c.observe_read(&applied(&mut h, 1, 5, 3)).unwrap();
        c.observe_read(&applied(&mut h, 1, 7, 4)).unwrap();
        c.observe_read(&h.recovered(1, 2, 1, 7, 7, 4)).unwrap();
        c.observe_read(&applied(&mut h, 1, 5, 3)).unwrap();
        c.observe_read(&applied(&mut h, 2, 7, 4)).unwrap();
        let bad = applied(&mut h, 2, 5, 4);
        let v = c.observe_read(&bad).unwrap_err();
        assert!(v.message.contains("log index 5"), "{v}");
    }
}
