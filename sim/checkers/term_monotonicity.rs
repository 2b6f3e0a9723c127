//! Term monotonicity: within one incarnation a node's term never goes backwards
//! (Raft paper Figure 2: currentTerm only increases). Across a restart the node
//! starts again from the term it recovered; whether that term is at least the one it
//! had synced is `recovery_durability`'s to judge.

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "term_monotonicity";

#[derive(Default)]
pub struct TermMonotonicity {
    /// Highest term each node has reported in its current incarnation.
    terms: BTreeMap<u64, u64>,
}

impl Checker for TermMonotonicity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Role, EventTag::Recovered])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let node = event.node;
        match &event.kind {
            EventKind::Role { term, .. } => {
                let last = self.terms.entry(node).or_default();
                if *term < *last {
                    return Err(violation(
                        NAME,
                        event,
                        format!("node {node} term went from {last} to {term}"),
                    ));
                }
                *last = *term;
            }
            EventKind::Recovered { term, .. } => {
                self.terms.insert(node, *term);
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
    fn fires_when_the_term_goes_backwards() {
        let mut h = History::default();
        let mut c = TermMonotonicity::default();
        c.observe_read(&h.role(1, "follower", 4, 2)).unwrap();
        let bad = h.role(1, "candidate", 3, 0);
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn a_restart_continues_from_the_recovered_term() {
        let mut h = History::default();
        let mut c = TermMonotonicity::default();
        c.observe_read(&h.role(1, "follower", 4, 2)).unwrap();
        c.observe_read(&h.recovered(1, 3, 1, 0, 0, 0)).unwrap();
        c.observe_read(&h.role(1, "follower", 3, 2)).unwrap();
    }
}
