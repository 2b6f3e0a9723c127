//! Election safety: at most one leader per term (Raft paper §5.2, Figure 3).

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "election_safety";

#[derive(Default)]
pub struct ElectionSafety {
    /// The first leader of each term, with the event that reported it.
    leader_of_term: BTreeMap<u64, (u64, u64)>,
}

impl Checker for ElectionSafety {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Role])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        if let EventKind::Role { role, term, .. } = &event.kind {
            if role == "leader" {
                let (first, seen) = *self
                    .leader_of_term
                    .entry(*term)
                    .or_insert((event.node, event.seq));
                if first != event.node {
                    return Err(violation(
                        NAME,
                        event,
                        format!("nodes {first} and {} both lead term {term}", event.node),
                    )
                    .with_related([seen]));
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
        let first = h.role(1, "leader", 2, 1);
        c.observe_read(&first).unwrap();
        c.observe_read(&h.role(2, "leader", 3, 2)).unwrap();
        c.observe_read(&h.role(1, "leader", 2, 1)).unwrap();
        let bad = h.role(3, "leader", 2, 3);
        let v = c.observe_read(&bad).unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
        assert!(v.message.contains("term 2"));
        // It names the other leader's election too.
        assert_eq!(v.related, vec![first.seq]);
        assert_eq!(v.events().collect::<Vec<_>>(), vec![bad.seq, first.seq]);
        assert!(
            v.to_string().contains(&format!("(with #{})", first.seq)),
            "{v}"
        );
    }
}
