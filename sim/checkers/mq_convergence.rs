//! MQ convergence after healing (seed 000; DESIGN.md "LogicNode" invariants):
//! every live broker's reports keep reaching the leader coo (a report of it is
//! committed near the end of the run), and every live broker's topic view converges
//! to the same, newest committed metadata version.
//!
//! Also measures, for the README's figure, how long after each leader change every
//! LogicNode was in the right mode.

use std::collections::BTreeMap;

use super::{violation_at_end, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "mq_convergence";

/// `brokers`: ids of the brokers alive at the end; a report of each must be
/// committed in the last `window_ms` of the run.
pub fn check(events: &[TraceEvent], brokers: &[u64], window_ms: u64) -> Result<(), Violation> {
    let end = events.last().map_or(0, |e| e.time_ms);
    let mut last_report: BTreeMap<u64, u64> = BTreeMap::new();
    let mut views: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::Applied {
                command: Some(command),
                ..
            } => {
                if let Some(id) = command
                    .strip_prefix("coo report broker=")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|id| id.parse::<u64>().ok())
                {
                    last_report.insert(id, e.time_ms);
                }
            }
            EventKind::TopicViewApplied { version } => {
                views.insert(e.node, *version);
            }
            _ => {}
        }
    }
    for &b in brokers {
        match last_report.get(&b) {
            Some(&t) if end.saturating_sub(t) <= window_ms => {}
            Some(&t) => {
                return Err(violation_at_end(
                    NAME,
                    events,
                    format!("reports_reach_leader: broker {b}'s last committed report is from {t} ms, the run ended at {end} ms"),
                ))
            }
            None => return Err(violation_at_end(NAME, events, format!("reports_reach_leader: no report of broker {b} was ever committed"))),
        }
    }
    let newest = brokers
        .iter()
        .filter_map(|b| views.get(b))
        .max()
        .copied()
        .unwrap_or(0);
    for &b in brokers {
        let v = views.get(&b).copied().unwrap_or(0);
        if v != newest {
            return Err(violation_at_end(
                NAME,
                events,
                format!("topic_views_converge: broker {b} has topic view v{v}, others v{newest}"),
            ));
        }
    }
    Ok(())
}

/// For every change of leader: milliseconds until every LogicNode that runs a loop
/// was in the right mode (Local iff it is the new leader). Changes superseded by
/// another before converging are skipped.
pub fn mode_convergence_ms(events: &[TraceEvent]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut leaders: BTreeMap<u64, bool> = BTreeMap::new();
    let mut local: BTreeMap<u64, bool> = BTreeMap::new();
    let mut pending: Option<u64> = None;
    for e in events {
        let mut changed_leader = false;
        match &e.kind {
            EventKind::Role { role, .. } => {
                let leads = role == "leader";
                if leads && leaders.get(&e.node) != Some(&true) {
                    changed_leader = true;
                }
                leaders.insert(e.node, leads);
            }
            EventKind::LoopStarted { mode } => {
                local.insert(e.node, mode == "local");
            }
            EventKind::Recovered { .. }
            | EventKind::LogicNodeStopped
            | EventKind::Stopped { .. } => {
                local.remove(&e.node);
                leaders.insert(e.node, false);
            }
            _ => {}
        }
        if changed_leader {
            pending = Some(e.time_ms);
        }
        if let Some(since) = pending {
            let right = local
                .iter()
                .all(|(n, &is_local)| is_local == leaders.get(n).copied().unwrap_or(false));
            if right {
                out.push(e.time_ms - since);
                pending = None;
            }
        }
    }
    out
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
            h.push(2, EventKind::TopicViewApplied { version: 3 }),
            h.push(3, EventKind::TopicViewApplied { version: 3 }),
        ];
        check(&events, &[2, 3], 1000).unwrap();
        assert!(check(&events, &[2, 3, 4], 1000).is_err());
        let mut stale = events.clone();
        stale.push(h.push(2, EventKind::TopicViewApplied { version: 4 }));
        assert!(check(&stale, &[2, 3], 1000).is_err());
    }

    #[test]
    fn measures_mode_convergence() {
        let mut h = History::default();
        let external = || EventKind::LoopStarted {
            mode: "external".into(),
        };
        let events = vec![
            h.push(1, external()),
            h.push(2, external()),
            h.role(1, "leader", 2, 1),
            h.push(
                1,
                EventKind::LoopStarted {
                    mode: "local".into(),
                },
            ),
        ];
        assert_eq!(mode_convergence_ms(&events), vec![1]);
    }
}
