//! Library lock safety: a client holding a lock through the client library never
//! acts on a lock the cluster has taken from it — seed 001's `DistributedLock`
//! with fencing tokens (README, "The client library": "a lock's fencing token
//! strictly increases across holders; … `is_held()` turns false if renewal fails for
//! a whole TTL").
//!
//! Lock clients write to a fenced resource (one per lock, in the harness) only while
//! their guard says `is_held()`; the resource refuses a token below the highest it
//! has accepted. A refusal alone is not a bug: a holder whose lease legitimately
//! expired (it could not reach the leader for a TTL, or the leader's clock jumped)
//! keeps `is_held()` until its keeper notices. So the invariant is stated against the
//! cluster's own record of the lease (`LeaseRemoved`, applied from the log):
//!
//! 1. **no two live holders**: the resource never refuses the token of a holder
//!    whose lease the cluster has not removed — a refusal means a higher token was
//!    granted, which the lock service may only do once this holder's key is gone;
//! 2. **`is_held()` trails the cluster by a bounded time**: no write is made while
//!    `is_held()` more than the guard's `stale_bound_ms` after the cluster removed
//!    its lease (the bound follows from the library's renewal schedule and the
//!    client's call deadlines, see `LibrarySpec::stale_bound_ms`), refused or not;
//! 3. **tokens identify holders**: two holders of one lock never get the same
//!    fencing token.

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_lock_safety";

struct Holder {
    client: u64,
    stale_bound_ms: u64,
}

#[derive(Default)]
pub struct LibraryLockSafety {
    /// Lease → (time, revision) the cluster first removed it (any member applying).
    removed: BTreeMap<i64, (u64, i64)>,
    holders: BTreeMap<i64, Holder>,
    /// (lock, token) → the lease that got it.
    token_owner: BTreeMap<(String, i64), i64>,
    /// Lock → (token, client) of the latest accepted write.
    last_accepted: BTreeMap<String, (i64, u64)>,
}

