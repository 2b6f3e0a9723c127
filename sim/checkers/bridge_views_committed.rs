//! Link Bridge: every registry a broker serves, and every view a client holds, is
//! the committed registry as of the revision it claims; a broker's revisions never
//! go back (not even across its restarts); and a shutdown notice is final — an
//! instance marked draining never turns serving again while its record lives.
//!
//! The committed registry at a revision is rebuilt from the end-of-run audit's
//! history of `/bridge/` (every change from revision 1) with the same decoding a
//! broker's first read uses, so an incremental view that missed, reordered or
//! invented a change disagrees with it.

use std::collections::{BTreeMap, BTreeSet};

use coordlab::bridge::record::{decode_instance, parse_key, BridgeKey};
use coordlab::bridge::{ClusterState, InstanceStatus};
use coordlab::proto::mvccpb::KeyValue;

use super::{violation, RunEnd, Violation};
use crate::sim::trace::{BridgeEvent, EventKind, RegistryChange, RegistrySummary, TraceEvent};

pub const NAME: &str = "bridge_views_committed";

/// The registries of the committed history at the revisions asked for.
fn committed_at(
    changes: &[RegistryChange],
    revisions: &BTreeSet<i64>,
) -> BTreeMap<i64, RegistrySummary> {
    let mut keys: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut next = changes.iter().peekable();
    for &revision in revisions {
        while let Some(change) = next.next_if(|c| c.revision <= revision) {
            if change.deleted {
                keys.remove(change.key.as_str());
            } else {
                keys.insert(&change.key, (&change.value, change.revision));
            }
        }
        let kvs: Vec<KeyValue> = keys
            .iter()
            .map(|(key, (value, mod_revision))| KeyValue {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                mod_revision: *mod_revision,
                ..Default::default()
            })
            .collect();
        let (state, _unreadable) = ClusterState::from_range(&kvs, revision);
        out.insert(revision, RegistrySummary::of(&state));
    }
    out
}

/// A put of an instance record whose status is serving over one that was
/// draining, with no deletion between.
fn notice_undone(changes: &[RegistryChange]) -> Option<&RegistryChange> {
    let mut draining: BTreeSet<&str> = BTreeSet::new();
    for change in changes {
        let Ok(BridgeKey::Instance { service, id }) = parse_key(change.key.as_bytes()) else {
            continue;
        };
        if change.deleted {
            draining.remove(change.key.as_str());
            continue;
        }
        match decode_instance(&service, &id, change.value.as_bytes()).map(|r| r.status) {
            Ok(InstanceStatus::Draining { .. }) => {
                draining.insert(&change.key);
            }
            Ok(InstanceStatus::Serving) if draining.contains(change.key.as_str()) => {
                return Some(change)
            }
            _ => {}
        }
    }
    None
}

