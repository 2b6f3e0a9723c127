//! Monotonicity and durability of Raft state: a node's term never goes backwards,
//! across restarts too; a restart recovers at least the term and commit index that
//! were synced before the crash; and recovery never yields `applied > commit`
//! (Raft paper Figure 2: currentTerm is persistent; DESIGN.md, "Invariants").

use std::collections::BTreeMap;

use super::{violation, Checker, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "monotonicity";

#[derive(Default, Clone, Copy)]
struct NodeState {
    /// Highest term seen in this incarnation.
    term: u64,
    /// Term and commit covered by a sync.
    durable_term: u64,
    durable_commit: u64,
    /// Written since the last sync (durable once the next sync happens).
    pending_term: u64,
    pending_commit: u64,
}

#[derive(Default)]
pub struct Monotonicity {
    nodes: BTreeMap<u64, NodeState>,
}

impl Checker for Monotonicity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let node = event.node;
        let state = self.nodes.entry(node).or_default();
        match &event.kind {
            EventKind::Role { term, .. } => {
                if *term < state.term {
                    return Err(violation(
                        NAME,
                        event,
                        format!("node {node} term went from {} to {term}", state.term),
                    ));
                }
                state.term = *term;
            }
            EventKind::Persisted {
                hard_state, synced, ..
            } => {
                if let Some((term, _, commit)) = hard_state {
                    state.pending_term = state.pending_term.max(*term);
                    state.pending_commit = state.pending_commit.max(*commit);
                }
                if *synced {
                    state.durable_term = state.durable_term.max(state.pending_term);
                    state.durable_commit = state.durable_commit.max(state.pending_commit);
                }
            }
            EventKind::Recovered {
                term,
                commit,
                applied,
                ..
            } => {
                if *term < state.durable_term {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "node {node} recovered term {term}, below its synced term {}",
                            state.durable_term
                        ),
                    ));
                }
                if *commit < state.durable_commit {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "node {node} recovered commit {commit}, below its synced commit {}",
                            state.durable_commit
                        ),
                    ));
                }
                if applied > commit {
                    return Err(violation(
                        NAME,
                        event,
                        format!("node {node} recovered applied {applied} above commit {commit}"),
                    ));
                }
                *state = NodeState {
                    term: *term,
                    durable_term: *term,
                    durable_commit: *commit,
                    pending_term: *term,
                    pending_commit: *commit,
                };
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
    fn fires_when_a_restart_loses_the_synced_commit() {
        let mut h = History::default();
        let mut c = Monotonicity::default();
        c.observe(&h.persist(1, Some((2, 1, 7)), &[])).unwrap();
        let bad = h.recovered(1, 2, 1, 0, 7, 0);
        assert_eq!(c.observe(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_on_applied_above_commit_after_recovery() {
        let mut h = History::default();
        let mut c = Monotonicity::default();
        assert!(c.observe(&h.recovered(1, 2, 1, 3, 7, 5)).is_err());
    }

    #[test]
    fn fires_when_the_term_goes_backwards() {
        let mut h = History::default();
        let mut c = Monotonicity::default();
        c.observe(&h.role(1, "follower", 4, 2)).unwrap();
        assert!(c.observe(&h.role(1, "candidate", 3, 0)).is_err());
    }

    #[test]
    fn an_unsynced_commit_may_be_lost() {
        let mut h = History::default();
        let mut c = Monotonicity::default();
        c.observe(&h.persist(1, Some((2, 1, 3)), &[])).unwrap();
        let mut unsynced = h.persist(1, Some((2, 1, 9)), &[]);
        if let EventKind::Persisted { synced, .. } = &mut unsynced.kind {
            *synced = false;
        }
        c.observe(&unsynced).unwrap();
        c.observe(&h.recovered(1, 2, 1, 3, 3, 3)).unwrap();
    }
}