impl Checker for LibraryLockSafety {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::LeaseRemoved, EventTag::Library])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::LeaseRemoved {
                lease, revision, ..
            } => {
                self.removed
                    .entry(*lease)
                    .or_insert((event.time_ms, *revision));
            }
            EventKind::Library(LibraryEvent::LockAcquired {
                lock,
                lease,
                token,
                stale_bound_ms,
                ..
            }) => {
                let owner = *self
                    .token_owner
                    .entry((lock.clone(), *token))
                    .or_insert(*lease);
                if owner != *lease {
                    let other = self.holders.get(&owner).map_or(0, |h| h.client);
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "client {} got fencing token {token} for {lock} with lease {lease:x}, a token client {other} already got with lease {owner:x}",
                            event.node
                        ),
                    ));
                }
                self.holders.insert(
                    *lease,
                    Holder {
                        client: event.node,
                        stale_bound_ms: *stale_bound_ms,
                    },
                );
            }
            EventKind::Library(LibraryEvent::FencedWrite {
                lock,
                lease,
                token,
                accepted,
                highest,
            }) => {
                self.check_write(event, lock, *lease, *token, *accepted, *highest)?;
                if *accepted {
                    self.last_accepted
                        .insert(lock.clone(), (*token, event.node));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl LibraryLockSafety {
    fn check_write(
        &self,
        event: &TraceEvent,
        lock: &str,
        lease: i64,
        token: i64,
        accepted: bool,
        highest: i64,
    ) -> Result<(), Violation> {
        let client = event.node;
        let rival = || match self.last_accepted.get(lock) {
            Some((t, c)) => format!("token {t} of client {c}"),
            None => format!("token {highest}"),
        };
        let Some(&(removed_ms, revision)) = self.removed.get(&lease) else {
            if accepted {
                return Ok(());
            }
            return Err(violation(
                NAME,
                event,
                format!(
                    "two live holders of {lock}: the fenced resource refused token {token} of client {client}, whose lease {lease:x} the cluster still holds, after accepting {}",
                    rival()
                ),
            ));
        };
        let bound = self.holders.get(&lease).map_or(0, |h| h.stale_bound_ms);
        let late_ms = event.time_ms.saturating_sub(removed_ms);
        if late_ms > bound {
            let outcome = if accepted {
                "the resource accepted it only because nobody wrote since".to_string()
            } else {
                format!("the resource refused it after accepting {}", rival())
            };
            return Err(violation(
                NAME,
                event,
                format!(
                    "client {client}'s guard of {lock} still says is_held() {late_ms} ms after the cluster removed its lease {lease:x} (at rev {revision}); the bound is {bound} ms. It wrote with token {token}: {outcome}"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time_ms: u64, node: u64, kind: EventKind) -> TraceEvent {
        TraceEvent {
            seq: time_ms,
            time_ms,
            node,
            kind,
        }
    }

    fn acquired(lease: i64, token: i64) -> EventKind {
        EventKind::Library(LibraryEvent::LockAcquired {
            lock: "l0".into(),
            lease,
            token,
            ttl_ms: 2_000,
            stale_bound_ms: 5_000,
        })
    }

    fn write(lease: i64, token: i64, accepted: bool, highest: i64) -> EventKind {
        EventKind::Library(LibraryEvent::FencedWrite {
            lock: "l0".into(),
            lease,
            token,
            accepted,
            highest,
        })
    }

    fn removed(lease: i64) -> EventKind {
        EventKind::LeaseRemoved {
            lease,
            expired: true,
            revision: 40,
        }
    }

    fn run(events: &[TraceEvent]) -> Result<(), Violation> {
        let mut c = LibraryLockSafety::default();
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    #[test]
    fn a_holder_refused_soon_after_its_lease_expired_is_no_violation() {
        run(&[
            at(100, 701, acquired(0xa, 10)),
            at(200, 701, write(0xa, 10, true, 10)),
            at(3_000, 1, removed(0xa)),
            at(3_500, 702, acquired(0xb, 41)),
            at(3_600, 702, write(0xb, 41, true, 41)),
            // Within the 5 s bound of the expiry at 3.0 s.
            at(7_900, 701, write(0xa, 10, false, 41)),
        ])
        .unwrap();
    }

    #[test]
    fn fires_when_is_held_outlives_the_lease_by_more_than_the_bound() {
        let bad = at(8_100, 701, write(0xa, 10, false, 41));
        let v = run(&[
            at(100, 701, acquired(0xa, 10)),
            at(3_000, 1, removed(0xa)),
            at(3_500, 702, acquired(0xb, 41)),
            at(3_600, 702, write(0xb, 41, true, 41)),
            bad.clone(),
        ])
        .unwrap_err();
        assert_eq!(v.event_seq, bad.seq);
        assert!(v.message.contains("5100 ms after"), "{v}");
        assert!(v.message.contains("token 41 of client 702"), "{v}");
        // Even an accepted write is late: the guard lies about holding the lock.
        assert!(run(&[
            at(100, 701, acquired(0xa, 10)),
            at(3_000, 1, removed(0xa)),
            at(8_100, 701, write(0xa, 10, true, 10)),
        ])
        .is_err());
    }

    #[test]
    fn fires_on_a_refusal_while_the_lease_is_alive() {
        let v = run(&[
            at(100, 701, acquired(0xa, 10)),
            at(200, 702, acquired(0xb, 12)),
            at(300, 702, write(0xb, 12, true, 12)),
            at(400, 701, write(0xa, 10, false, 12)),
        ])
        .unwrap_err();
        assert!(v.message.contains("two live holders"), "{v}");
    }

    #[test]
    fn fires_on_a_token_given_to_two_holders() {
        let v = run(&[
            at(100, 701, acquired(0xa, 10)),
            at(3_000, 1, removed(0xa)),
            at(3_500, 702, acquired(0xb, 10)),
        ])
        .unwrap_err();
        assert!(v.message.contains("already got"), "{v}");
    }
}
