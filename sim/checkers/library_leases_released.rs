//! A stopped library leaves no lease behind: once every library client has stopped
//! and a TTL has passed, the cluster holds no lease — `unlock`, `unregister` and
//! `close` revoke theirs, and a lease whose holder stopped renewing (a dropped guard
//! or registry, a crashed client) expires (README, "The client library": "dropping
//! the guard releases it too"; etcd Lease API: a lease not kept alive expires after
//! its TTL, and only the leader's `LeaseExpired` entry removes it).
//!
//! Judged on the end-of-run `LeasesLeft` listing (a `LeaseLeases` read); skipped if
//! some client was still running then. A lease granted with a TTL longer than the
//! wait (the config center's session) could rightly still be there and is not
//! judged. (It counts every lease: the library must be the run's only lease user.)

use std::collections::BTreeMap;

use super::library_one_lease_per_call::lease_grant;
use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_leases_released";

#[derive(Default)]
pub struct LibraryLeasesReleased {
    /// Lease → what the trace says it was for.
    owners: BTreeMap<i64, String>,
    /// Lease → its granted TTL in ms.
    ttl_ms: BTreeMap<i64, u64>,
}

impl Checker for LibraryLeasesReleased {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Applied, EventTag::Library])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let library = match &event.kind {
            EventKind::Applied {
                command: Some(command),
                ..
            } => {
                if let Some((lease, ttl_secs)) = lease_grant(command) {
                    self.ttl_ms.insert(lease, ttl_secs * 1000);
                }
                return Ok(());
            }
            EventKind::Library(library) => library,
            _ => return Ok(()),
        };
        match library {
            LibraryEvent::LockAcquired { lock, lease, .. } => {
                self.owners
                    .insert(*lease, format!("client {}'s guard of {lock}", event.node));
            }
            LibraryEvent::Registered {
                id,
                port,
                lease: Some(lease),
                ..
            } => {
                self.owners.insert(
                    *lease,
                    format!("client {}'s registration of {id}:{port}", event.node),
                );
            }
            LibraryEvent::LeasesLeft {
                leases,
                waited_ms,
                clients_running: 0,
            } => {
                let overdue: Vec<String> = leases
                    .iter()
                    .filter(|l| self.ttl_ms.get(l).is_none_or(|ttl| ttl < waited_ms))
                    .map(|l| match self.owners.get(l) {
                        Some(owner) => format!("{l:x} ({owner})"),
                        None => format!("{l:x}"),
                    })
                    .collect();
                if !overdue.is_empty() {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "{waited_ms} ms after every library client stopped the cluster still holds {} lease(s) with a shorter TTL: {}",
                            overdue.len(),
                            overdue.join(", ")
                        ),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sim::checkers::testing::library_event as at;

    fn left(leases: Vec<i64>, clients_running: u64) -> LibraryEvent {
        LibraryEvent::LeasesLeft {
            leases,
            waited_ms: 5_000,
            clients_running,
        }
    }

    fn run(events: Vec<TraceEvent>) -> Result<(), Violation> {
        let mut c = LibraryLeasesReleased::default();
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    #[test]
    fn no_lease_left_passes_and_running_clients_excuse_theirs() {
        run(vec![at(1, 0, left(vec![], 0))]).unwrap();
        run(vec![at(1, 0, left(vec![0xa], 1))]).unwrap();
    }

    #[test]
    fn a_lease_with_a_longer_ttl_than_the_wait_is_not_judged() {
        let grant = TraceEvent {
            seq: 1,
            time_ms: 1,
            node: 1,
            kind: EventKind::Applied {
                entry: crate::sim::trace::EntryMeta {
                    index: 1,
                    term: 1,
                    digest: 1,
                },
                command: Some("etcd lease grant a ttl=60".into()),
            },
        };
        run(vec![grant.clone(), at(2, 0, left(vec![0xa], 0))]).unwrap();
        let short = TraceEvent {
            kind: EventKind::Applied {
                entry: crate::sim::trace::EntryMeta {
                    index: 1,
                    term: 1,
                    digest: 1,
                },
                command: Some("etcd lease grant a ttl=2".into()),
            },
            ..grant
        };
        assert!(run(vec![short, at(2, 0, left(vec![0xa], 0))]).is_err());
    }

    #[test]
    fn fires_on_a_lease_left_and_names_its_owner() {
        let registered = LibraryEvent::Registered {
            id: "p1".into(),
            port: 3,
            outcome: "ok".into(),
            lease: Some(0xa),
        };
        let v = run(vec![at(1, 1021, registered), at(2, 0, left(vec![0xa], 0))]).unwrap_err();
        assert!(
            v.message.contains("a (client 1021's registration of p1:3)"),
            "{v}"
        );
    }
}
