//! Liveness after healing: once the fault plan has healed, a leader appears and
//! client operations complete within the scenario's bounds (DESIGN.md,
//! "Invariants"; the second phase of every run, STYLE.md §8).
//!
//! Unlike the online checkers this judges the whole trace once the run ends.

use std::collections::BTreeMap;

use super::{violation_at_end, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "liveness";

/// The bounds a healed cluster must meet.
#[derive(Debug, Clone, Copy)]
pub struct LivenessBounds {
    /// Simulated time at which every fault was healed.
    pub healed_at_ms: u64,
    /// A leader must be established within this long after healing.
    pub leader_within_ms: u64,
    /// A client operation invoked after healing must succeed within this long.
    pub ops_within_ms: u64,
}

/// Checks the healed phase of a finished run.
pub fn check(events: &[TraceEvent], bounds: LivenessBounds) -> Result<(), Violation> {
    let leader_deadline = bounds.healed_at_ms + bounds.leader_within_ms;
    // The latest role of each node as of the deadline.
    // Stopped nodes (removed, or refusing a damaged disk) do not count.
    let mut roles: BTreeMap<u64, (&str, u64)> = BTreeMap::new();
    for e in events.iter().take_while(|e| e.time_ms <= leader_deadline) {
        match &e.kind {
            EventKind::Role { role, term, .. } => {
                roles.insert(e.node, (role.as_str(), *term));
            }
            EventKind::Stopped { .. } => {
                roles.remove(&e.node);
            }
            _ => {}
        }
    }
    let max_term = roles.values().map(|&(_, t)| t).max().unwrap_or(0);
    let leader = roles
        .iter()
        .find(|(_, &(role, term))| role == "leader" && term == max_term);
    if leader.is_none() {
        return Err(violation_at_end(
            NAME,
            events,
            format!(
                "no leader of the latest term {max_term} within {} ms after healing at {} ms (roles: {roles:?})",
                bounds.leader_within_ms, bounds.healed_at_ms
            ),
        ));
    }
    let ops_deadline = bounds.healed_at_ms + bounds.ops_within_ms;
    let mut invoked_after_heal: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::ClientInvoke { client, op, .. }
            | EventKind::RegisterInvoke { client, op, .. }
                if e.time_ms >= bounds.healed_at_ms =>
            {
                invoked_after_heal.insert((*client, *op), e.time_ms);
            }
            EventKind::ClientComplete {
                client,
                op,
                outcome,
                ..
            }
            | EventKind::RegisterComplete {
                client,
                op,
                outcome,
                ..
            } if outcome == "ok"
                && e.time_ms <= ops_deadline
                && invoked_after_heal.contains_key(&(*client, *op)) =>
            {
                return Ok(());
            }
            _ => {}
        }
    }
    Err(violation_at_end(
        NAME,
        events,
        format!(
            "no client operation invoked after healing at {} ms succeeded within {} ms ({} invoked)",
            bounds.healed_at_ms,
            bounds.ops_within_ms,
            invoked_after_heal.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn bounds() -> LivenessBounds {
        LivenessBounds {
            healed_at_ms: 0,
            leader_within_ms: 100,
            ops_within_ms: 100,
        }
    }

    #[test]
    fn fires_without_a_leader() {
        let mut h = History::default();
        let events = vec![h.role(1, "candidate", 2, 0), h.role(2, "follower", 1, 0)];
        assert!(check(&events, bounds()).is_err());
    }

    #[test]
    fn fires_when_no_operation_completes() {
        let mut h = History::default();
        let events = vec![
            h.role(1, "leader", 2, 1),
            h.push(
                9,
                EventKind::ClientInvoke {
                    client: 9,
                    op: 1,
                    kind: "put".into(),
                    key: "k".into(),
                    value: Some("v".into()),
                },
            ),
            h.push(
                9,
                EventKind::ClientComplete {
                    client: 9,
                    op: 1,
                    outcome: "unknown".into(),
                    value: None,
                    revision: None,
                },
            ),
        ];
        assert!(check(&events, bounds()).is_err());
        let mut ok = events.clone();
        ok.push(h.push(
            9,
            EventKind::ClientComplete {
                client: 9,
                op: 1,
                outcome: "ok".into(),
                value: None,
                revision: None,
            },
        ));
        check(&ok, bounds()).unwrap();
    }
}
