//! Placement churn is minimal: from one committed placement to the next, a
//! partition keeps every replica that is still registered, and gains replicas only
//! up to `min(replication, registered brokers)` — so a broker coming moves nothing
//! that was fully placed and a broker going moves only the partitions it held,
//! never all of them (the promise `CooState::reassign` states; seed 000's coo
//! "recomputes the assignment as brokers appear and disappear").
//!
//! Placements are the `CooPlacement` events, one per metadata version (a version
//! rises by one per change, so versions v and v + 1 are one change apart; a member
//! restoring a snapshot skips versions, which are then compared by whoever applied
//! them). The same version must carry the same placement on every member (its
//! registry may differ: a broker joining need not move anything, so it changes no
//! version). The registry of version v + 1 is the one its first event names.

use std::collections::{BTreeMap, BTreeSet};

use super::{violation, Violation};
use crate::sim::trace::{EventKind, TopicPlacement, TraceEvent};

pub const NAME: &str = "placement_churn";

struct Placement<'a> {
    brokers: &'a [u64],
    topics: &'a [TopicPlacement],
    event: &'a TraceEvent,
}

pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    let mut versions: BTreeMap<u64, Placement<'_>> = BTreeMap::new();
    for e in events {
        let EventKind::CooPlacement {
            version,
            brokers,
            topics,
        } = &e.kind
        else {
            continue;
        };
        if let Some(first) = versions.get(version) {
            if first.topics != topics.as_slice() {
                return Err(violation(
                    NAME,
                    e,
                    format!(
                        "node {} applied placement v{version} unlike node {} did",
                        e.node, first.event.node
                    ),
                )
                .with_related([first.event.seq]));
            }
            continue;
        }
        versions.insert(
            *version,
            Placement {
                brokers,
                topics,
                event: e,
            },
        );
    }
    for (version, new) in &versions {
        let Some(old) = version.checked_sub(1).and_then(|v| versions.get(&v)) else {
            continue;
        };
        compare(old, new, *version)?;
    }
    Ok(())
}

fn compare(old: &Placement<'_>, new: &Placement<'_>, version: u64) -> Result<(), Violation> {
    let registered: BTreeSet<u64> = new.brokers.iter().copied().collect();
    for t in new.topics {
        let Some(before) = old.topics.iter().find(|o| o.name == t.name) else {
            continue;
        };
        let target = (t.replication as usize).min(registered.len());
        for (p, replicas) in t.replicas.iter().enumerate() {
            let was = before
                .replicas
                .get(p)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let dropped: Vec<u64> = was
                .iter()
                .filter(|b| registered.contains(b) && !replicas.contains(b))
                .copied()
                .collect();
            if dropped.is_empty() && replicas.len() <= target {
                continue;
            }
            return Err(violation(
                NAME,
                new.event,
                format!(
                    "placement v{version} moved {}/{p} from {was:?} to {replicas:?} (registered {:?}): it dropped registered replicas {dropped:?} or exceeds {target} replicas",
                    t.name, new.brokers
                ),
            )
            .with_related([old.event.seq]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::partition_placement::testing::placement;
    use crate::sim::checkers::testing::History;

    #[test]
    fn a_join_that_moves_nothing_and_a_leave_that_moves_its_own_pass() {
        let mut h = History::default();
        let events = vec![
            placement(&mut h, 3, &[1, 2], &[&[1, 2], &[2, 1]]),
            placement(&mut h, 4, &[1, 2, 3], &[&[1, 2], &[2, 1]]),
            placement(&mut h, 5, &[1, 3], &[&[1, 3], &[3, 1]]),
        ];
        check(&events).unwrap();
    }

    #[test]
    fn fires_when_a_join_reshuffles_partitions() {
        let mut h = History::default();
        let events = vec![
            placement(&mut h, 3, &[1, 2], &[&[1, 2], &[2, 1]]),
            placement(&mut h, 4, &[1, 2, 3], &[&[1, 2], &[2, 3]]),
        ];
        let v = check(&events).unwrap_err();
        assert_eq!(v.event_seq, events[1].seq);
        assert!(v.message.contains("dropped registered replicas [1]"), "{v}");
    }

    #[test]
    fn fires_when_members_disagree_on_a_version() {
        let mut h = History::default();
        let mut events = vec![placement(&mut h, 3, &[1, 2], &[&[1, 2]])];
        let mut other = placement(&mut h, 3, &[1, 2], &[&[2, 1]]);
        other.node = 2;
        events.push(other);
        assert!(check(&events)
            .unwrap_err()
            .message
            .contains("unlike node 1"));
    }
}
