//! Log matching: if two logs contain an entry with the same index and term, the logs
//! are identical in all entries up through that index (Raft paper §5.3, Figure 3).
//!
//! Checked inductively: every (index, term) must always carry the same content and
//! follow an entry of the same term; equal predecessors at every step give equal
//! prefixes.

use std::collections::BTreeMap;

use super::log_view::LogView;
use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::TraceEvent;

pub const NAME: &str = "log_matching";

#[derive(Default)]
pub struct LogMatching {
    logs: LogView,
    /// (index, term) → (digest, term of the previous entry or None if unknown).
    seen: BTreeMap<(u64, u64), (u64, Option<u64>)>,
}

impl Checker for LogMatching {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        LogView::READS
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let appended = self.logs.observe(event);
        if appended.is_empty() {
            return Ok(());
        }
        let log = self.logs.node(event.node);
        for e in appended {
            let prev_term = if e.index > 1 {
                log.term_at(e.index - 1)
            } else {
                Some(0)
            };
            let slot = self
                .seen
                .entry((e.index, e.term))
                .or_insert((e.digest, prev_term));
            if slot.0 != e.digest {
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "node {} has different content at index {} term {} than another log",
                        event.node, e.index, e.term
                    ),
                ));
            }
            match (slot.1, prev_term) {
                (Some(a), Some(b)) if a != b => {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "node {}: entry {}@{} follows term {b}, elsewhere term {a}",
                            event.node, e.index, e.term
                        ),
                    ));
                }
                (None, Some(b)) => slot.1 = Some(b),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_on_same_index_and_term_with_different_content() {
        let mut h = History::default();
        let mut c = LogMatching::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10), (2, 1, 20)]))
            .unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 1, 10)])).unwrap();
        let bad = h.persist(2, None, &[(2, 1, 99)]);
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_on_different_prefix_under_a_matching_entry() {
        let mut h = History::default();
        let mut c = LogMatching::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10), (2, 2, 20)]))
            .unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 3, 30)])).unwrap();
        let bad = h.persist(2, None, &[(2, 2, 20)]);
        assert!(c.observe_read(&bad).is_err());
    }

    #[test]
    fn replaced_suffixes_are_fine() {
        let mut h = History::default();
        let mut c = LogMatching::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10), (2, 1, 20), (3, 1, 30)]))
            .unwrap();
        c.observe_read(&h.persist(1, None, &[(2, 2, 21)])).unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 1, 10), (2, 2, 21)]))
            .unwrap();
    }
}
