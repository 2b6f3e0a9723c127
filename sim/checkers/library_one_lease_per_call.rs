//! A library call grants at most one lease: a lease grant retried after a lost
//! answer finds its own lease rather than creating a second (README, "The client
//! library": "lease ids are chosen by the client, so a grant retried after a lost
//! answer finds its own lease instead of creating a second").
//!
//! Every lock (`acquire`, `try_acquire`) and `register` call grants one lease; a
//! config center grants one session lease for its `set` markers, with its first
//! `set` (and again with a later one if that grant failed). At the end of the run,
//! the leases the cluster granted (applied `LeaseGrant` entries) that no call
//! returned — as a guard's lease or a registration's — can only be the writers'
//! sessions or come from calls that failed or were given up, at most one each; more
//! means some call granted two. (It counts every grant: the library must be the
//! run's only lease user.)

use std::collections::BTreeSet;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_one_lease_per_call";

#[derive(Default)]
pub struct LibraryOneLeasePerCall {
    /// Leases the cluster granted.
    granted: BTreeSet<i64>,
    /// Leases calls returned.
    returned: BTreeSet<i64>,
    /// Lock and register calls made.
    calls: u64,
    /// Config writers (one session lease each).
    writers: BTreeSet<u64>,
    /// `set` calls that failed (each may have granted a session lease in vain).
    failed_sets: u64,
}

/// The lease id and TTL (seconds) of an applied `etcd lease grant <hex> ttl=<n>`
/// command (as the harness's observer describes it).
pub fn lease_grant(command: &str) -> Option<(i64, u64)> {
    let (hex, ttl) = command
        .strip_prefix("etcd lease grant ")?
        .split_once(" ttl=")?;
    Some((i64::from_str_radix(hex, 16).ok()?, ttl.parse().ok()?))
}

impl Checker for LibraryOneLeasePerCall {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Applied, EventTag::Library])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::Applied {
                command: Some(command),
                ..
            } => self.granted.extend(lease_grant(command).map(|(id, _)| id)),
            EventKind::Library(LibraryEvent::LockAcquiring { .. })
            | EventKind::Library(LibraryEvent::Registering { .. }) => self.calls += 1,
            EventKind::Library(LibraryEvent::LockAcquired { lease, .. })
            | EventKind::Library(LibraryEvent::Registered {
                lease: Some(lease), ..
            }) => {
                self.returned.insert(*lease);
            }
            EventKind::Library(LibraryEvent::ConfigSet { outcome, .. }) => {
                self.writers.insert(event.node);
                if outcome != "ok" {
                    self.failed_sets += 1;
                }
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
        let sessions = self.writers.len() as u64 + self.failed_sets;
        if unreturned.len() as u64 > failed_calls + sessions {
            return Err(violation(
                NAME,
                event,
                format!(
                    "{} leases were granted that no call returned ({}), but only {failed_calls} of {} lock/register calls failed and {} writers may hold up to {sessions} session leases: some call granted more than one lease",
                    unreturned.len(),
                    unreturned.join(", "),
                    self.calls,
                    self.writers.len()
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
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    #[test]
    fn parses_lease_grants() {
        assert_eq!(lease_grant("etcd lease grant 1f ttl=2"), Some((31, 2)));
        assert_eq!(lease_grant("etcd lease revoke 1f"), None);
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

    #[test]
    fn a_writer_may_hold_a_session_lease() {
        let set = |outcome: &str| {
            EventKind::Library(LibraryEvent::ConfigSet {
                key: "cfg/a".into(),
                value: "w1-1".into(),
                outcome: outcome.into(),
            })
        };
        run(vec![
            at(1, 1, grant(0xa)),
            at(2, 1061, set("ok")),
            at(3, 0, ended()),
        ])
        .unwrap();
        // A failed set may have granted a session in vain; beyond that, no.
        let sets = vec![
            at(1, 1, grant(0xa)),
            at(2, 1061, set("timed out")),
            at(3, 1, grant(0xb)),
            at(4, 1061, set("ok")),
        ];
        run([sets.clone(), vec![at(5, 0, ended())]].concat()).unwrap();
        let v = run([sets, vec![at(5, 1, grant(0xc)), at(6, 0, ended())]].concat()).unwrap_err();
        assert!(v.message.contains("3 leases"), "{v}");
    }
}
