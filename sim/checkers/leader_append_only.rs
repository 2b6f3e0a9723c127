//! Leader append-only: a leader never overwrites or deletes entries in its log; it
//! only appends (Raft paper §5.3, Figure 3).

use std::collections::BTreeMap;

use super::log_view::LogView;
use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "leader_append_only";

#[derive(Default)]
pub struct LeaderAppendOnly {
    logs: LogView,
    /// node → term it currently leads.
    leading: BTreeMap<u64, u64>,
}

impl Checker for LeaderAppendOnly {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        LogView::READS.and(Reads::only(&[EventTag::Role, EventTag::Stopped]))
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::Role { role, term, .. } => {
                if role == "leader" {
                    self.leading.insert(event.node, *term);
                } else {
                    self.leading.remove(&event.node);
                }
            }
            EventKind::Recovered { .. } | EventKind::Stopped { .. } => {
                self.leading.remove(&event.node);
            }
            EventKind::Persisted { entries, .. } if self.leading.contains_key(&event.node) => {
                if let Some(first) = entries.first() {
                    let last = self.logs.node(event.node).last_index();
                    if first.index <= last {
                        return Err(violation(
                            NAME,
                            event,
                            format!(
                                "leader {} of term {} rewrote its log from index {} (last was {last})",
                                event.node, self.leading[&event.node], first.index
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        self.logs.observe(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_a_leader_truncates_its_log() {
        let mut h = History::default();
        let mut c = LeaderAppendOnly::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 1), (2, 1, 2)]))
            .unwrap();
        c.observe_read(&h.role(1, "leader", 2, 1)).unwrap();
        c.observe_read(&h.persist(1, None, &[(3, 2, 3)])).unwrap();
        let bad = h.persist(1, None, &[(2, 2, 9)]);
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn followers_may_truncate() {
        let mut h = History::default();
        let mut c = LeaderAppendOnly::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 1), (2, 1, 2)]))
            .unwrap();
        c.observe_read(&h.role(1, "follower", 2, 2)).unwrap();
        c.observe_read(&h.persist(1, None, &[(2, 2, 9)])).unwrap();
    }
}
