//! Auto-compaction retention: periodic auto-compaction with period D keeps the
//! last D of history readable (etcd's `--auto-compaction-retention`). A compaction
//! to revision `c` applied at `t` is legal only if some node held revision `c` at
//! least D before `t`, as the leader's clock counts D: its compactor sampled `c`
//! as the store's revision and waited a whole period before proposing.
//!
//! Judged in true (simulated) time once the run is over, from the earliest moment
//! any node held revision `c` (the sampling leader held it no earlier) to the first
//! node that applied the compaction (the proposal came before it). Clock faults are
//! credited as `lease_not_early` credits them, on any node's clock: a forward jump
//! shortens the period by its size, a fast drift divides it by its rate.

use std::collections::BTreeSet;
use std::time::Duration;

use super::auto_compaction_live::compaction_revision;
use super::lease_timeline::ClockFaults;
use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "auto_compaction_retention";

/// Checks every compaction applied in the run against the period.
pub fn check(events: &[TraceEvent], period: Duration) -> Result<(), Violation> {
    let clocks = ClockFaults::from_trace(events);
    let period_ms = period.as_millis() as u64;
    // (revision, time): the running maximum revision any node applied, in time
    // order; every store starts at revision 1 (as a new etcd cluster).
    let mut held_since: Vec<(i64, u64)> = vec![(1, 0)];
    let mut judged: BTreeSet<i64> = BTreeSet::new();
    for e in events {
        match &e.kind {
            EventKind::CoordApplied { revision, .. }
                if held_since.last().is_none_or(|&(r, _)| *revision > r) =>
            {
                held_since.push((*revision, e.time_ms));
            }
            kind => {
                let Some(c) = compaction_revision(kind) else {
                    continue;
                };
                if !judged.insert(c) {
                    continue;
                }
                // The first moment any node held a revision ≥ c.
                let i = held_since.partition_point(|&(r, _)| r < c);
                let Some(&(_, since)) = held_since.get(i) else {
                    return Err(violation(e, c, "no node had reached it".to_string()));
                };
                let needed = clocks.shortest_ttl_ms(period_ms, since, e.time_ms, None);
                if e.time_ms < since + needed {
                    return Err(violation(
                        e,
                        c,
                        format!(
                            "revision {c} was first held at {since} ms, {} ms before; a period of {period:?} keeps it until {} ms",
                            e.time_ms - since,
                            since + needed
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn violation(e: &TraceEvent, revision: i64, why: String) -> Violation {
    Violation {
        invariant: NAME,
        event_seq: e.seq,
        message: format!(
            "node {} applied a compaction to revision {revision} at {} ms: {why}",
            e.node, e.time_ms
        ),
        related: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    const PERIOD: Duration = Duration::from_secs(2);

    enum Step {
        /// A node's store reached this revision.
        Revision(i64),
        /// A compaction to this revision was applied.
        Compact(i64),
        /// The fault driver's record of a clock fault.
        Fault(&'static str),
    }
    use Step::*;

    fn history(at: &[(u64, u64, Step)]) -> Vec<TraceEvent> {
        let mut h = History::default();
        at.iter()
            .enumerate()
            .map(|(i, (time_ms, node, step))| {
                let mut e = match step {
                    Revision(revision) => h.push(
                        *node,
                        EventKind::CoordApplied {
                            index: i as u64 + 1,
                            revision: *revision,
                        },
                    ),
                    Compact(revision) => {
                        h.applied_command(*node, i as u64 + 1, &format!("etcd compact {revision}"))
                    }
                    Fault(action) => h.push(
                        0,
                        EventKind::Fault {
                            action: action.to_string(),
                        },
                    ),
                };
                e.time_ms = *time_ms;
                e
            })
            .collect()
    }

    #[test]
    fn passes_a_compaction_to_a_revision_held_a_period_ago() {
        let events = history(&[
            (1_000, 1, Revision(5)),
            (1_500, 2, Revision(5)),
            (2_000, 1, Revision(9)),
            (3_000, 1, Compact(5)),
            (3_100, 2, Compact(5)),
        ]);
        check(&events, PERIOD).unwrap();
    }

    #[test]
    fn fires_on_a_compaction_that_keeps_less_than_a_period() {
        let events = history(&[
            (1_000, 1, Revision(5)),
            (2_000, 1, Revision(9)),
            (3_000, 2, Compact(9)),
        ]);
        let v = check(&events, PERIOD).unwrap_err();
        assert!(
            v.message
                .contains("revision 9 was first held at 2000 ms, 1000 ms before"),
            "{v}"
        );
    }

    #[test]
    fn the_first_revision_is_held_from_the_start() {
        let events = history(&[(1_500, 1, Revision(2)), (2_500, 1, Compact(1))]);
        check(&events, PERIOD).unwrap();
    }

    #[test]
    fn fires_on_a_compaction_beyond_every_revision() {
        let events = history(&[(1_000, 1, Revision(5)), (9_000, 1, Compact(6))]);
        let v = check(&events, PERIOD).unwrap_err();
        assert!(v.message.contains("no node had reached it"), "{v}");
    }

    #[test]
    fn credits_a_forward_clock_jump_in_the_window() {
        let jump = r#"{"action":"clock_jump","node":1,"delta_ms":1500}"#;
        let events = history(&[
            (2_000, 1, Revision(9)),
            (2_200, 0, Fault(jump)),
            (3_000, 1, Compact(9)),
        ]);
        check(&events, PERIOD).unwrap();
        let without = history(&[(2_000, 1, Revision(9)), (3_000, 1, Compact(9))]);
        assert!(check(&without, PERIOD).is_err());
    }
}
