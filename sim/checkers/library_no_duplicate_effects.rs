//! Library calls take effect at most once: a retried `config().set` (written as
//! "put unless equal") never commits its value twice, and a lease grant retried
//! after a lost answer never leaves a second lease (README, "The client library":
//! "lease ids are chosen by the client, so a grant retried after a lost answer finds
//! its own lease instead of creating a second; `config().set` is 'put unless
//! equal', so a retried set neither writes nor notifies twice").
//!
//! - Writers set every value once (values are unique), so a value delivered by a
//!   watch at two revisions, or present twice in the end-of-run audit of the
//!   committed history, was written twice by one `set` call.
//! - Every lock (`acquire`, `try_acquire`) and `register` call grants one lease. At
//!   the end of the run the leases the cluster granted (applied `LeaseGrant`
//!   entries) that no call returned — as a guard's lease or a registration's — can
//!   only come from calls that failed or were given up, at most one each; more
//!   means some call granted two.

use std::collections::{BTreeMap, BTreeSet};

use super::{violation, Checker, Violation};
use crate::sim::trace::{EventKind, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_no_duplicate_effects";

#[derive(Default)]
pub struct LibraryNoDuplicateEffects {
    /// Value → (key, revision) it was first seen committed at.
    committed_at: BTreeMap<String, (String, i64)>,
    /// Leases the cluster granted.
    granted: BTreeSet<i64>,
    /// Leases calls returned.
    returned: BTreeSet<i64>,
    /// Lock and register calls made.
    calls: u64,
}

/// The lease id of an applied `etcd lease grant <hex> ttl=<n>` command.
fn granted_lease(command: &str) -> Option<i64> {
    let hex = command.strip_prefix("etcd lease grant ")?.split(' ').next()?;
    i64::from_str_radix(hex, 16).ok()
}

impl Checker for LibraryNoDuplicateEffects {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let library = match &event.kind {
            EventKind::Applied {
                command: Some(command),
                ..
            } => {
                self.granted.extend(granted_lease(command));
                return Ok(());
            }
            EventKind::Library(library) => library,
            _ => return Ok(()),
        };
        match library {
            LibraryEvent::LockAcquiring { .. } | LibraryEvent::Registering { .. } => {
                self.calls += 1
            }
            LibraryEvent::LockAcquired { lease, .. } => {
                self.returned.insert(*lease);
            }
            LibraryEvent::Registered {
                lease: Some(lease),
                ..
            } => {
                self.returned.insert(*lease);
            }
            LibraryEvent::ConfigDelivered {
                key,
                value,
                deleted: false,
                revision,
            } => self.committed(event, key, value, *revision)?,
            LibraryEvent::ConfigHistory { changes, .. } => {
                for c in changes.iter().filter(|c| !c.deleted) {
                    self.committed(event, &c.key, &c.value, c.revision)?;
                }
            }
            LibraryEvent::Ended => self.check_leases(event)?,
            _ => {}
        }
        Ok(())
    }
}

impl LibraryNoDuplicateEffects {
    fn committed(
        &mut self,
        event: &TraceEvent,
        key: &str,
        value: &str,
        revision: i64,
    ) -> Result<(), Violation> {
        let (first_key, first) = self
            .committed_at
            .entry(value.to_string())
            .or_insert((key.to_string(), revision));
        if *first != revision {
            return Err(violation(
                NAME,
                event,
                format!(
                    "value {value} was committed twice, to {first_key} at rev {first} and to {key} at rev {revision}: one set() call wrote it twice"
                ),
            ));
        }
        Ok(())
    }

