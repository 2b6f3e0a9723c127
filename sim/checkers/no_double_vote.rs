//! No double vote: a node grants its vote to at most one candidate per term, across
//! restarts too (Raft paper §5.2: "each server will vote for at most one candidate in
//! a given term"; the vote must be durable, Figure 2).

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "no_double_vote";

#[derive(Default)]
pub struct NoDoubleVote {
    /// (voter, term) → (the candidate it voted for, the event that showed it), from
    /// granted votes and persisted votes.
    vote_of: BTreeMap<(u64, u64), (u64, u64)>,
}

impl NoDoubleVote {
    fn record(
        &mut self,
        event: &TraceEvent,
        term: u64,
        candidate: u64,
        what: &str,
    ) -> Result<(), Violation> {
        if candidate == 0 {
            return Ok(());
        }
        let (first, seen) = *self
            .vote_of
            .entry((event.node, term))
            .or_insert((candidate, event.seq));
        if first != candidate {
            return Err(violation(
                NAME,
                event,
                format!(
                    "node {} voted for {first} and then {what} {candidate} in term {term}",
                    event.node
                ),
            )
            .with_related([seen]));
        }
        Ok(())
    }
}

impl Checker for NoDoubleVote {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Sent, EventTag::Persisted])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::Sent { msg, .. } if msg.kind == "MsgRequestVoteResponse" && !msg.reject => {
                self.record(event, msg.term, msg.to, "granted a vote to")
            }
            EventKind::Persisted {
                hard_state: Some((term, vote, _)),
                ..
            } => self.record(event, *term, *vote, "persisted a vote for"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::{msg, History};
    use crate::sim::trace::DurableView;

    #[test]
    fn fires_when_a_restarted_node_votes_again_in_the_same_term() {
        let mut h = History::default();
        let mut c = NoDoubleVote::default();
        c.observe_read(&h.persist(3, Some((5, 1, 0)), &[])).unwrap();
        c.observe_read(&h.sent(
            3,
            msg("MsgRequestVoteResponse", 3, 1, 5),
            DurableView::default(),
        ))
        .unwrap();
        // Restart lost the vote; the node grants term 5 again, to node 2.
        c.observe_read(&h.recovered(3, 5, 0, 0, 0, 0)).unwrap();
        let bad = h.sent(
            3,
            msg("MsgRequestVoteResponse", 3, 2, 5),
            DurableView::default(),
        );
        let v = c.observe_read(&bad).unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
    }

    #[test]
    fn fires_on_a_second_persisted_vote_in_the_same_term() {
        let mut h = History::default();
        let mut c = NoDoubleVote::default();
        c.observe_read(&h.persist(3, Some((5, 1, 0)), &[])).unwrap();
        c.observe_read(&h.recovered(3, 5, 0, 0, 0, 0)).unwrap();
        let bad = h.persist(3, Some((5, 2, 0)), &[]);
        let v = c.observe_read(&bad).unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
    }

    #[test]
    fn rejections_and_new_terms_are_fine() {
        let mut h = History::default();
        let mut c = NoDoubleVote::default();
        c.observe_read(&h.sent(
            3,
            msg("MsgRequestVoteResponse", 3, 1, 5),
            DurableView::default(),
        ))
        .unwrap();
        let mut reject = msg("MsgRequestVoteResponse", 3, 2, 5);
        reject.reject = true;
        c.observe_read(&h.sent(3, reject, DurableView::default()))
            .unwrap();
        c.observe_read(&h.sent(
            3,
            msg("MsgRequestVoteResponse", 3, 2, 6),
            DurableView::default(),
        ))
        .unwrap();
    }
}
