//! Auto-compaction live: with the members' periodic auto-compaction on, the
//! leader established after healing compacts within two periods (its compactor
//! samples for one whole period, then compacts to the revision of one period ago),
//! to a revision above every compaction committed before the heal. Without it a
//! compactor that never starts, or stops after a leader change, goes unnoticed:
//! the safety checkers only judge compactions that happen.

use std::time::Duration;

use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "auto_compaction_live";

/// What the Applied event of a `Compaction` command reads (`etcd compact N`).
const COMPACT_COMMAND: &str = "etcd compact ";

/// How long after healing a compaction must have been applied: a leader within
/// `leader_within_ms`, then two periods.
pub fn deadline_after_heal_ms(leader_within_ms: u64, period: Duration) -> u64 {
    leader_within_ms + 2 * period.as_millis() as u64
}

/// The revision of a committed `Compaction`, from its Applied event.
pub fn compaction_revision(kind: &EventKind) -> Option<i64> {
    let EventKind::Applied {
        command: Some(command),
        ..
    } = kind
    else {
        return None;
    };
    command.strip_prefix(COMPACT_COMMAND)?.parse().ok()
}

/// Checks that a compaction above every earlier one was applied by some member
/// between `healed_at_ms` and `healed_at_ms + deadline_after_heal_ms(..)`.
pub fn check(
    events: &[TraceEvent],
    healed_at_ms: u64,
    leader_within_ms: u64,
    period: Duration,
) -> Result<(), Violation> {
    let deadline = healed_at_ms + deadline_after_heal_ms(leader_within_ms, period);
    let Some(last) = events.last() else {
        return Ok(());
    };
    if last.time_ms < deadline {
        // The run ended first (scenario validation asks for a longer heal).
        return Ok(());
    }
    let before_heal = events
        .iter()
        .take_while(|e| e.time_ms <= healed_at_ms)
        .filter_map(|e| compaction_revision(&e.kind))
        .max()
        .unwrap_or(0);
    let progressed = events
        .iter()
        .skip_while(|e| e.time_ms <= healed_at_ms)
        .take_while(|e| e.time_ms <= deadline)
        .filter_map(|e| compaction_revision(&e.kind))
        .any(|revision| revision > before_heal);
    if progressed {
        return Ok(());
    }
    let seq = events
        .iter()
        .take_while(|e| e.time_ms <= deadline)
        .last()
        .map_or(0, |e| e.seq);
    Err(Violation {
        invariant: NAME,
        event_seq: seq,
        message: format!(
            "auto-compaction every {period:?}: no member applied a compaction above revision {before_heal} between the heal at {healed_at_ms} ms and {deadline} ms"
        ),
        related: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    const PERIOD: Duration = Duration::from_secs(2);

    /// Events at the given times (ms): `Some(rev)` an applied compaction, `None`
    /// another applied command.
    fn history(at: &[(u64, Option<i64>)]) -> Vec<TraceEvent> {
        let mut h = History::default();
        at.iter()
            .enumerate()
            .map(|(i, &(time_ms, revision))| {
                let command = match revision {
                    Some(r) => format!("etcd compact {r}"),
                    None => "etcd put k=v".to_string(),
                };
                let mut e = h.applied_command(1, i as u64 + 1, &command);
                e.time_ms = time_ms;
                e
            })
            .collect()
    }

    #[test]
    fn reads_the_revision_of_an_applied_compaction_only() {
        let events = history(&[(1, Some(42)), (2, None)]);
        assert_eq!(compaction_revision(&events[0].kind), Some(42));
        assert_eq!(compaction_revision(&events[1].kind), None);
    }

    #[test]
    fn fires_when_no_compaction_follows_the_heal() {
        // Healed at 10 s, leader within 5 s: a compaction is due by 19 s.
        let events = history(&[(3_000, Some(7)), (12_000, None), (20_000, None)]);
        let v = check(&events, 10_000, 5_000, PERIOD).unwrap_err();
        assert!(v.message.contains("above revision 7"), "{v}");
    }

    #[test]
    fn fires_when_the_compaction_after_the_heal_is_no_progress() {
        let events = history(&[(3_000, Some(7)), (12_000, Some(7)), (20_000, None)]);
        assert!(check(&events, 10_000, 5_000, PERIOD).is_err());
    }

    #[test]
    fn fires_when_the_compaction_comes_after_the_deadline() {
        let events = history(&[(3_000, Some(7)), (19_500, Some(9)), (20_000, None)]);
        assert!(check(&events, 10_000, 5_000, PERIOD).is_err());
    }

    #[test]
    fn passes_a_compaction_above_the_earlier_ones_in_time() {
        let events = history(&[(3_000, Some(7)), (18_000, Some(9)), (20_000, None)]);
        check(&events, 10_000, 5_000, PERIOD).unwrap();
    }

    #[test]
    fn does_not_judge_a_run_that_ended_before_the_deadline() {
        let events = history(&[(3_000, Some(7)), (15_000, None)]);
        check(&events, 10_000, 5_000, PERIOD).unwrap();
    }
}
