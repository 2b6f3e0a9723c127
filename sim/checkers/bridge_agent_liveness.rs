//! Link Bridge: whether an agent is up is decided in one place — its liveness key
//! goes only with its lease (expired by the leader, on the leader's clock, which
//! `lease_not_early` holds to the renewals the brokers relayed, clock faults
//! credited) or with the agent's own leave; and after healing, an agent nobody
//! hears is down within `down_bound_ms` while one that is connected is up.
//!
//! So a broker that decides on its own clock that an agent it stopped hearing is
//! down — blind to the broker that hears it now — fails the first part: its
//! deletion of the liveness key is no lease's removal.

use std::collections::{BTreeMap, BTreeSet};

use coordlab::bridge::record::{parse_key, BridgeKey};

use super::{violation, RunEnd, Violation};
use crate::sim::trace::{BridgeEvent, EventKind, TraceEvent};

pub const NAME: &str = "bridge_agent_liveness";

/// What the run's events say about one agent at the audit.
#[derive(Default)]
struct AgentFate {
    /// (seq, time) of its host's crash, unless it started again after.
    crashed: Option<(u64, u64)>,
    /// Connected to a broker since (time), if it is.
    connected_since: Option<u64>,
    /// Cut off from some brokers, not yet reconnected.
    cut_off: bool,
}

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    let Some((audit, changes)) = end.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::Bridge(BridgeEvent::CommittedHistory {
            changes,
            error: None,
            ..
        }) => Some((e, changes)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let Some(down_bound_ms) = end.events.iter().find_map(|e| match &e.kind {
        EventKind::Bridge(BridgeEvent::Ended { down_bound_ms, .. }) => Some(*down_bound_ms),
        _ => None,
    }) else {
        return Ok(None);
    };
    let lease_removals: BTreeSet<i64> = end
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::LeaseRemoved { revision, .. } => Some(revision),
            _ => None,
        })
        .collect();
    // Revision → agents whose record the revision deleted (a leave).
    let mut left: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.deleted) {
        if let Ok(BridgeKey::Agent(agent)) = parse_key(c.key.as_bytes()) {
            left.entry(c.revision).or_default().insert(agent);
        }
    }
    // The liveness keys at the end, and how each deletion happened.
    let mut alive: BTreeSet<String> = BTreeSet::new();
    let mut judged = 0usize;
    for c in changes {
        let Ok(BridgeKey::Alive(agent)) = parse_key(c.key.as_bytes()) else {
            continue;
        };
        if !c.deleted {
            alive.insert(agent);
            continue;
        }
        alive.remove(&agent);
        judged += 1;
        let by_lease = lease_removals.contains(&c.revision);
        let by_leave = left.get(&c.revision).is_some_and(|a| a.contains(&agent));
        if !by_lease && !by_leave {
            return Err(violation(
                NAME,
                audit,
                format!(
                    "{agent} was marked down at revision {} by a plain deletion of its \
                     liveness key: neither its lease was removed nor did it leave",
                    c.revision
                ),
            ));
        }
    }
    let fates = fates(end.events, audit.seq);
    for (agent, fate) in &fates {
        match fate.crashed {
            Some((seq, at)) if audit.time_ms > at + down_bound_ms && alive.contains(agent) => {
                return Err(violation(
                    NAME,
                    audit,
                    format!(
                        "{agent}'s host crashed for good at {at} ms, yet it is still up at \
                         {} ms (bound {down_bound_ms} ms)",
                        audit.time_ms
                    ),
                )
                .with_related([seq]));
            }
            None if !fate.cut_off
                && fate
                    .connected_since
                    .is_some_and(|since| audit.time_ms > since + down_bound_ms)
                && !alive.contains(agent) =>
            {
                return Err(violation(
                    NAME,
                    audit,
                    format!(
                        "{agent} has been connected to a broker since {} ms, yet it is down \
                         at {} ms",
                        fate.connected_since.unwrap_or(0),
                        audit.time_ms
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(Some(format!(
        "{NAME}: {judged} liveness deletions, each a lease's removal or a leave; \
         {} agents' final state judged",
        fates.len()
    )))
}

fn fates(events: &[TraceEvent], until_seq: u64) -> BTreeMap<String, AgentFate> {
    let mut fates: BTreeMap<String, AgentFate> = BTreeMap::new();
    for e in events.iter().take_while(|e| e.seq < until_seq) {
        let EventKind::Bridge(event) = &e.kind else {
            continue;
        };
        match event {
            BridgeEvent::AgentStarted { agent } => {
                let fate = fates.entry(agent.clone()).or_default();
                fate.crashed = None;
                fate.connected_since = None;
            }
            BridgeEvent::AgentCrashed { agent } => {
                let fate = fates.entry(agent.clone()).or_default();
                fate.crashed = Some((e.seq, e.time_ms));
                fate.connected_since = None;
            }
            BridgeEvent::AgentConnected { agent, broker } => {
                let fate = fates.entry(agent.clone()).or_default();
                if fate.crashed.is_none() {
                    fate.connected_since = broker.as_ref().map(|_| e.time_ms);
                }
            }
            BridgeEvent::AgentCutOff { agent, .. } => {
                fates.entry(agent.clone()).or_default().cut_off = true;
            }
            BridgeEvent::AgentReconnected { agent } => {
                fates.entry(agent.clone()).or_default().cut_off = false;
            }
            _ => {}
        }
    }
    fates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::end_of;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::RegistryChange;

    fn change(revision: i64, key: &str, deleted: bool) -> RegistryChange {
        RegistryChange {
            revision,
            key: key.into(),
            value: String::new(),
            deleted,
        }
    }

    fn judge(events: &[TraceEvent]) -> Result<Option<String>, Violation> {
        check(&end_of(events))
    }

    fn finish(h: &mut History, changes: Vec<RegistryChange>) {
        h.push(
            0,
            EventKind::Bridge(BridgeEvent::CommittedHistory {
                through_revision: 20,
                changes,
                error: None,
            }),
        );
        h.push(
            0,
            EventKind::Bridge(BridgeEvent::Ended {
                agent_ttl_ms: 2,
                down_bound_ms: 3,
            }),
        );
    }

    fn lease_removed(h: &mut History, revision: i64) {
        h.push(
            1,
            EventKind::LeaseRemoved {
                lease: 7,
                expired: true,
                revision,
            },
        );
    }

    #[test]
    fn a_liveness_key_gone_with_its_lease_or_a_leave_passes() {
        let mut h = History::default();
        lease_removed(&mut h, 5);
        finish(
            &mut h,
            vec![
                change(2, "/bridge/alive/a1", false),
                change(3, "/bridge/alive/a2", false),
                change(5, "/bridge/alive/a1", true),
                change(6, "/bridge/agents/a2", true),
                change(6, "/bridge/alive/a2", true),
            ],
        );
        assert!(judge(&h.events()).is_ok());
    }

    #[test]
    fn a_plain_deletion_of_a_liveness_key_fails() {
        let mut h = History::default();
        lease_removed(&mut h, 5);
        finish(
            &mut h,
            vec![
                change(2, "/bridge/alive/a1", false),
                change(4, "/bridge/alive/a1", true),
            ],
        );
        let v = judge(&h.events()).unwrap_err();
        assert!(v.message.contains("plain deletion"), "{}", v.message);
    }

    #[test]
    fn an_agent_crashed_for_good_but_still_up_fails() {
        let mut h = History::default();
        h.push(
            0,
            EventKind::Bridge(BridgeEvent::AgentCrashed { agent: "a1".into() }),
        );
        h.ticks(5);
        finish(&mut h, vec![change(2, "/bridge/alive/a1", false)]);
        let v = judge(&h.events()).unwrap_err();
        assert!(v.message.contains("crashed for good"), "{}", v.message);
    }

    #[test]
    fn a_connected_agent_that_is_down_fails() {
        let mut h = History::default();
        h.push(
            1121,
            EventKind::Bridge(BridgeEvent::AgentConnected {
                agent: "a1".into(),
                broker: Some("b1".into()),
            }),
        );
        h.ticks(5);
        finish(&mut h, vec![]);
        let v = judge(&h.events()).unwrap_err();
        assert!(v.message.contains("connected to a broker"), "{}", v.message);
    }
}
