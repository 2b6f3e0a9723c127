//! Library routing: `get_connection` stops routing to an instance once it has seen
//! the instance's deregistration (README, "The client library": "`get_connection`
//! drops an instance as soon as its deregistration event arrives"; seed 001's
//! `GetConnection` follows `Watch`).
//!
//! A consumer holds a `ServiceConnection` and a `registry().watch` of the same
//! service, both through one member, and samples what round-robin `next_channel()`
//! returns. Instances are (id, port): a provider re-registers an id with a new port,
//! so a re-registration is a new instance. Once the consumer's watch delivered the
//! deletion of an instance at revision `r`, a sample that still returns it fails if
//!
//! 1. it also returns an instance registered at a revision above `r` — the
//!    connection's own watch, which reads the registry in revision order, is past
//!    the deletion and ignored it (no time involved); or
//! 2. more than the consumer's `bound_ms` has passed since the deletion was
//!    delivered, counted from the member's last return (restart or resume) if that
//!    is later, and not while the member is killed or paused: the connection's
//!    stream can only catch up on a member that runs.

use std::collections::{BTreeMap, BTreeSet};

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_routing";

type Instance = (String, u16);

#[derive(Default)]
struct Consumer {
    member: u64,
    bound_ms: u64,
    /// Instance → revision of its first registration, as the consumer's watch
    /// delivered it.
    registered_at: BTreeMap<Instance, i64>,
    /// Id → port of its latest registration (to name a deletion without info).
    current_port: BTreeMap<String, u16>,
    /// Instance → (time, revision) its deletion was delivered.
    deleted: BTreeMap<Instance, (u64, i64)>,
}

#[derive(Default)]
pub struct LibraryRouting {
    consumers: BTreeMap<u64, Consumer>,
    /// Member → time it last came back (recovered or resumed).
    back_ms: BTreeMap<u64, u64>,
    /// Members killed or paused now.
    down: BTreeSet<u64>,
}

impl Checker for LibraryRouting {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Library, EventTag::Recovered, EventTag::Process])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let library = match &event.kind {
            EventKind::Library(library) => library,
            EventKind::Recovered { .. } => {
                self.member_back(event);
                return Ok(());
            }
            EventKind::Process { change } if change == "resumed" => {
                self.member_back(event);
                return Ok(());
            }
            EventKind::Process { .. } => {
                // Killed or paused.
                self.down.insert(event.node);
                return Ok(());
            }
            _ => return Ok(()),
        };
        match library {
            LibraryEvent::RoutingOpened {
                member, bound_ms, ..
            } => {
                self.consumers.insert(
                    event.node,
                    Consumer {
                        member: *member,
                        bound_ms: *bound_ms,
                        ..Consumer::default()
                    },
                );
            }
            LibraryEvent::ServiceWatched {
                kind,
                id,
                port,
                revision,
            } => {
                let Some(c) = self.consumers.get_mut(&event.node) else {
                    return Ok(());
                };
                if kind == "put" {
                    // The first registration: routing an instance proves only that
                    // the connection read that far (a retried register puts again).
                    c.registered_at
                        .entry((id.clone(), *port))
                        .or_insert(*revision);
                    c.current_port.insert(id.clone(), *port);
                } else {
                    let port = match port {
                        0 => c.current_port.get(id).copied().unwrap_or(0),
                        p => *p,
                    };
                    c.deleted
                        .insert((id.clone(), port), (event.time_ms, *revision));
                }
            }
            LibraryEvent::Routed { instances } => self.check_routed(event, instances)?,
            _ => {}
        }
        Ok(())
    }
}

impl LibraryRouting {
    fn member_back(&mut self, event: &TraceEvent) {
        self.down.remove(&event.node);
        self.back_ms.insert(event.node, event.time_ms);
    }

