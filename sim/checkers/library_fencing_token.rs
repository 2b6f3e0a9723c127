//! A lock guard's fencing token is its lock key's create revision, and that key is
//! bound to the guard's lease, as the cluster recorded them (README, "The client
//! library": "a lock's fencing token (its key's create revision)";
//! `src/library/lock.rs`; etcd's `v3lockpb.Lock`: the key is created on the
//! caller's lease and its create revision orders the holders).
//!
//! `library_lock_safety` only compares tokens with each other; this holds each one
//! to the cluster's own record. At the end of the run the audit reads every guard's
//! key `<lock>/<lease hex>` with a historical Range at revision = token
//! (`TokenAudited`): the key must be there, with create revision = token (a token
//! that is any other revision finds the key absent or created elsewhere) and lease =
//! the guard's lease. Every guard reported before the audit started
//! (`TokenAuditStarted`) must have been audited by the end (`Ended`).

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_fencing_token";

#[derive(Default)]
pub struct LibraryFencingToken {
    /// (client, lease, token) of every guard → the `LockAcquired` event's seq.
    guards: BTreeMap<(u64, i64, i64), u64>,
    /// The guards the audit must read (those reported before it started).
    to_audit: Option<Vec<(u64, i64, i64)>>,
    audited: BTreeMap<(u64, i64, i64), u64>,
}

impl Checker for LibraryFencingToken {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Library])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let EventKind::Library(library) = &event.kind else {
            return Ok(());
        };
        match library {
            LibraryEvent::LockAcquired { lease, token, .. } => {
                self.guards.insert((event.node, *lease, *token), event.seq);
            }
            LibraryEvent::TokenAuditStarted => {
                self.to_audit = Some(self.guards.keys().copied().collect());
            }
            LibraryEvent::TokenAudited {
                client,
                lock,
                key,
                lease,
                token,
                found,
                error,
            } => {
                self.audited.insert((*client, *lease, *token), event.seq);
                let wrong = match (found, error) {
                    (_, Some(e)) => Some(format!("the audit could not read it: {e}")),
                    (None, None) => Some(format!("no such key existed at revision {token}")),
                    (Some((create, _)), None) if create != token => Some(format!(
                        "at revision {token} the key's create revision was {create}"
                    )),
                    (Some((_, key_lease)), None) if key_lease != lease => Some(format!(
                        "at revision {token} the key was bound to lease {key_lease:x}"
                    )),
                    (Some(_), None) => None,
                };
                if let Some(wrong) = wrong {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "client {client}'s guard of {lock} (lease {lease:x}) reported fencing token {token}, which must be the create revision of its key {key}, bound to that lease; but {wrong}"
                        ),
                    ));
                }
            }
            LibraryEvent::Ended => {
                let missed = self
                    .to_audit
                    .iter()
                    .flatten()
                    .find(|g| !self.audited.contains_key(g));
                if let Some((client, lease, token)) = missed {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "client {client}'s guard (lease {lease:x}, token {token}, event #{}) was never audited",
                            self.guards[&(*client, *lease, *token)]
                        ),
                    ));
                }
                if self.to_audit.is_none() && !self.guards.is_empty() {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "{} guards were handed out, but the fencing-token audit never ran",
                            self.guards.len()
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

    fn acquired(seq: u64, client: u64, lease: i64, token: i64) -> TraceEvent {
        at(
            seq,
            client,
            LibraryEvent::LockAcquired {
                lock: "lib/lock/0".into(),
                lease,
                token,
                ttl_ms: 2_000,
                stale_bound_ms: 2_766,
            },
        )
    }

    fn audited(
        seq: u64,
        client: u64,
        lease: i64,
        token: i64,
        found: Option<(i64, i64)>,
    ) -> TraceEvent {
        at(
            seq,
            0,
            LibraryEvent::TokenAudited {
                client,
                lock: "lib/lock/0".into(),
                key: format!("lib/lock/0/{lease:x}"),
                lease,
                token,
                found,
                error: None,
            },
        )
    }

    fn run(events: &[TraceEvent]) -> Result<(), Violation> {
        let mut c = LibraryFencingToken::default();
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    #[test]
    fn tokens_that_are_their_keys_create_revisions_pass() {
        run(&[
            acquired(1, 1001, 0xa, 7),
            acquired(2, 1002, 0xb, 12),
            at(3, 0, LibraryEvent::TokenAuditStarted),
            audited(4, 1001, 0xa, 7, Some((7, 0xa))),
            audited(5, 1002, 0xb, 12, Some((12, 0xb))),
            at(6, 0, LibraryEvent::Ended),
        ])
        .unwrap();
        // No guards, no audit: nothing to judge.
        run(&[at(1, 0, LibraryEvent::Ended)]).unwrap();
    }

    #[test]
    fn fires_when_a_token_is_not_the_create_revision() {
        let start = [
            acquired(1, 1001, 0xa, 9),
            at(2, 0, LibraryEvent::TokenAuditStarted),
        ];
        // A header revision: the key exists there, created earlier.
        let mut events = start.to_vec();
        events.push(audited(3, 1001, 0xa, 9, Some((7, 0xa))));
        let v = run(&events).unwrap_err();
        assert_eq!(v.event_seq, 3);
        assert!(v.message.contains("create revision was 7"), "{v}");
        // An older revision: the key did not exist yet.
        events[2] = audited(3, 1001, 0xa, 9, None);
        assert!(run(&events).unwrap_err().message.contains("no such key"));
        // Another lease's key.
        events[2] = audited(3, 1001, 0xa, 9, Some((9, 0xb)));
        assert!(run(&events).unwrap_err().message.contains("lease b"));
    }

    #[test]
    fn fires_when_a_guard_goes_unaudited() {
        let v = run(&[
            acquired(1, 1001, 0xa, 7),
            at(2, 0, LibraryEvent::TokenAuditStarted),
            acquired(3, 1002, 0xb, 12),
            at(4, 0, LibraryEvent::Ended),
        ])
        .unwrap_err();
        assert!(v.message.contains("never audited"), "{v}");
        let v = run(&[acquired(1, 1001, 0xa, 7), at(2, 0, LibraryEvent::Ended)]).unwrap_err();
        assert!(v.message.contains("never ran"), "{v}");
    }
}
