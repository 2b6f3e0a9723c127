//! Acknowledged writes: a write acknowledged to a client was applied at the log
//! index the client was told, and the entry there is that client's own write
//! (seed 004 and DESIGN.md: proposals are matched to clients by a unique id, never
//! by FIFO order, which acknowledges the wrong client after a leader change).

use std::collections::BTreeMap;

use super::{violation, Checker, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "acknowledged_writes";

#[derive(Default)]
pub struct AcknowledgedWrites {
    /// (client, op) → the command its invoke asked for.
    invoked: BTreeMap<(u64, u64), String>,
    /// index → command applied there (first node to apply it).
    applied: BTreeMap<u64, String>,
    /// index → (client, op, command) acknowledged before anyone was seen applying it.
    waiting: BTreeMap<u64, Vec<(u64, u64, String)>>,
}

fn mismatch(
    event: &TraceEvent,
    client: u64,
    op: u64,
    want: &str,
    index: u64,
    got: &str,
) -> Violation {
    violation(
        NAME,
        event,
        format!("client {client} op {op} was acknowledged for `{want}` at index {index}, which holds `{got}`"),
    )
}

impl Checker for AcknowledgedWrites {
    fn name(&self) -> &'static str {
        NAME
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
                let command = format!("put {key}={}", value.as_deref().unwrap_or_default());
                self.invoked.insert((*client, *op), command);
            }
            EventKind::ClientComplete {
                client,
                op,
                outcome,
                index: Some(index),
                ..
            } if outcome == "ok" => {
                let Some(want) = self.invoked.remove(&(*client, *op)) else {
                    return Ok(());
                };
                match self.applied.get(index) {
                    Some(got) if *got != want => {
                        return Err(mismatch(event, *client, *op, &want, *index, got))
                    }
                    Some(_) => {}
                    None => self
                        .waiting
                        .entry(*index)
                        .or_default()
                        .push((*client, *op, want)),
                }
            }
            EventKind::Applied {
                entry,
                command: Some(command),
            } => {
                self.applied
                    .entry(entry.index)
                    .or_insert_with(|| command.clone());
                for (client, op, want) in self.waiting.remove(&entry.index).unwrap_or_default() {
                    if want != *command {
                        return Err(mismatch(event, client, op, &want, entry.index, command));
                    }
                }
            }
            EventKind::Applied {
                entry,
                command: None,
            } => {
                if let Some(acks) = self.waiting.remove(&entry.index) {
                    let (client, op, want) = &acks[0];
                    return Err(mismatch(
                        event,
                        *client,
                        *op,
                        want,
                        entry.index,
                        "a non-KV entry",
                    ));
                }
                self.applied
                    .entry(entry.index)
                    .or_insert_with(|| "(non-KV entry)".into());
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

    #[test]
    fn fires_when_a_client_is_acknowledged_for_another_entry() {
        let mut h = History::default();
        let mut c = AcknowledgedWrites::default();
        c.observe(&h.invoke_put(101, 1, "k", "a")).unwrap();
        c.observe(&h.applied_command(1, 5, "put k=b")).unwrap();
        let bad = h.complete(101, 1, "ok", Some(5));
        assert_eq!(c.observe(&bad).unwrap_err().event_seq, bad.seq);
    }

    #[test]
    fn fires_when_the_entry_applied_later_is_not_the_acknowledged_one() {
        let mut h = History::default();
        let mut c = AcknowledgedWrites::default();
        c.observe(&h.invoke_put(101, 1, "k", "a")).unwrap();
        c.observe(&h.complete(101, 1, "ok", Some(7))).unwrap();
        assert!(c.observe(&h.applied_command(2, 7, "put k=z")).is_err());
    }

    #[test]
    fn own_writes_and_unknown_outcomes_pass() {
        let mut h = History::default();
        let mut c = AcknowledgedWrites::default();
        c.observe(&h.invoke_put(101, 1, "k", "a")).unwrap();
        c.observe(&h.applied_command(1, 3, "put k=a")).unwrap();
        c.observe(&h.complete(101, 1, "ok", Some(3))).unwrap();
        c.observe(&h.invoke_put(101, 2, "k", "b")).unwrap();
        c.observe(&h.complete(101, 2, "unknown", None)).unwrap();
    }
}