pub fn check(end: &RunEnd<'_>) -> Result<Option<String>, Violation> {
    let Some((audit, through, changes, error)) =
        end.events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Bridge(BridgeEvent::CommittedHistory {
                through_revision,
                changes,
                error,
            }) => Some((e, *through_revision, changes, error)),
            _ => None,
        })
    else {
        return Ok(None);
    };
    if let Some(error) = error {
        return Err(violation(
            NAME,
            audit,
            format!("the committed registry history could not be read after healing: {error}"),
        ));
    }
    if let Some(undone) = notice_undone(changes) {
        return Err(violation(
            NAME,
            audit,
            format!(
                "{} was made serving again at revision {} after its shutdown notice",
                undone.key, undone.revision
            ),
        ));
    }
    let claimed = |e: &TraceEvent| match &e.kind {
        EventKind::Bridge(BridgeEvent::BrokerViewed { revision, .. }) => Some(*revision),
        EventKind::Bridge(BridgeEvent::ClientViewed {
            broker: Some(_),
            revision,
            ..
        }) if *revision > 0 => Some(*revision),
        _ => None,
    };
    let revisions: BTreeSet<i64> = end
        .events
        .iter()
        .filter_map(claimed)
        .filter(|&r| r <= through)
        .collect();
    let committed = committed_at(changes, &revisions);
    let mut last_revision: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
    let mut judged = 0usize;
    for e in end.events {
        let EventKind::Bridge(event) = &e.kind else {
            continue;
        };
        match event {
            BridgeEvent::BrokerViewed {
                broker,
                revision,
                registry,
            } => {
                if let Some(&(before, seq)) = last_revision.get(broker.as_str()) {
                    if *revision < before {
                        return Err(violation(
                            NAME,
                            e,
                            format!("{broker} served revision {revision} after revision {before}"),
                        )
                        .with_related([seq]));
                    }
                }
                last_revision.insert(broker, (*revision, e.seq));
                if let Some(expected) = committed.get(revision) {
                    judged += 1;
                    if expected != registry {
                        return Err(violation(
                            NAME,
                            e,
                            format!(
                                "{broker}'s registry at revision {revision} is {registry:?}, \
                                 the committed one {expected:?}"
                            ),
                        ));
                    }
                }
            }
            BridgeEvent::ClientViewed {
                client,
                broker: Some(broker),
                service,
                revision,
                instances,
            } => {
                if let Some(expected) = committed.get(revision) {
                    judged += 1;
                    let expected = expected.of_service(service);
                    if &expected != instances {
                        return Err(violation(
                            NAME,
                            e,
                            format!(
                                "{client} (on {broker}) shows {service} at revision {revision} \
                                 as {instances:?}, the committed registry as {expected:?}"
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(format!(
        "{NAME}: {judged} broker and client views matched the committed registry \
         ({} changes through revision {through})",
        changes.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::end_of;
    use crate::sim::checkers::testing::History;

    fn change(revision: i64, key: &str, value: &str, deleted: bool) -> RegistryChange {
        RegistryChange {
            revision,
            key: key.into(),
            value: value.into(),
            deleted,
        }
    }

    fn instance(status: InstanceStatus) -> String {
        let record = coordlab::bridge::InstanceRecord {
            id: "i1".into(),
            service: "svc".into(),
            address: "10.0.81.1:8001".into(),
            agent: "a1".into(),
            metadata: Default::default(),
            status,
        };
        String::from_utf8(coordlab::bridge::record::encode(&record)).unwrap()
    }

    fn history(changes: Vec<RegistryChange>) -> EventKind {
        EventKind::Bridge(BridgeEvent::CommittedHistory {
            through_revision: 10,
            changes,
            error: None,
        })
    }

    fn judge(events: &[TraceEvent]) -> Result<Option<String>, Violation> {
        check(&end_of(events))
    }

    fn agent() -> String {
        let record = coordlab::bridge::AgentRecord {
            id: "a1".into(),
            brokers: vec!["b1".into()],
        };
        String::from_utf8(coordlab::bridge::record::encode(&record)).unwrap()
    }

    fn committed() -> Vec<RegistryChange> {
        vec![
            change(2, "/bridge/agents/a1", &agent(), false),
            change(2, "/bridge/alive/a1", "b1", false),
            change(
                3,
                "/bridge/instances/svc/i1",
                &instance(InstanceStatus::Serving),
                false,
            ),
        ]
    }

    fn broker_view(revision: i64, status: Option<&str>) -> EventKind {
        EventKind::Bridge(BridgeEvent::BrokerViewed {
            broker: "b1".into(),
            revision,
            registry: RegistrySummary {
                instances: status
                    .map(|s| vec![("svc".into(), "i1".into(), "a1".into(), s.into())])
                    .unwrap_or_default(),
                agents_up: vec!["a1".into()],
            },
        })
    }

    #[test]
    fn views_of_the_committed_registry_pass_and_an_invented_one_fails() {
        let mut h = History::default();
        h.push(1101, broker_view(2, None));
        h.push(1101, broker_view(3, Some("serving")));
        h.push(0, history(committed()));
        assert!(judge(&h.events()).is_ok());

        let mut h = History::default();
        // At revision 2 the instance was not registered yet.
        let bad = h.push(1101, broker_view(2, Some("serving")));
        h.push(0, history(committed()));
        let v = judge(&h.events()).unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
    }

    #[test]
    fn a_broker_going_back_in_revisions_fails() {
        let mut h = History::default();
        h.push(1101, broker_view(3, Some("serving")));
        let back = h.push(1101, broker_view(2, None));
        h.push(0, history(committed()));
        let v = judge(&h.events()).unwrap_err();
        assert_eq!(v.event_seq, back.seq);
        assert!(v.message.contains("after revision 3"), "{}", v.message);
    }

    #[test]
    fn a_client_view_that_differs_from_the_committed_one_fails() {
        let mut h = History::default();
        h.push(
            1141,
            EventKind::Bridge(BridgeEvent::ClientViewed {
                client: "c1".into(),
                broker: Some("b1".into()),
                service: "svc".into(),
                revision: 3,
                instances: vec![("i1".into(), "draining".into())],
            }),
        );
        h.push(0, history(committed()));
        assert!(judge(&h.events()).unwrap_err().message.contains("c1"));
    }

    #[test]
    fn serving_again_after_a_notice_fails() {
        let mut changes = committed();
        changes.push(change(
            4,
            "/bridge/instances/svc/i1",
            &instance(InstanceStatus::Draining { grace_ms: 2000 }),
            false,
        ));
        changes.push(change(
            5,
            "/bridge/instances/svc/i1",
            &instance(InstanceStatus::Serving),
            false,
        ));
        let mut h = History::default();
        h.push(0, history(changes));
        let v = judge(&h.events()).unwrap_err();
        assert!(v.message.contains("serving again"), "{}", v.message);
    }
}
