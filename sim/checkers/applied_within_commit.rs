//! Applied within commit: recovery never yields an applied index above the commit
//! index (a state machine may only have applied committed entries; Raft paper
//! Figure 2, "lastApplied ≤ commitIndex").

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "applied_within_commit";

#[derive(Default)]
pub struct AppliedWithinCommit;

impl Checker for AppliedWithinCommit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Recovered])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        if let EventKind::Recovered {
            commit, applied, ..
        } = &event.kind
        {
            if applied > commit {
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "node {} recovered applied {applied} above commit {commit}",
                        event.node
                    ),
                ));
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
    fn fires_on_applied_above_commit_after_recovery() {
        let mut h = History::default();
        let mut c = AppliedWithinCommit;
        assert!(c.observe_read(&h.recovered(1, 2, 1, 3, 7, 5)).is_err());
        c.observe_read(&h.recovered(1, 2, 1, 5, 7, 5)).unwrap();
    }
}
