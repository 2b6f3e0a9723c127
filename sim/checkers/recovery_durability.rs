//! Recovery durability: a restart recovers at least the term and commit index the
//! node had synced before it stopped; what was written but not yet synced may be
//! lost (Raft paper Figure 2: currentTerm is persistent; DESIGN.md, "Invariants").

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "recovery_durability";

#[derive(Default, Clone, Copy)]
struct Synced {
    /// Term and commit covered by a sync.
    term: u64,
    commit: u64,
    /// Written since the last sync (durable once the next sync happens).
    pending_term: u64,
    pending_commit: u64,
}

#[derive(Default)]
pub struct RecoveryDurability {
    nodes: BTreeMap<u64, Synced>,
}

impl Checker for RecoveryDurability {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Persisted, EventTag::Recovered])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let node = event.node;
        match &event.kind {
            EventKind::Persisted {
                hard_state, synced, ..
            } => {
                let state = self.nodes.entry(node).or_default();
                if let Some((term, _, commit)) = hard_state {
                    state.pending_term = state.pending_term.max(*term);
                    state.pending_commit = state.pending_commit.max(*commit);
                }
                if *synced {
                    state.term = state.term.max(state.pending_term);
                    state.commit = state.commit.max(state.pending_commit);
                }
            }
            EventKind::Recovered { term, commit, .. } => {
                let state = self.nodes.entry(node).or_default();
                if *term < state.term {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "node {node} recovered term {term}, below its synced term {}",
                            state.term
                        ),
                    ));
                }
                if *commit < state.commit {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "node {node} recovered commit {commit}, below its synced commit {}",
                            state.commit
                        ),
                    ));
                }
                *state = Synced {
                    term: *term,
                    commit: *commit,
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
        let mut c = RecoveryDurability::default();
        c.observe_read(&h.persist(1, Some((2, 1, 7)), &[])).unwrap();
        let bad = h.recovered(1, 2, 1, 0, 7, 0);
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_when_a_restart_loses_the_synced_term() {
        let mut h = History::default();
        let mut c = RecoveryDurability::default();
        c.observe_read(&h.persist(1, Some((5, 1, 0)), &[])).unwrap();
        assert!(c.observe_read(&h.recovered(1, 4, 1, 0, 0, 0)).is_err());
    }

    #[test]
    fn an_unsynced_commit_may_be_lost() {
        let mut h = History::default();
        let mut c = RecoveryDurability::default();
        c.observe_read(&h.persist(1, Some((2, 1, 3)), &[])).unwrap();
        let mut unsynced = h.persist(1, Some((2, 1, 9)), &[]);
        if let EventKind::Persisted { synced, .. } = &mut unsynced.kind {
            *synced = false;
        }
        c.observe_read(&unsynced).unwrap();
        c.observe_read(&h.recovered(1, 2, 1, 3, 3, 3)).unwrap();
    }
}
