//! Reports reach the leader after healing (seed 000; DESIGN.md "LogicNode"
//! invariants): every live broker's reports keep reaching the leader coo — a report
//! of it is committed in the last window of the run.

use std::collections::BTreeMap;

use super::{violation_at_end, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "reports_reach_leader";

/// `brokers`: ids of the brokers alive at the end; a report of each must be
/// committed in the last `window_ms` of the run.
pub fn check(events: &[TraceEvent], brokers: &[u64], window_ms: u64) -> Result<(), Violation> {
    let end = events.last().map_or(0, |e| e.time_ms);
    let mut last_report: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events {
        if let EventKind::Applied {
            command: Some(command),
            ..
        } = &e.kind
        {
            if let Some(id) = command
                .strip_prefix("coo report broker=")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|id| id.parse::<u64>().ok())
            {
                last_report.insert(id, e.time_ms);
            }
        }
    }
    for &b in brokers {
        match last_report.get(&b) {
            Some(&t) if end.saturating_sub(t) <= window_ms => {}
            Some(&t) => {
                return Err(violation_at_end(
                    NAME,
                    events,
                    format!(
                    "broker {b}'s last committed report is from {t} ms, the run ended at {end} ms"
                ),
                ))
            }
            None => {
                return Err(violation_at_end(
                    NAME,
                    events,
                    format!("no report of broker {b} was ever committed"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_a_broker_stops_reaching_the_leader() {
        let mut h = History::default();
        let events = vec![
            h.applied_command(1, 5, "coo report broker=2 seq=1"),
            h.applied_command(1, 6, "coo report broker=3 seq=1"),
        ];
        check(&events, &[2, 3], 1000).unwrap();
        assert!(check(&events, &[2, 3, 4], 1000).is_err());
        let mut late = events.clone();
        late.push(h.push(0, EventKind::AuditStarted));
        late.last_mut().unwrap().time_ms = 5000;
        assert!(check(&late, &[2, 3], 1000).is_err());
    }
}
