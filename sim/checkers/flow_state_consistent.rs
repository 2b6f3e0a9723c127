//! FlowBuilder state sync: after healing, every member's own copy of the change
//! log (`/flow/changes/`, audited at one revision) folds into the same state
//! (`FlowState::state_hash`), and each `check_consistency` report, taken once
//! every host had stopped, said `consistent` exactly when they are (seed 002's
//! `StateSynchronizer`; `ConsistencyReport` in `src/flow/state.rs`).

use coordlab::flow::cluster::keys;
use coordlab::flow::cluster::sync::fold;
use coordlab::proto::mvccpb::KeyValue;

use super::{violation, violation_at_end, RunEnd, Violation};
use crate::sim::trace::{AuditedKey, FlowEvent};

pub const NAME: &str = "flow_state_consistent";

/// The state hash a copy folds into, or why it does not fold.
fn state_hash(copy: &[AuditedKey]) -> Result<String, String> {
    let entries: Vec<KeyValue> = copy
        .iter()
        .map(|k| KeyValue {
            key: k.key.as_bytes().to_vec(),
            value: k.value.as_bytes().to_vec(),
            version: k.version,
            create_revision: k.create_revision,
            mod_revision: k.mod_revision,
            ..Default::default()
        })
        .collect();
    fold(&entries)
        .map(|state| state.state_hash())
        .map_err(|e| e.to_string())
}

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    if !FlowEvent::ended(end.events) {
        return Ok(None);
    }
    let copies = FlowEvent::copies(end.events, keys::CHANGES);
    let mut first: Option<(u64, String, u64)> = None;
    for (e, member, copy) in &copies {
        let hash = state_hash(copy).map_err(|why| {
            violation(
                NAME,
                e,
                format!("member {member}'s change log does not fold: {why}"),
            )
        })?;
        match &first {
            None => first = Some((*member, hash, e.seq)),
            Some((other, h, seq)) if *h != hash => {
                return Err(violation(
                    NAME,
                    e,
                    format!("member {member}'s state {hash} differs from member {other}'s {h}"),
                )
                .with_related([*seq]))
            }
            Some(_) => {}
        }
    }
    let Some((_, audited, _)) = first else {
        return Err(violation_at_end(
            NAME,
            end.events,
            "no member's change log was readable at the end of the run",
        ));
    };
    for e in end.events {
        let Some(FlowEvent::ConsistencyChecked {
            host,
            consistent,
            members,
            error: None,
        }) = FlowEvent::of(e)
        else {
            continue;
        };
        // A member the check could not read makes the report inconclusive.
        if members
            .iter()
            .any(|m| m.state_hash.starts_with("unreadable"))
        {
            if *consistent {
                return Err(violation(
                    NAME,
                    e,
                    format!("{host}'s check said consistent without reading every member"),
                ));
            }
            continue;
        }
        if !*consistent {
            return Err(violation(
                NAME,
                e,
                format!("{host}'s check said inconsistent, but every member's copy folds into {audited}"),
            ));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::end_of;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::flow_events::ReportedMember;
    use crate::sim::trace::{EventKind, TraceEvent};
    use coordlab::flow::cluster::sync::ChangeRecord;
    use coordlab::flow::types::{StateChange, WorkflowDef};

    fn entry(n: u64, workflow: &str) -> AuditedKey {
        let record = ChangeRecord {
            origin: "flow-1".into(),
            nonce: n,
            change: StateChange::WorkflowCreated {
                workflow_id: workflow.into(),
                definition: WorkflowDef::default(),
            },
        };
        AuditedKey {
            key: keys::change(n),
            value: serde_json::to_string(&record).unwrap(),
            version: 1,
            create_revision: n as i64,
            mod_revision: n as i64,
        }
    }

    fn history(copies: Vec<Vec<AuditedKey>>, reported_consistent: bool) -> Vec<TraceEvent> {
        let mut h = History::default();
        h.push(
            1201,
            EventKind::Flow(FlowEvent::ConsistencyChecked {
                host: "flow-1".into(),
                consistent: reported_consistent,
                members: vec![ReportedMember {
                    member: "10.0.0.1:2379".into(),
                    revision: 2,
                    state_hash: "abc".into(),
                }],
                error: None,
            }),
        );
        h.flow_audit(keys::CHANGES, copies)
    }

    fn judge(events: &[TraceEvent]) -> Result<Option<String>, Violation> {
        check(&end_of(events))
    }

    #[test]
    fn equal_copies_and_a_consistent_report_pass() {
        let log = || vec![entry(1, "a"), entry(2, "b")];
        judge(&history(vec![log(), log()], true)).unwrap();
    }

    #[test]
    fn diverging_copies_fail() {
        let v = judge(&history(
            vec![vec![entry(1, "a"), entry(2, "b")], vec![entry(1, "a")]],
            true,
        ))
        .unwrap_err();
        assert!(v.message.contains("differs from member 1"), "{v}");
    }

    #[test]
    fn a_report_of_inconsistency_over_equal_copies_fails() {
        let log = || vec![entry(1, "a")];
        let v = judge(&history(vec![log(), log()], false)).unwrap_err();
        assert!(v.message.contains("said inconsistent"), "{v}");
    }
}
