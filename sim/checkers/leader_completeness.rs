//! Leader completeness: a committed entry is present in the log of every leader of
//! a later term (Raft paper §5.4, Figure 3).
//!
//! An entry counts as committed once any node applied it. When a node becomes
//! leader, every committed entry above its snapshot must be in its log unchanged.

use std::collections::BTreeMap;

use super::log_view::LogView;
use super::{violation, Checker, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "leader_completeness";

#[derive(Default)]
pub struct LeaderCompleteness {
    logs: LogView,
    /// index → (term, digest) of committed entries.
    committed: BTreeMap<u64, (u64, u64)>,
}

impl Checker for LeaderCompleteness {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        self.logs.observe(event);
        match &event.kind {
            EventKind::Applied { entry, .. } => {
                self.committed
                    .insert(entry.index, (entry.term, entry.digest));
            }
            EventKind::Role { role, term, .. } if role == "leader" => {
                let Some(log) = self.logs.nodes.get(&event.node) else {
                    return Ok(());
                };
                for (&index, &(cterm, digest)) in self.committed.range(log.snapshot_index + 1..) {
                    if log.entries.get(&index) != Some(&(cterm, digest)) {
                        return Err(violation(
                            NAME,
                            event,
                            format!(
                                "node {} leads term {term} without committed entry {index}@{cterm} (has {:?})",
                                event.node,
                                log.entries.get(&index)
                            ),
                        ));
                    }
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
    fn fires_when_a_new_leader_lacks_a_committed_entry() {
        let mut h = History::default();
        let mut c = LeaderCompleteness::default();
        c.observe(&h.persist(1, None, &[(1, 1, 10), (2, 1, 20)]))
            .unwrap();
        c.observe(&h.applied(1, 1, 1, 10)).unwrap();
        c.observe(&h.applied(1, 2, 1, 20)).unwrap();
        c.observe(&h.persist(2, None, &[(1, 1, 10)])).unwrap();
        let bad = h.role(2, "leader", 2, 2);
        assert_eq!(c.observe(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn a_complete_leader_passes() {
        let mut h = History::default();
        let mut c = LeaderCompleteness::default();
        c.observe(&h.persist(1, None, &[(1, 1, 10)])).unwrap();
        c.observe(&h.applied(1, 1, 1, 10)).unwrap();
        c.observe(&h.persist(2, None, &[(1, 1, 10), (2, 1, 5)]))
            .unwrap();
        c.observe(&h.role(2, "leader", 2, 2)).unwrap();
    }
}
