//! Acknowledged writes: a put acknowledged to a client was applied before the
//! acknowledgement, and made the revision the client was told (seed 004 and
//! DESIGN.md: proposals are matched to clients by a unique id, never by FIFO order,
//! which acknowledges the wrong client after a leader change). Every put of the
//! workload writes a value of its own, so the applied command names the put.

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, TraceEvent};

pub const NAME: &str = "acknowledged_writes";

#[derive(Default)]
pub struct AcknowledgedWrites {
    /// (client, op) → the command its invoke asked for.
    invoked: BTreeMap<(u64, u64), String>,
    /// command → index it was first applied at.
    applied: BTreeMap<String, u64>,
    /// index → revision the etcd store reached by applying it (first member to).
    revisions: BTreeMap<u64, i64>,
}

impl Checker for AcknowledgedWrites {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[
            EventTag::ClientInvoke,
            EventTag::ClientComplete,
            EventTag::Applied,
            EventTag::CoordApplied,
        ])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::ClientInvoke {
                client,
                op,
                kind,
                key,
                value,
            } if kind == "put" => {
                let command = format!("etcd put {key}={}", value.as_deref().unwrap_or_default());
                self.invoked.insert((*client, *op), command);
            }
            EventKind::ClientComplete {
                client,
                op,
                outcome,
                revision,
                ..
            } if outcome == "ok" => {
                let Some(want) = self.invoked.remove(&(*client, *op)) else {
                    return Ok(());
                };
                let Some(index) = self.applied.get(&want) else {
                    return Err(violation(
                        NAME,
                        event,
                        format!("client {client} op {op} was acknowledged for `{want}`, which no member has applied"),
                    ));
                };
                let made = self.revisions.get(index);
                if let (Some(told), Some(made)) = (revision, made) {
                    if told != made {
                        return Err(violation(
                            NAME,
                            event,
                            format!("client {client} op {op} was told `{want}` made revision {told}; applied at index {index}, it made {made}"),
                        ));
                    }
                }
            }
            // Every member applies every command: clone it only the first time.
            EventKind::Applied {
                entry,
                command: Some(command),
            } if !self.applied.contains_key(command) => {
                self.applied.insert(command.clone(), entry.index);
            }
            EventKind::CoordApplied { index, revision } => {
                self.revisions.entry(*index).or_insert(*revision);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn coord_applied(h: &mut History, node: u64, index: u64, revision: i64) -> TraceEvent {
        h.push(node, EventKind::CoordApplied { index, revision })
    }

    #[test]
    fn fires_when_a_client_is_acknowledged_for_a_put_nobody_applied() {
        let mut h = History::default();
        let mut c = AcknowledgedWrites::default();
        c.observe_read(&h.invoke_put(101, 1, "k", "a")).unwrap();
        c.observe_read(&coord_applied(&mut h, 1, 5, 2)).unwrap();
        c.observe_read(&h.applied_command(1, 5, "etcd put k=b"))
            .unwrap();
        let bad = h.complete(101, 1, "ok", Some(2));
        assert_eq!(c.observe_read(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_when_the_revision_told_is_not_the_one_the_put_made() {
        let mut h = History::default();
        let mut c = AcknowledgedWrites::default();
        c.observe_read(&h.invoke_put(101, 1, "k", "a")).unwrap();
        c.observe_read(&coord_applied(&mut h, 1, 5, 2)).unwrap();
        c.observe_read(&h.applied_command(1, 5, "etcd put k=a"))
            .unwrap();
        c.observe_read(&coord_applied(&mut h, 1, 6, 3)).unwrap();
        c.observe_read(&h.applied_command(1, 6, "etcd put k=b"))
            .unwrap();
        assert!(c.observe_read(&h.complete(101, 1, "ok", Some(3))).is_err());
    }

    #[test]
    fn own_writes_and_unknown_outcomes_pass() {
        let mut h = History::default();
        let mut c = AcknowledgedWrites::default();
        c.observe_read(&h.invoke_put(101, 1, "k", "a")).unwrap();
        c.observe_read(&coord_applied(&mut h, 1, 3, 2)).unwrap();
        c.observe_read(&h.applied_command(1, 3, "etcd put k=a"))
            .unwrap();
        // Another member applies it later: the first one's revision stands.
        c.observe_read(&coord_applied(&mut h, 2, 3, 2)).unwrap();
        c.observe_read(&h.complete(101, 1, "ok", Some(2))).unwrap();
        c.observe_read(&h.invoke_put(101, 2, "k", "b")).unwrap();
        c.observe_read(&h.complete(101, 2, "unknown", None))
            .unwrap();
    }
}
