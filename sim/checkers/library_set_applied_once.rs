//! A library `set` takes effect once: a `config().set` retried after a lost or slow
//! answer never commits its value a second time (README, "The client library":
//! "`config().set` is 'put unless equal', so a retried set neither writes nor
//! notifies twice").
//!
//! Writers set every value once (values are unique), so a value delivered by a watch
//! at two revisions, or present twice in the end-of-run audit of the committed
//! history, was written twice by one `set` call.

use std::collections::BTreeMap;

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{EventKind, EventTag, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_set_applied_once";

#[derive(Default)]
pub struct LibrarySetAppliedOnce {
    /// Value → (key, revision) it was first seen committed at.
    committed_at: BTreeMap<String, (String, i64)>,
}

impl Checker for LibrarySetAppliedOnce {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads(&self) -> Reads {
        Reads::only(&[EventTag::Library])
    }

    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        match &event.kind {
            EventKind::Library(LibraryEvent::ConfigDelivered {
                key,
                value,
                deleted: false,
                revision,
            }) => self.committed(event, key, value, *revision),
            EventKind::Library(LibraryEvent::ConfigHistory { changes, .. }) => changes
                .iter()
                .filter(|c| !c.deleted)
                .try_for_each(|c| self.committed(event, &c.key, &c.value, c.revision)),
            _ => Ok(()),
        }
    }
}

impl LibrarySetAppliedOnce {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::CommittedChange;

    use crate::sim::checkers::testing::library_event as at;

    fn delivered(revision: i64) -> LibraryEvent {
        LibraryEvent::ConfigDelivered {
            key: "cfg/a".into(),
            value: "w1-1".into(),
            deleted: false,
            revision,
        }
    }

    fn audit(revisions: &[i64]) -> LibraryEvent {
        LibraryEvent::ConfigHistory {
            prefix: "cfg/".into(),
            through_revision: 9,
            changes: revisions
                .iter()
                .map(|&revision| CommittedChange {
                    revision,
                    key: "cfg/a".into(),
                    value: "w1-1".into(),
                    deleted: false,
                })
                .collect(),
            error: None,
        }
    }

    fn run(events: Vec<TraceEvent>) -> Result<(), Violation> {
        let mut c = LibrarySetAppliedOnce::default();
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    #[test]
    fn two_watchers_seeing_one_commit_is_fine() {
        run(vec![
            at(1, 1081, delivered(3)),
            at(2, 1082, delivered(3)),
            at(3, 0, audit(&[3])),
        ])
        .unwrap();
    }

    #[test]
    fn fires_on_a_value_committed_twice() {
        let v = run(vec![at(1, 1081, delivered(3)), at(2, 1082, delivered(7))]).unwrap_err();
        assert!(v.message.contains("rev 3 and to cfg/a at rev 7"), "{v}");
        assert!(run(vec![at(1, 0, audit(&[3, 5]))]).is_err());
    }
}
