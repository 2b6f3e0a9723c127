//! FlowBuilder lock: never two holders. The fenced store never accepts a token
//! below one it accepted (Kleppmann, "How to do distributed locking"); no two
//! holds get one fencing token; and a `renew` that returned `Ok` was not for a
//! lost hold — no other host acquired the resource between this hold's
//! acquisition and the renew's return (seed 002's `DistributedLock`: "renew of a
//! lost hold fails with `LockLost`").

use std::collections::BTreeMap;

use super::{violation, RunEnd, Violation};
use crate::sim::trace::FlowEvent;

pub const NAME: &str = "flow_lock_exclusive";

/// One acquisition: (event seq, host, token).
type Acquisition<'a> = (u64, &'a str, u64);

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    let mut acquisitions: BTreeMap<&str, Vec<Acquisition<'_>>> = BTreeMap::new();
    // Per resource: the highest token the store accepted, and the event.
    let mut highest: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for e in end.events {
        match FlowEvent::of(e) {
            Some(FlowEvent::LockAcquired {
                host,
                resource,
                token,
                ..
            }) => {
                let held = acquisitions.entry(resource.as_str()).or_default();
                if let Some((seq, other, _)) = held.iter().find(|(_, _, t)| t == token) {
                    return Err(violation(
                        NAME,
                        e,
                        format!("{host} acquired {resource} with token {token}, which {other} got before"),
                    )
                    .with_related([*seq]));
                }
                held.push((e.seq, host.as_str(), *token));
            }
            Some(FlowEvent::ResourceUsed {
                host,
                resource,
                token,
                accepted: true,
                ..
            }) => {
                let top = highest.entry(resource.as_str()).or_insert((0, e.seq));
                if *token < top.0 {
                    return Err(violation(
                        NAME,
                        e,
                        format!(
                            "{resource}'s store accepted {host}'s token {token} after token {}",
                            top.0
                        ),
                    )
                    .with_related([top.1]));
                }
                *top = (*token, e.seq);
            }
            Some(FlowEvent::LockRenewed {
                host,
                resource,
                token,
                ok: true,
                late,
                ..
            }) => {
                let held = acquisitions
                    .get(resource.as_str())
                    .map_or(&[][..], |v| v.as_slice());
                let Some(mine) = held.iter().position(|(_, _, t)| t == token) else {
                    continue;
                };
                if let Some((seq, rival, rival_token)) = held[mine + 1..].first() {
                    let how = if *late { " (asked after its TTL)" } else { "" };
                    return Err(violation(
                        NAME,
                        e,
                        format!(
                            "{host}'s renew of {resource} token {token}{how} returned Ok after {rival} acquired it with token {rival_token}: two holders"
                        ),
                    )
                    .with_related([held[mine].0, *seq]));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::end_of;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::{EventKind, TraceEvent};

    fn acquired(h: &mut History, host: &str, token: u64) -> TraceEvent {
        h.push(
            1201,
            EventKind::Flow(FlowEvent::LockAcquired {
                host: host.into(),
                resource: "shared".into(),
                token,
                ttl_ms: 2000,
            }),
        )
    }

    fn renewed(h: &mut History, host: &str, token: u64, ok: bool) -> TraceEvent {
        h.push(
            1201,
            EventKind::Flow(FlowEvent::LockRenewed {
                host: host.into(),
                resource: "shared".into(),
                token,
                late: true,
                ok,
                error: None,
            }),
        )
    }

    fn used(h: &mut History, host: &str, token: u64) -> TraceEvent {
        h.push(
            1201,
            EventKind::Flow(FlowEvent::ResourceUsed {
                host: host.into(),
                resource: "shared".into(),
                token,
                accepted: true,
                highest: 0,
            }),
        )
    }

    fn judge(h: &History) -> Result<Option<String>, Violation> {
        check(&end_of(&h.events()))
    }

    #[test]
    fn a_renew_that_failed_after_a_rival_took_over_passes() {
        let mut h = History::default();
        acquired(&mut h, "flow-1", 5);
        used(&mut h, "flow-1", 5);
        renewed(&mut h, "flow-1", 5, true);
        acquired(&mut h, "flow-2", 9);
        used(&mut h, "flow-2", 9);
        renewed(&mut h, "flow-1", 5, false);
        judge(&h).unwrap();
    }

    #[test]
    fn a_renew_of_a_lost_hold_that_returned_ok_fails() {
        let mut h = History::default();
        let mine = acquired(&mut h, "flow-1", 5);
        let rival = acquired(&mut h, "flow-2", 9);
        renewed(&mut h, "flow-1", 5, true);
        let v = judge(&h).unwrap_err();
        assert!(v.message.contains("two holders"), "{v}");
        assert_eq!(v.related, vec![mine.seq, rival.seq]);
    }

    #[test]
    fn an_older_token_accepted_or_a_token_handed_out_twice_fails() {
        let mut h = History::default();
        used(&mut h, "flow-2", 9);
        used(&mut h, "flow-1", 5);
        let v = judge(&h).unwrap_err();
        assert!(v.message.contains("after token 9"), "{v}");
        let mut h = History::default();
        acquired(&mut h, "flow-1", 5);
        acquired(&mut h, "flow-2", 5);
        let v = judge(&h).unwrap_err();
        assert!(v.message.contains("which flow-1 got before"), "{v}");
    }
}
