//! FlowBuilder consensus: a proposal `status` reported `Committed` is in every
//! member's copy of the log, once (key version 1), with the `Committed` record, at
//! the same revision on every member — one order (seed 002's `ConsensusEngine`
//! contract: "once `status` says `Committed`, every member applies the change,
//! once, in the same order"); and one reported `Rejected` holds no `Committed`
//! record. Judged against the end-of-run audit of each member's own copy of
//! `/flow/proposals/`.

use std::collections::BTreeMap;

use coordlab::flow::cluster::consensus::{Decision, ProposalRecord};
use coordlab::flow::cluster::keys;
use coordlab::flow::types::NodeId;

use super::{violation, violation_at_end, RunEnd, Violation};
use crate::sim::trace::{AuditedKey, FlowEvent};

pub const NAME: &str = "flow_proposals_applied";

/// The key of proposal `<origin>#<sequence>`.
fn key_of(id: &str) -> Option<String> {
    let (origin, sequence) = id.rsplit_once('#')?;
    Some(keys::proposal(&NodeId::new(origin), sequence.parse().ok()?))
}

fn decision(key: &AuditedKey) -> Option<Decision> {
    serde_json::from_str::<ProposalRecord>(&key.value)
        .ok()
        .map(|r| r.decision)
}

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    if !FlowEvent::ended(end.events) {
        return Ok(None);
    }
    let prefix = format!("{}proposals/", keys::ROOT);
    let copies: Vec<_> = FlowEvent::copies(end.events, &prefix)
        .into_iter()
        .map(|(e, member, held)| {
            let by_key: BTreeMap<&str, &AuditedKey> =
                held.iter().map(|k| (k.key.as_str(), k)).collect();
            (e, member, by_key)
        })
        .collect();
    for e in end.events {
        let Some(FlowEvent::ProposalDecided { id, status, .. }) = FlowEvent::of(e) else {
            continue;
        };
        let committed = status == "committed";
        if !committed && !status.starts_with("rejected") {
            continue;
        }
        let Some(key) = key_of(id) else {
            return Err(violation(
                NAME,
                e,
                format!("proposal id {id:?} names no key"),
            ));
        };
        if committed && copies.is_empty() {
            return Err(violation_at_end(
                NAME,
                end.events,
                format!("{id} was reported committed, but no member's copy was audited"),
            ));
        }
        let mut first: Option<(u64, i64)> = None;
        for (copy, member, held) in &copies {
            let Some(found) = held.get(key.as_str()) else {
                if committed {
                    return Err(violation(
                        NAME,
                        copy,
                        format!("member {member}'s copy lacks {id}, reported committed"),
                    )
                    .with_related([e.seq]));
                }
                continue;
            };
            let found_committed = decision(found) == Some(Decision::Committed);
            if !committed {
                if found_committed {
                    return Err(violation(
                        NAME,
                        copy,
                        format!(
                            "{id} was reported {status}, but member {member} holds it committed"
                        ),
                    )
                    .with_related([e.seq]));
                }
                continue;
            }
            if !found_committed {
                return Err(violation(
                    NAME,
                    copy,
                    format!(
                        "{id} was reported committed, but member {member} holds {}",
                        found.value
                    ),
                )
                .with_related([e.seq]));
            }
            if found.version != 1 {
                return Err(violation(
                    NAME,
                    copy,
                    format!(
                        "member {member} holds {id} at version {}: written more than once",
                        found.version
                    ),
                )
                .with_related([e.seq]));
            }
            match first {
                None => first = Some((*member, found.mod_revision)),
                Some((other, revision)) if revision != found.mod_revision => {
                    return Err(violation(
                        NAME,
                        copy,
                        format!(
                            "{id} is at revision {} on member {member} but {revision} on member {other}",
                            found.mod_revision
                        ),
                    )
                    .with_related([e.seq]))
                }
                Some(_) => {}
            }
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

    fn record(decision: Decision) -> String {
        serde_json::to_string(&ProposalRecord {
            change: None,
            decision,
        })
        .unwrap()
    }

    fn held(value: String, version: i64, revision: i64) -> AuditedKey {
        AuditedKey {
            key: key_of("flow-1#1").unwrap(),
            value,
            version,
            create_revision: revision,
            mod_revision: revision,
        }
    }

    fn history(status: &str, copies: Vec<Vec<AuditedKey>>) -> Vec<TraceEvent> {
        let mut h = History::default();
        h.push(
            1201,
            EventKind::Flow(FlowEvent::ProposalDecided {
                host: "flow-1".into(),
                id: "flow-1#1".into(),
                status: status.into(),
            }),
        );
        h.flow_audit("/flow/proposals/", copies)
    }

    fn judge(events: &[TraceEvent]) -> Result<Option<String>, Violation> {
        check(&end_of(events))
    }

    #[test]
    fn a_committed_proposal_on_every_member_at_one_revision_passes() {
        let c = || vec![held(record(Decision::Committed), 1, 7)];
        judge(&history("committed", vec![c(), c(), c()])).unwrap();
    }

    #[test]
    fn a_committed_proposal_missing_rejected_or_reordered_fails() {
        let c = || vec![held(record(Decision::Committed), 1, 7)];
        let v = judge(&history("committed", vec![c(), vec![], c()])).unwrap_err();
        assert!(v.message.contains("lacks flow-1#1"), "{v}");
        let rejected = vec![held(
            record(Decision::Rejected {
                reason: "late".into(),
            }),
            1,
            7,
        )];
        let v = judge(&history("committed", vec![rejected.clone(), rejected])).unwrap_err();
        assert!(
            v.message.contains("reported committed, but member 1"),
            "{v}"
        );
        let moved = vec![held(record(Decision::Committed), 1, 9)];
        let v = judge(&history("committed", vec![c(), moved])).unwrap_err();
        assert!(v.message.contains("revision 9 on member 2"), "{v}");
        let twice = vec![held(record(Decision::Committed), 2, 7)];
        let v = judge(&history("committed", vec![twice])).unwrap_err();
        assert!(v.message.contains("version 2"), "{v}");
    }

    #[test]
    fn a_rejected_proposal_held_committed_fails() {
        let c = vec![held(record(Decision::Committed), 1, 7)];
        let v = judge(&history("rejected: late", vec![c])).unwrap_err();
        assert!(v.message.contains("holds it committed"), "{v}");
        judge(&history("rejected: late", vec![vec![]])).unwrap();
    }
}