    fn check_leases(&self, event: &TraceEvent) -> Result<(), Violation> {
        let unreturned: Vec<String> = self
            .granted
            .difference(&self.returned)
            .map(|l| format!("{l:x}"))
            .collect();
        let returning_calls = self.returned.len() as u64;
        let failed_calls = self.calls.saturating_sub(returning_calls);
        if unreturned.len() as u64 > failed_calls {
            return Err(violation(
                NAME,
                event,
                format!(
                    "{} leases were granted that no call returned ({}), but only {failed_calls} of {} lock/register calls failed: some call granted more than one lease",
                    unreturned.len(),
                    unreturned.join(", "),
                    self.calls
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::{CommittedChange, EntryMeta};

    fn at(seq: u64, node: u64, kind: EventKind) -> TraceEvent {
        TraceEvent {
            seq,
            time_ms: seq,
            node,
            kind,
        }
    }

    fn lib(event: LibraryEvent) -> EventKind {
        EventKind::Library(event)
    }

    fn grant(lease: i64) -> EventKind {
        EventKind::Applied {
            entry: EntryMeta {
                index: 1,
                term: 1,
                digest: 1,
            },
            command: Some(format!("etcd lease grant {lease:x} ttl=2")),
        }
    }

    fn acquiring() -> EventKind {
        lib(LibraryEvent::LockAcquiring {
            lock: "l0".into(),
            how: "acquire".into(),
        })
    }

    fn acquired(lease: i64) -> EventKind {
        lib(LibraryEvent::LockAcquired {
            lock: "l0".into(),
            lease,
            token: 5,
            ttl_ms: 2_000,
            stale_bound_ms: 5_000,
        })
    }

    fn run(events: Vec<TraceEvent>) -> Result<(), Violation> {
        let mut c = LibraryNoDuplicateEffects::default();
        events.iter().try_for_each(|e| c.observe(e))
    }

    #[test]
    fn parses_lease_grants() {
        assert_eq!(granted_lease("etcd lease grant 1f ttl=2"), Some(31));
        assert_eq!(granted_lease("etcd lease revoke 1f"), None);
    }

    #[test]
    fn fires_on_a_value_committed_twice() {
        let delivered = |rev| {
            lib(LibraryEvent::ConfigDelivered {
                key: "cfg/a".into(),
                value: "w1-1".into(),
                deleted: false,
                revision: rev,
            })
        };
        // Two watchers seeing one commit is fine.
        run(vec![at(1, 781, delivered(3)), at(2, 782, delivered(3))]).unwrap();
        let v = run(vec![at(1, 781, delivered(3)), at(2, 782, delivered(7))]).unwrap_err();
        assert!(v.message.contains("rev 3 and to cfg/a at rev 7"), "{v}");
        let audit = |revs: &[i64]| {
            lib(LibraryEvent::ConfigHistory {
                prefix: "cfg/".into(),
                through_revision: 9,
                changes: revs
                    .iter()
                    .map(|&revision| CommittedChange {
                        revision,
                        key: "cfg/a".into(),
                        value: "w1-1".into(),
                        deleted: false,
                    })
                    .collect(),
                error: None,
            })
        };
        run(vec![at(1, 0, audit(&[3]))]).unwrap();
        assert!(run(vec![at(1, 0, audit(&[3, 5]))]).is_err());
    }

    #[test]
    fn fires_when_a_call_left_two_leases() {
        // One call failed: one unreturned lease is accounted for.
        run(vec![
            at(1, 701, acquiring()),
            at(2, 1, grant(0xa)),
            at(3, 701, acquiring()),
            at(4, 1, grant(0xb)),
            at(5, 701, acquired(0xb)),
            at(6, 0, lib(LibraryEvent::Ended)),
        ])
        .unwrap();
        // One call, two leases granted (a retry with a fresh id).
        let v = run(vec![
            at(1, 701, acquiring()),
            at(2, 1, grant(0xa)),
            at(3, 1, grant(0xb)),
            at(4, 701, acquired(0xb)),
            at(5, 0, lib(LibraryEvent::Ended)),
        ])
        .unwrap_err();
        assert!(v.message.contains("(a)"), "{v}");
    }
}
