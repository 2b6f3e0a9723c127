//! Consumer groups: within one generation every partition of the group's topics is
//! assigned to exactly one of its members; a member whose leave the coo answered
//! holds nothing in the generation it answered with; generations only increase
//! (seed 000: `SyncConsumerAssignments`; `CooState::assignment_of`).
//!
//! Read from the coo's own record of each generation (`CooGroup`, on every member
//! as it applies the change) and the consumers' answers (`GroupSynced`). The coo
//! has no member expiry: a member goes only by leaving. Generations only increase
//! on each member while it runs (a restarted member restores its snapshot and
//! applies again what came after it); a group whose members all left keeps its
//! generation, so a generation names one assignment for good. A joined member's
//! answer must be its share of the generation it names.

use std::collections::BTreeMap;

use super::{violation, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "group_assignment";

type Members = [(String, Vec<(String, u32)>)];

pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    // (node, group) → (generation, event)
    let mut last: BTreeMap<(u64, &str), (u64, u64)> = BTreeMap::new();
    // (group, generation) → (members, event), as last recorded.
    let mut records: BTreeMap<(&str, u64), (&Members, u64)> = BTreeMap::new();
    for e in events {
        match &e.kind {
            // A member that stops or is killed starts again from its disk: it restores
            // its snapshot (reporting its groups) before it reports `Recovered`.
            EventKind::Recovered { .. } | EventKind::Stopped { .. } => {
                last.retain(|(node, _), _| *node != e.node)
            }
            EventKind::Process { change } if change == "killed" => {
                last.retain(|(node, _), _| *node != e.node)
            }
            EventKind::CooGroup {
                group,
                generation,
                topics,
                members,
            } => {
                if let Some(&(before, seq)) = last.get(&(e.node, group.as_str())) {
                    if *generation <= before {
                        return Err(violation(
                            NAME,
                            e,
                            format!("group {group} went from generation {before} to {generation} on node {}", e.node),
                        )
                        .with_related([seq]));
                    }
                }
                last.insert((e.node, group), (*generation, e.seq));
                records.insert((group, *generation), (members, e.seq));
                if !members.is_empty() {
                    each_partition_once(e, group, *generation, topics, members)?;
                }
            }
            EventKind::GroupSynced {
                group,
                member,
                leave,
                outcome,
                generation,
                partitions,
            } if outcome == "ok" && *generation > 0 => {
                let Some(&(members, seq)) = records.get(&(group.as_str(), *generation)) else {
                    continue;
                };
                let held = members
                    .iter()
                    .find(|(m, _)| m == member)
                    .map(|(_, p)| p.as_slice());
                let wrong = match (leave, held) {
                    (true, Some(p)) => Some(format!("left, yet holds {p:?}")),
                    (false, Some(p)) if p != partitions.as_slice() => {
                        Some(format!("was answered {partitions:?}, but holds {p:?}"))
                    }
                    (false, None) => Some("joined, but is not a member".to_string()),
                    _ => None,
                };
                if let Some(wrong) = wrong {
                    return Err(violation(
                        NAME,
                        e,
                        format!("{member} of group {group}, generation {generation}: {wrong}"),
                    )
                    .with_related([seq]));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn each_partition_once(
    e: &TraceEvent,
    group: &str,
    generation: u64,
    topics: &[(String, u32)],
    members: &Members,
) -> Result<(), Violation> {
    let mut holders: BTreeMap<(&str, u32), Vec<&str>> = BTreeMap::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            holders.insert((topic, p), Vec::new());
        }
    }
    for (member, partitions) in members {
        for (topic, p) in partitions {
            let Some(held) = holders.get_mut(&(topic.as_str(), *p)) else {
                return Err(violation(
                    NAME,
                    e,
                    format!("group {group} generation {generation}: {member} holds {topic}/{p}, which is not a partition of the group's topics {topics:?}"),
                ));
            };
            held.push(member);
        }
    }
    match holders.iter().find(|(_, h)| h.len() != 1) {
        None => Ok(()),
        Some(((topic, p), held)) => Err(violation(
            NAME,
            e,
            format!("group {group} generation {generation}: {topic}/{p} is held by {held:?}, not by exactly one member"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn group(h: &mut History, generation: u64, members: &[(&str, &[u32])]) -> TraceEvent {
        h.push(
            1,
            EventKind::CooGroup {
                group: "g".into(),
                generation,
                topics: vec![("t".into(), 3), ("gone".into(), 0)],
                members: members
                    .iter()
                    .map(|(m, ps)| (m.to_string(), ps.iter().map(|&p| ("t".into(), p)).collect()))
                    .collect(),
            },
        )
    }

    fn synced(
        h: &mut History,
        member: &str,
        leave: bool,
        generation: u64,
        ps: &[u32],
    ) -> TraceEvent {
        h.push(
            0,
            EventKind::GroupSynced {
                group: "g".into(),
                member: member.into(),
                leave,
                outcome: "ok".into(),
                generation,
                partitions: ps.iter().map(|&p| ("t".into(), p)).collect(),
            },
        )
    }

    #[test]
    fn joins_and_leaves_that_keep_every_partition_on_one_member_pass() {
        let mut h = History::default();
        let events = vec![
            group(&mut h, 1, &[("a", &[0, 1, 2])]),
            synced(&mut h, "a", false, 1, &[0, 1, 2]),
            group(&mut h, 2, &[("a", &[0, 2]), ("b", &[1])]),
            group(&mut h, 3, &[("b", &[0, 1, 2])]),
            synced(&mut h, "a", true, 3, &[]),
            group(&mut h, 4, &[]),
            group(&mut h, 5, &[("c", &[0, 1, 2])]),
        ];
        check(&events).unwrap();
    }

    #[test]
    fn fires_on_a_partition_held_twice() {
        let mut h = History::default();
        let events = vec![group(&mut h, 2, &[("a", &[0, 2]), ("b", &[0, 1])])];
        let v = check(&events).unwrap_err();
        assert!(v.message.contains("t/0 is held by [\"a\", \"b\"]"), "{v}");
    }

    #[test]
    fn fires_on_a_left_member_holding_partitions_or_a_generation_going_back() {
        let mut h = History::default();
        let events = vec![
            group(&mut h, 3, &[("a", &[0, 2]), ("b", &[1])]),
            synced(&mut h, "a", true, 3, &[]),
        ];
        assert!(check(&events)
            .unwrap_err()
            .message
            .contains("left, yet holds"));
        let mut h = History::default();
        let events = vec![
            group(&mut h, 3, &[("a", &[0, 1, 2])]),
            group(&mut h, 3, &[("a", &[0, 1, 2])]),
        ];
        assert!(check(&events)
            .unwrap_err()
            .message
            .contains("from generation 3 to 3"));
        // Unless the member was killed in between (it restores its snapshot).
        let mut h = History::default();
        let events = vec![
            group(&mut h, 3, &[("a", &[0, 1, 2])]),
            h.push(
                1,
                EventKind::Process {
                    change: "killed".into(),
                },
            ),
            group(&mut h, 3, &[("a", &[0, 1, 2])]),
        ];
        check(&events).unwrap();
    }
}
