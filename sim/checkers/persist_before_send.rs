//! Persist-before-send: when a node sends a message, the state it would recover from
//! its disk's durable image if it crashed at that instant already covers what the
//! message promises (Raft paper Figure 2: "respond to RPCs only after updating
//! stable storage"; raft-rs `Ready::persisted_messages`):
//!
//! - a vote request: the candidate's term and its vote for itself are durable, or
//!   a later term is (the node can then never vote in that term again);
//! - a granted vote: the term and the vote for that candidate are durable, or a
//!   later term is (a node that takes two inputs in one turn may grant a vote in
//!   term T and then learn of term T+1; only T+1's state reaches the disk);
//! - an append acknowledgement of index i: entries through i are durable, with the
//!   term the node's log has at i;
//! - any message but pre-vote traffic: its term is at most the durable term.
//!
//! The durable view comes from the storage engine's own recovery run over the
//! simulated disk's durable bytes, not from what the engine claims.

use super::log_view::LogView;
use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "persist_before_send";

#[derive(Default)]
pub struct PersistBeforeSend {
    /// Each node's log as it wrote it (volatile view), for the acknowledged term.
    logs: LogView,
}

impl Checker for PersistBeforeSend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        LogView::READS.and(Reads::only(&[EventTag::Sent]))
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        self.logs.observe(event);
        let EventKind::Sent { msg, durable } = &event.kind else {
            return Ok(());
        };
        let node = event.node;
        let fail = |what: String| {
            Err(violation(
                NAME,
                event,
                format!("node {node} sent {} to {}: {what}", msg.kind, msg.to),
            ))
        };
        // A vote for `candidate` in the message's term survives a crash, or the
        // node is durably past that term.
        let vote_durable = |candidate: u64| {
            durable.term > msg.term || (durable.term == msg.term && durable.vote == candidate)
        };
        let pre_vote = matches!(msg.kind, "MsgRequestPreVote" | "MsgRequestPreVoteResponse");
        if !pre_vote && msg.term > durable.term {
            return fail(format!(
                "term {} above durable term {}",
                msg.term, durable.term
            ));
        }
        match msg.kind {
            "MsgRequestVote" if !vote_durable(node) => fail(format!(
                "own vote not durable (durable term {} vote {})",
                durable.term, durable.vote
            )),
            "MsgRequestVoteResponse" if !msg.reject && !vote_durable(msg.to) => fail(format!(
                "granted vote not durable (durable term {} vote {})",
                durable.term, durable.vote
            )),
            "MsgAppendResponse" if !msg.reject => {
                if durable.last_index < msg.index {
                    return fail(format!(
                        "acknowledged {} but durable log ends at {}",
                        msg.index, durable.last_index
                    ));
                }
                let claimed = self.logs.node(node).term_at(msg.index);
                match (claimed, durable.term_at_msg_index) {
                    (Some(want), Some(have)) if want != have => fail(format!(
                        "acknowledged {}@{want} but durable entry there has term {have}",
                        msg.index
                    )),
                    (Some(want), None) => fail(format!(
                        "acknowledged {}@{want} but it is not durable",
                        msg.index
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::{msg, History};
    use crate::sim::trace::DurableView;

    fn durable(term: u64, vote: u64, last_index: u64, term_at: Option<u64>) -> DurableView {
        DurableView {
            term,
            vote,
            last_index,
            term_at_msg_index: term_at,
        }
    }

    #[test]
    fn fires_on_an_append_ack_before_the_sync() {
        let mut h = History::default();
        let mut c = PersistBeforeSend::default();
        c.observe_read(&h.persist(2, None, &[(1, 1, 5), (2, 1, 6)]))
            .unwrap();
        let mut ack = msg("MsgAppendResponse", 2, 1, 1);
        ack.index = 2;
        let bad = h.sent(2, ack, durable(1, 1, 1, None));
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_on_a_granted_vote_that_is_not_durable() {
        let mut h = History::default();
        let mut c = PersistBeforeSend::default();
        let bad = h.sent(
            2,
            msg("MsgRequestVoteResponse", 2, 1, 3),
            durable(3, 0, 0, None),
        );
        assert!(c.observe_read(&bad).is_err());
    }

    /// leader_churn::seed_8100128: node 2 took a term-2 vote request and a term-3
    /// pre-vote answer in one turn: it granted the term-2 vote, then moved to
    /// term 3, and only term 3 (vote 0) was persisted before the grant went out.
    /// Legal: restarted, it is in term 3 and can never vote in term 2 again.
    #[test]
    fn a_grant_for_a_term_the_node_durably_left_passes() {
        let mut h = History::default();
        let mut c = PersistBeforeSend::default();
        let grant = msg("MsgRequestVoteResponse", 2, 1, 2);
        c.observe_read(&h.sent(2, grant.clone(), durable(3, 0, 1, None)))
            .unwrap();
        // In the same term, the vote itself must be durable.
        let bad = h.sent(2, grant, durable(2, 0, 1, None));
        assert!(c.observe_read(&bad).is_err());
        // And a candidate's own vote request likewise.
        let request = msg("MsgRequestVote", 1, 2, 2);
        c.observe_read(&h.sent(1, request.clone(), durable(3, 0, 1, None)))
            .unwrap();
        let bad = h.sent(1, request, durable(2, 0, 1, None));
        assert!(c.observe_read(&bad).is_err());
    }

    #[test]
    fn fires_on_a_term_above_the_durable_term() {
        let mut h = History::default();
        let mut c = PersistBeforeSend::default();
        let bad = h.sent(1, msg("MsgHeartbeat", 1, 2, 4), durable(3, 1, 0, None));
        assert!(c.observe_read(&bad).is_err());
    }

    #[test]
    fn pre_votes_and_covered_messages_pass() {
        let mut h = History::default();
        let mut c = PersistBeforeSend::default();
        c.observe_read(&h.sent(1, msg("MsgRequestPreVote", 1, 2, 9), durable(3, 1, 0, None)))
            .unwrap();
        c.observe_read(&h.persist(2, Some((3, 1, 0)), &[(1, 3, 5)]))
            .unwrap();
        let mut ack = msg("MsgAppendResponse", 2, 1, 3);
        ack.index = 1;
        c.observe_read(&h.sent(2, ack, durable(3, 1, 1, Some(3))))
            .unwrap();
        c.observe_read(&h.sent(
            2,
            msg("MsgRequestVoteResponse", 2, 1, 3),
            durable(3, 1, 1, Some(3)),
        ))
        .unwrap();
    }
}
