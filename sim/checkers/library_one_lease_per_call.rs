//! A library call grants at most one lease: a lease grant retried after a lost
//! answer finds its own lease rather than creating a second (README, "The client
//! library": "lease ids are chosen by the client, so a grant retried after a lost
//! answer finds its own lease instead of creating a second").
//!
//! Every lock (`acquire`, `try_acquire`) and `register` call grants one lease. At the
//! end of the run, the leases the cluster granted (applied `LeaseGrant` entries)
//! that no call returned — as a guard's lease or a registration's — can only come
//! from calls that failed or were given up, at most one each; more means some call
//! granted two. (It counts every grant: the library must be the run's only lease
//! user.)

use std::collections::BTreeSet;

use super::{violation, Checker, Violation};
use crate::sim::trace::{EventKind, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_one_lease_per_call";

#[derive(Default)]
pub struct LibraryOneLeasePerCall {
    /// Leases the cluster granted.
    granted: BTreeSet<i64>,
    /// Leases calls returned.
    returned: BTreeSet<i64>,
    /// Lock and register calls made.
    calls: u64,
}

/// The lease id of an applied `etcd lease grant <hex> ttl=<n>` command.
fn granted_lease(command: &str) -> Option<i64> {
    let hex = command
        .strip_prefix("etcd lease grant ")?
        .split(' ')
        .next()?;
    i64::from_str_radix(hex, 16).ok()
}

impl Checker for LibraryOneLeasePerCall {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::Applied {
                command: Some(command),
                ..
            } => self.granted.extend(granted_lease(command)),
            EventKind::Library(LibraryEvent::LockAcquiring { .. })
            | EventKind::Library(LibraryEvent::Registering { .. }) => self.calls += 1,
            EventKind::Library(LibraryEvent::LockAcquired { lease, .. })
            | EventKind::Library(LibraryEvent::Registered {
                lease: Some(lease), ..
            }) => {
                self.returned.insert(*lease);
            }
            EventKind::Library(LibraryEvent::Ended) => return self.check(event),
            _ => {}
        }
        Ok(())
    }
}

impl LibraryOneLeasePerCall {
    fn check(&self, event: &TraceEvent) -> Result<(), Violation> {
        let unreturned: Vec<String> = self
            .granted
            .difference(&self.returned)
            .map(|l| format!("{l:x}"))
            .collect();
        let failed_calls = self.calls.saturating_sub(self.returned.len() as u64);
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
    use crate::sim::trace::EntryMeta;

    fn at(seq: u64, node: u64, kind: EventKind) -> TraceEvent {
        TraceEvent {
            seq,
            time_ms: seq,
            node,
            kind,
        }
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
        EventKind::Library(LibraryEvent::LockAcquiring {
            lock: "l0".into(),
            how: "acquire".into(),
        })
    }

    fn acquired(lease: i64) -> EventKind {
        EventKind::Library(LibraryEvent::LockAcquired {
            lock: "l0".into(),
            lease,
            token: 5,
            ttl_ms: 2_000,
            stale_bound_ms: 5_000,
        })
    }

    fn ended() -> EventKind {
        EventKind::Library(LibraryEvent::Ended)
    }

    fn run(events: Vec<TraceEvent>) -> Result<(), Violation> {
        let mut c = LibraryOneLeasePerCall::default();
        events.iter().try_for_each(|e| c.observe(e))
    }

    #[test]
    fn parses_lease_grants() {
        assert_eq!(granted_lease("etcd lease grant 1f ttl=2"), Some(31));
        assert_eq!(granted_lease("etcd lease revoke 1f"), None);
    }

    #[test]
    fn a_failed_call_may_leave_one_lease() {
        run(vec![
            at(1, 1001, acquiring()),
            at(2, 1, grant(0xa)),
            at(3, 1001, acquiring()),
            at(4, 1, grant(0xb)),
            // Every member applies the grant: still one lease.
            at(5, 2, grant(0xb)),
            at(6, 1001, acquired(0xb)),
            at(7, 0, ended()),
        ])
        .unwrap();
    }

    #[test]
    fn fires_when_a_call_left_two_leases() {
        // One call, two leases granted (a retry with a fresh id).
        let v = run(vec![
            at(1, 1001, acquiring()),
            at(2, 1, grant(0xa)),
            at(3, 1, grant(0xb)),
            at(4, 1001, acquired(0xb)),
            at(5, 0, ended()),
        ])
        .unwrap_err();
        assert!(v.message.contains("(a)"), "{v}");
    }
}
