//! Leader completeness: an entry committed in term T is present in the log of every
//! leader of a term above T (Raft paper §5.4, Figure 3).
//!
//! An entry counts as committed once any node applied it. The trace does not say in
//! which term it was committed, but bounds it: a node applies an entry only after a
//! leader of the commit term (or a later one) told it the commit index, so the
//! commit term is at most the term the applying node was in. When a node becomes
//! leader of term L, every committed entry above its snapshot whose bound is below
//! L must be in its log unchanged. A leader of a term at or below the bound is not
//! judged: a candidate paused after its voters granted an old term can win that
//! term after a newer term committed more (legal, and it can commit nothing).

use std::collections::BTreeMap;

use super::log_view::LogView;
use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "leader_completeness";

#[derive(Default)]
pub struct LeaderCompleteness {
    logs: LogView,
    /// Each node's current term, as its role changes and hard states show.
    terms: BTreeMap<u64, u64>,
    /// index → (term, digest, bound on the commit term) of committed entries.
    committed: BTreeMap<u64, (u64, u64, u64)>,
}

impl Checker for LeaderCompleteness {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        LogView::READS.and(Reads::only(&[EventTag::Role, EventTag::Applied]))
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        self.logs.observe(event);
        let node_term = self.terms.entry(event.node).or_default();
        match &event.kind {
            EventKind::Persisted {
                hard_state: Some((term, _, _)),
                ..
            }
            | EventKind::Recovered { term, .. } => *node_term = (*node_term).max(*term),
            EventKind::Applied { entry, .. } => {
                // The applier's term bounds the commit term; the lowest bound holds.
                let bound = (*node_term).max(entry.term);
                let known =
                    self.committed
                        .entry(entry.index)
                        .or_insert((entry.term, entry.digest, bound));
                known.2 = known.2.min(bound);
            }
            EventKind::Role { role, term, .. } => {
                *node_term = (*node_term).max(*term);
                if role != "leader" {
                    return Ok(());
                }
                let log = self.logs.node(event.node);
                let must_have = self
                    .committed
                    .range(log.snapshot_index + 1..)
                    .filter(|(_, &(_, _, bound))| bound < *term);
                for (&index, &(cterm, digest, _)) in must_have {
                    if log.entry(index) != Some((cterm, digest)) {
                        return Err(violation(
                            NAME,
                            event,
                            format!(
                                "node {} leads term {term} without committed entry {index}@{cterm} (has {:?})",
                                event.node,
                                log.entry(index)
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
    use crate::sim::trace::EntryMeta;

    #[test]
    fn fires_when_a_new_leader_lacks_a_committed_entry() {
        let mut h = History::default();
        let mut c = LeaderCompleteness::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10), (2, 1, 20)]))
            .unwrap();
        c.observe_read(&h.applied(1, 1, 1, 10)).unwrap();
        c.observe_read(&h.applied(1, 2, 1, 20)).unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 1, 10)])).unwrap();
        let bad = h.role(2, "leader", 2, 2);
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    /// A write that failed with EIO after reaching the disk (disk_faults seed
    /// 980000060 of a fuzz run): the node stopped without a `Persisted`, and its
    /// restart recovered the entry. The recovered log, not the persisted events,
    /// is what it holds.
    #[test]
    fn an_entry_known_only_from_recovery_counts() {
        let mut h = History::default();
        let mut c = LeaderCompleteness::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10), (2, 1, 20)]))
            .unwrap();
        c.observe_read(&h.applied(1, 1, 1, 10)).unwrap();
        c.observe_read(&h.applied(1, 2, 1, 20)).unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 1, 10)])).unwrap();
        let mut restart = h.recovered(2, 1, 1, 1, 2, 1);
        if let EventKind::Recovered { entries, .. } = &mut restart.kind {
            *entries = [(1, 10), (2, 20)]
                .map(|(index, digest)| EntryMeta {
                    index,
                    term: 1,
                    digest,
                })
                .to_vec();
        }
        c.observe_read(&restart).unwrap();
        c.observe_read(&h.role(2, "leader", 2, 2)).unwrap();
    }

    /// The sweep's false positive (leader_churn seed 7000008): node 2's voters
    /// granted term 2 and node 2 was paused before counting; node 1 won term 3 and
    /// committed index 2; node 2 resumed and became leader of term 2 without it.
    #[test]
    fn a_stale_term_leader_after_a_newer_terms_commit_is_legal() {
        let mut h = History::default();
        let mut c = LeaderCompleteness::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10)])).unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 1, 10)])).unwrap();
        c.observe_read(&h.role(2, "candidate", 2, 0)).unwrap();
        c.observe_read(&h.role(1, "leader", 3, 1)).unwrap();
        c.observe_read(&h.persist(1, None, &[(2, 3, 20)])).unwrap();
        c.observe_read(&h.applied(1, 2, 3, 20)).unwrap();
        c.observe_read(&h.role(2, "leader", 2, 2)).unwrap();
    }

    /// The same history with the late leader in a term above the commit's: it
    /// must have the entry.
    #[test]
    fn fires_when_a_later_terms_leader_lacks_an_entry_committed_before() {
        let mut h = History::default();
        let mut c = LeaderCompleteness::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10)])).unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 1, 10)])).unwrap();
        c.observe_read(&h.role(1, "leader", 3, 1)).unwrap();
        c.observe_read(&h.persist(1, None, &[(2, 3, 20)])).unwrap();
        c.observe_read(&h.applied(1, 2, 3, 20)).unwrap();
        let bad = h.role(2, "leader", 4, 2);
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn a_complete_leader_passes() {
        let mut h = History::default();
        let mut c = LeaderCompleteness::default();
        c.observe_read(&h.persist(1, None, &[(1, 1, 10)])).unwrap();
        c.observe_read(&h.applied(1, 1, 1, 10)).unwrap();
        c.observe_read(&h.persist(2, None, &[(1, 1, 10), (2, 1, 5)]))
            .unwrap();
        c.observe_read(&h.role(2, "leader", 2, 2)).unwrap();
    }
}