    fn check_routed(&self, event: &TraceEvent, routed: &[Instance]) -> Result<(), Violation> {
        let Some(c) = self.consumers.get(&event.node) else {
            return Ok(());
        };
        let newest = routed
            .iter()
            .filter_map(|i| c.registered_at.get(i).map(|rev| (*rev, i)))
            .max();
        for instance in routed {
            let Some(&(deleted_ms, deleted_rev)) = c.deleted.get(instance) else {
                continue;
            };
            let (id, port) = instance;
            if let Some((rev, (newer_id, newer_port))) =
                newest.filter(|(rev, _)| *rev > deleted_rev)
            {
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "consumer {} routes to {id}:{port}, deleted at rev {deleted_rev}, alongside {newer_id}:{newer_port}, registered later at rev {rev}: its connection read past the deletion and kept the instance",
                        event.node
                    ),
                ));
            }
            if self.down.contains(&c.member) {
                continue;
            }
            let since = deleted_ms.max(self.back_ms.get(&c.member).copied().unwrap_or(0));
            let late_ms = event.time_ms.saturating_sub(since);
            if late_ms > c.bound_ms {
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "consumer {} still routes to {id}:{port} {late_ms} ms after its watch delivered the deletion (rev {deleted_rev}); the bound is {} ms",
                        event.node, c.bound_ms
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time_ms: u64, node: u64, event: LibraryEvent) -> TraceEvent {
        TraceEvent {
            seq: time_ms,
            time_ms,
            node,
            kind: EventKind::Library(event),
        }
    }

    fn watched(kind: &str, id: &str, port: u16, revision: i64) -> LibraryEvent {
        LibraryEvent::ServiceWatched {
            kind: kind.into(),
            id: id.into(),
            port,
            revision,
        }
    }

    fn routed(instances: &[(&str, u16)]) -> LibraryEvent {
        LibraryEvent::Routed {
            instances: instances.iter().map(|(i, p)| (i.to_string(), *p)).collect(),
        }
    }

    fn opened() -> TraceEvent {
        at(
            0,
            741,
            LibraryEvent::RoutingOpened {
                service: "svc".into(),
                member: 1,
                bound_ms: 1_500,
            },
        )
    }

    fn run(events: &[TraceEvent]) -> Result<(), Violation> {
        let mut c = LibraryRouting::default();
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    #[test]
    fn a_deleted_instance_may_linger_within_the_bound() {
        run(&[
            opened(),
            at(10, 741, watched("put", "p1", 1, 5)),
            at(20, 741, watched("put", "p2", 1, 6)),
            at(1_000, 741, watched("delete", "p1", 0, 7)),
            at(2_400, 741, routed(&[("p1", 1), ("p2", 1)])),
            at(2_500, 741, routed(&[("p2", 1)])),
            // Re-registered with a new port: a new instance.
            at(3_000, 741, watched("put", "p1", 2, 9)),
            at(3_100, 741, routed(&[("p1", 2), ("p2", 1)])),
        ])
        .unwrap();
    }

    #[test]
    fn fires_past_the_bound() {
        let bad = at(2_700, 741, routed(&[("p1", 1), ("p2", 1)]));
        let v = run(&[
            opened(),
            at(10, 741, watched("put", "p1", 1, 5)),
            at(20, 741, watched("put", "p2", 1, 6)),
            at(1_000, 741, watched("delete", "p1", 1, 7)),
            bad.clone(),
        ])
        .unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
        assert!(v.message.contains("1700 ms after"), "{v}");
        // A restart of the consumer's member restarts the clock.
        let mut restart = at(2_000, 1, watched("put", "x", 0, 0));
        restart.kind = EventKind::Recovered {
            term: 2,
            vote: 1,
            commit: 9,
            snapshot_index: 0,
            snapshot_term: 0,
            last_index: 9,
            applied: 0,
            entries: Vec::new(),
        };
        run(&[
            opened(),
            at(10, 741, watched("put", "p1", 1, 5)),
            at(1_000, 741, watched("delete", "p1", 1, 7)),
            restart,
            at(2_700, 741, routed(&[("p1", 1)])),
        ])
        .unwrap();
    }

    fn process(time_ms: u64, node: u64, change: &str) -> TraceEvent {
        TraceEvent {
            seq: time_ms,
            time_ms,
            node,
            kind: EventKind::Process {
                change: change.into(),
            },
        }
    }

    #[test]
    fn a_paused_member_holds_the_bound_off_until_it_resumes() {
        let deleted = [
            opened(),
            at(10, 741, watched("put", "p1", 1, 5)),
            at(1_000, 741, watched("delete", "p1", 1, 7)),
        ];
        // Paused before the bound ran out: nothing to judge while it is paused,
        // then the bound counts from the resume.
        let paused = [
            process(1_100, 1, "paused"),
            at(2_700, 741, routed(&[("p1", 1)])),
            process(3_000, 1, "resumed"),
            at(4_400, 741, routed(&[("p1", 1)])),
        ];
        run(&[&deleted[..], &paused[..]].concat()).unwrap();
        let late = at(4_600, 741, routed(&[("p1", 1)]));
        let v =
            run(&[&deleted[..], &paused[..], std::slice::from_ref(&late)].concat()).unwrap_err();
        assert_eq!(v.event_seq, late.seq);
        assert!(v.message.contains("1600 ms after"), "{v}");
        // A pause of another member changes nothing.
        let v = run(&[
            &deleted[..],
            &[
                process(1_100, 2, "paused"),
                at(2_700, 741, routed(&[("p1", 1)])),
            ],
        ]
        .concat())
        .unwrap_err();
        assert!(v.message.contains("1700 ms after"), "{v}");
        // A killed member is down until its recovery.
        run(&[
            &deleted[..],
            &[
                process(1_100, 1, "killed"),
                at(2_700, 741, routed(&[("p1", 1)])),
            ],
        ]
        .concat())
        .unwrap();
    }

    #[test]
    fn fires_at_once_when_a_later_registration_is_routed_beside_the_deleted_one() {
        let v = run(&[
            opened(),
            at(10, 741, watched("put", "p1", 1, 5)),
            at(1_000, 741, watched("delete", "p1", 1, 7)),
            at(1_100, 741, watched("put", "p2", 1, 8)),
            at(1_200, 741, routed(&[("p1", 1), ("p2", 1)])),
        ])
        .unwrap_err();
        assert!(v.message.contains("registered later at rev 8"), "{v}");
    }
}
