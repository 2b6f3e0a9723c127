//! Election safety: at most one leader per term (Raft paper §5.2, Figure 3).

use std::collections::BTreeMap;

use super::{violation, Checker, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "election_safety";

#[derive(Default)]
pub struct ElectionSafety {
    leader_of_term: BTreeMap<u64, u64>,
}

impl Checker for ElectionSafety {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        if let EventKind::Role { role, term, .. } = &event.kind {
            if role == "leader" {
                let first = *self.leader_of_term.entry(*term).or_insert(event.node);
                if first != event.node {
                    return Err(violation(
                        NAME,
                        event,
                        format!("nodes {first} and {} both lead term {term}", event.node),
                    ));
                }
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
    fn fires_on_two_leaders_in_one_term() {
        let mut h = History::default();
        let mut c = ElectionSafety::default();
        c.observe(&h.role(1, "leader", 2, 1)).unwrap();
        c.observe(&h.role(2, "leader", 3, 2)).unwrap();
        c.observe(&h.role(1, "leader", 2, 1)).unwrap();
        let bad = h.role(3, "leader", 2, 3);
        let v = c.observe(&bad).unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
        assert!(v.message.contains("term 2"));
    }
}
