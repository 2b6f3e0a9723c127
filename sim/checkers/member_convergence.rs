//! Member convergence after healing: by the end of the run every member has applied
//! (or holds a snapshot of) every entry any node had applied when the faults healed
//! (DESIGN.md, "Invariants"; the second phase of every run, STYLE.md §8).
//!
//! Judged on the whole trace once the run ends, with liveness.

use std::collections::BTreeMap;

use super::{violation_at_end, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "member_convergence";

/// Checks that every node in `members` has applied (or holds a snapshot of) every
/// entry any node had applied when the faults healed, by the end of the run.
pub fn check(events: &[TraceEvent], healed_at_ms: u64, members: &[u64]) -> Result<(), Violation> {
    let mut target = 0;
    let mut progress: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::Applied { entry, .. } => {
                if e.time_ms <= healed_at_ms {
                    target = target.max(entry.index);
                }
                let p = progress.entry(e.node).or_default();
                *p = (*p).max(entry.index);
            }
            EventKind::Recovered { snapshot_index, .. } => {
                progress.insert(e.node, *snapshot_index);
            }
            EventKind::SnapshotPersisted { index, .. } => {
                let p = progress.entry(e.node).or_default();
                *p = (*p).max(*index);
            }
            _ => {}
        }
    }
    for &node in members {
        let reached = progress.get(&node).copied().unwrap_or(0);
        if reached < target {
            return Err(violation_at_end(
                NAME,
                events,
                format!("member {node} applied only up to {reached}, below {target} committed before healing"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_a_member_never_catches_up() {
        let mut h = History::default();
        let events = vec![
            h.applied(1, 1, 1, 1),
            h.applied(1, 2, 1, 2),
            h.applied(2, 1, 1, 1),
        ];
        assert!(check(&events, 100, &[1, 2]).is_err());
        assert!(check(&events, 100, &[1]).is_ok());
    }
}
