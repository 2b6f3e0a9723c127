//! Placement after healing: every partition of every topic is assigned to exactly
//! `min(replication, registered brokers)` distinct registered brokers — none to an
//! expired one —, every broker alive at the end is registered, and every live
//! broker's topic view is the leader's committed placement (seed 000: "the coo
//! assigns partitions to brokers and pushes topic infos to them"; the assignment
//! is `CooState::reassign`).
//!
//! The committed placement is the newest version any coo applied (`CooPlacement`;
//! a version is one state of the replicated metadata, the same on every member).
//! The registry is replayed from the committed log ([`Registry`]), since a broker
//! joining changes it without necessarily changing the placement. A broker's view
//! must be at least the newest version committed [`VIEW_SETTLE_MS`] before the end
//! (a push in flight at the very end is not a divergence) and never one no coo
//! committed.

use std::collections::BTreeSet;

use super::coo_history::Registry;
use super::{violation_at_end, Violation};
use crate::sim::trace::{EventKind, TopicPlacement, TraceEvent};

pub const NAME: &str = "partition_placement";

/// How long a committed placement may take to reach every live broker's view.
pub const VIEW_SETTLE_MS: u64 = 3_000;

/// `alive`: the brokers alive at the end of the run.
pub fn check(events: &[TraceEvent], alive: &[u64]) -> Result<(), Violation> {
    let end_ms = events.last().map_or(0, |e| e.time_ms);
    let mut newest: Option<(u64, &[TopicPlacement], u64)> = None;
    let mut settled = 0;
    for e in events {
        if let EventKind::CooPlacement {
            version, topics, ..
        } = &e.kind
        {
            if newest.is_none_or(|(v, _, _)| *version > v) {
                newest = Some((*version, topics, e.seq));
            }
            if e.time_ms + VIEW_SETTLE_MS <= end_ms {
                settled = settled.max(*version);
            }
        }
    }
    let Some((version, topics, seq)) = newest else {
        return Ok(());
    };
    let registry = Registry::from_trace(events);
    let registered: BTreeSet<u64> = registry.registered.keys().copied().collect();
    let fail = |message: String| Err(violation_at_end(NAME, events, message).with_related([seq]));
    if let Some(b) = alive.iter().find(|b| !registered.contains(b)) {
        return fail(format!(
            "broker {b} is alive but not registered at the end (registered: {registered:?})"
        ));
    }
    for t in topics {
        let target = (t.replication as usize).min(registered.len());
        for (p, replicas) in t.replicas.iter().enumerate() {
            let distinct: BTreeSet<u64> = replicas.iter().copied().collect();
            let stray: Vec<u64> = distinct.difference(&registered).copied().collect();
            if distinct.len() != replicas.len() || replicas.len() != target || !stray.is_empty() {
                return fail(format!(
                    "placement v{version}: {}/{p} is on {replicas:?}, but must be on exactly {target} distinct registered brokers (replication {}, registered {registered:?}; not registered: {stray:?})",
                    t.name, t.replication
                ));
            }
        }
    }
    for &b in alive {
        let view = events.iter().rev().find_map(|e| match &e.kind {
            EventKind::TopicViewApplied { version } if e.node == b => Some(*version),
            _ => None,
        });
        let view = view.unwrap_or(0);
        if view < settled || view > version {
            return fail(format!(
                "broker {b}'s topic view is v{view}; the coo committed v{version} (v{settled} at least {VIEW_SETTLE_MS} ms before the end)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod testing {
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::{EventKind, TopicPlacement, TraceEvent};

    /// Node 1's coo applies placement `version` of topic `t` (replication 2).
    pub fn placement(
        h: &mut History,
        version: u64,
        brokers: &[u64],
        replicas: &[&[u64]],
    ) -> TraceEvent {
        h.push(
            1,
            EventKind::CooPlacement {
                version,
                brokers: brokers.to_vec(),
                topics: vec![TopicPlacement {
                    name: "t".into(),
                    replication: 2,
                    replicas: replicas.iter().map(|r| r.to_vec()).collect(),
                }],
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::placement;
    use super::*;
    use crate::sim::checkers::coo_history::testing::applied;
    use crate::sim::checkers::testing::History;

    fn history(h: &mut History, replicas: &[&[u64]]) -> Vec<TraceEvent> {
        let mut events = vec![
            applied(h, 1, 1, 1, 1, "coo report broker=1 seq=1"),
            applied(h, 1, 2, 1, 2, "coo report broker=2 seq=1"),
            applied(h, 1, 3, 1, 3, "coo report broker=3 seq=1"),
            placement(h, 4, &[1, 2, 3], replicas),
            h.push(2, EventKind::TopicViewApplied { version: 4 }),
            h.push(3, EventKind::TopicViewApplied { version: 4 }),
        ];
        events.last_mut().unwrap().time_ms = 10_000;
        events
    }

    #[test]
    fn a_full_placement_seen_by_every_broker_passes() {
        let mut h = History::default();
        check(&history(&mut h, &[&[1, 2], &[3, 1]]), &[2, 3]).unwrap();
    }

    #[test]
    fn fires_on_a_placement_that_ignores_replication() {
        let mut h = History::default();
        let v = check(&history(&mut h, &[&[1, 2, 3], &[3, 1]]), &[2, 3]).unwrap_err();
        assert!(v.message.contains("t/0 is on [1, 2, 3]"), "{v}");
    }

    #[test]
    fn fires_on_an_expired_broker_an_unregistered_live_one_or_a_stale_view() {
        let mut h = History::default();
        let mut events = history(&mut h, &[&[1, 2], &[3, 1]]);
        events.push(applied(&mut h, 1, 4, 1, 9_000, "coo expire broker=3 seq=1"));
        let v = check(&events, &[2]).unwrap_err();
        assert!(v.message.contains("not registered: [3]"), "{v}");
        let v = check(&events, &[2, 3]).unwrap_err();
        assert!(v.message.contains("broker 3 is alive"), "{v}");
        let mut h = History::default();
        let mut events = history(&mut h, &[&[1, 2], &[3, 1]]);
        events[4] = h.push(2, EventKind::TopicViewApplied { version: 3 });
        events.last_mut().unwrap().time_ms = 10_000;
        let v = check(&events, &[2, 3]).unwrap_err();
        assert!(v.message.contains("broker 2's topic view is v3"), "{v}");
    }
}
