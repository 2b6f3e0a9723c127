//! Library watch delivery: a config watch (`config().watch` / `watch_prefix`)
//! delivers exactly the committed changes in its range from its start on — in
//! revision order, without duplicates, without gaps, across reconnects and leader
//! changes — and every acknowledged `set` is committed (README, "The client
//! library": watches "resume after any failure from the revision after the last
//! event delivered — no change is missed or repeated"; etcd API, Watch).
//!
//! Online, each delivery must be in the watcher's range, above the store revision
//! read just before the watch was opened (it watches "from now on") and above the
//! watcher's previous delivery (the config workload changes one key per revision).
//! At the end of the run an audit reads the committed history of the config prefix
//! from revision 1, once the cluster has healed and the writers have stopped:
//!
//! - every `set` acknowledged to a writer is in it (acknowledged sets are the floor);
//! - each watcher delivered only committed changes, and every committed change in
//!   its range from its first delivery on — and from just after the revision read
//!   right after it opened, so a watcher that delivered nothing missed nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::{violation, Checker, Reads, Violation};
use crate::sim::trace::{CommittedChange, EventKind, EventTag, LibraryEvent, TraceEvent};

pub const NAME: &str = "library_watch_delivery";

struct Delivered {
    revision: i64,
    key: String,
    value: String,
    deleted: bool,
}

struct Watcher {
    range: String,
    prefix: bool,
    before_revision: i64,
    after_revision: i64,
    delivered: Vec<Delivered>,
}

impl Watcher {
    fn covers(&self, key: &str) -> bool {
        if self.prefix {
            key.starts_with(&self.range)
        } else {
            key == self.range
        }
    }
}

#[derive(Default)]
pub struct LibraryWatchDelivery {
    watchers: BTreeMap<u64, Watcher>,
    /// Value → (key, writer) of every acknowledged set.
    acknowledged: BTreeMap<String, (String, u64)>,
}

impl Checker for LibraryWatchDelivery {
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
            LibraryEvent::ConfigSet {
                key,
                value,
                outcome,
            } if outcome == "ok" => {
                self.acknowledged
                    .insert(value.clone(), (key.clone(), event.node));
            }
            LibraryEvent::ConfigWatchOpened {
                range,
                prefix,
                before_revision,
                after_revision,
            } => {
                self.watchers.insert(
                    event.node,
                    Watcher {
                        range: range.clone(),
                        prefix: *prefix,
                        before_revision: *before_revision,
                        after_revision: *after_revision,
                        delivered: Vec::new(),
                    },
                );
            }
            LibraryEvent::ConfigDelivered {
                key,
                value,
                deleted,
                revision,
            } => {
                let Some(w) = self.watchers.get_mut(&event.node) else {
                    return Ok(());
                };
                let fail = |why: String| {
                    Err(violation(
                        NAME,
                        event,
                        format!(
                            "watcher {} of {:?} delivered {key}={value} at rev {revision}: {why}",
                            event.node, w.range
                        ),
                    ))
                };
                if !w.covers(key) {
                    return fail("outside its range".into());
                }
                if *revision <= w.before_revision {
                    return fail(format!(
                        "the store was already at rev {} before the watch was opened",
                        w.before_revision
                    ));
                }
                if let Some(last) = w.delivered.last().filter(|d| d.revision >= *revision) {
                    return fail(format!(
                        "after {}={} at rev {} (out of order or repeated)",
                        last.key, last.value, last.revision
                    ));
                }
                w.delivered.push(Delivered {
                    revision: *revision,
                    key: key.clone(),
                    value: value.clone(),
                    deleted: *deleted,
                });
            }
            LibraryEvent::ConfigHistory {
                prefix,
                through_revision,
                changes,
                error,
            } => {
                if let Some(e) = error {
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "the end-of-run audit could not read the history of {prefix:?}: {e}"
                        ),
                    ));
                }
                self.check_history(event, *through_revision, changes)?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl LibraryWatchDelivery {
    fn check_history(
        &self,
        event: &TraceEvent,
        through: i64,
        changes: &[CommittedChange],
    ) -> Result<(), Violation> {
        let committed: BTreeSet<(&str, &str)> = changes
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| (c.key.as_str(), c.value.as_str()))
            .collect();
        for (value, (key, writer)) in &self.acknowledged {
            if !committed.contains(&(key.as_str(), value.as_str())) {
                return Err(violation(
                    NAME,
                    event,
                    format!("set {key}={value} was acknowledged to writer {writer} but is not in the committed history"),
                ));
            }
        }
        let by_revision: BTreeMap<i64, &CommittedChange> =
            changes.iter().map(|c| (c.revision, c)).collect();
        for (node, w) in &self.watchers {
            let delivered: Vec<&Delivered> = w
                .delivered
                .iter()
                .filter(|d| d.revision <= through)
                .collect();
            for d in &delivered {
                let matches = by_revision.get(&d.revision).is_some_and(|c| {
                    c.key == d.key && c.value == d.value && c.deleted == d.deleted
                });
                if !matches {
                    let actual = by_revision
                        .get(&d.revision)
                        .map_or("nothing".to_string(), |c| format!("{}={}", c.key, c.value));
                    return Err(violation(
                        NAME,
                        event,
                        format!(
                            "watcher {node} delivered {}={} at rev {}, but the committed change at that revision is {actual}",
                            d.key, d.value, d.revision
                        ),
                    ));
                }
            }
            let in_range: Vec<&CommittedChange> = changes
                .iter()
                .filter(|c| w.covers(&c.key) && c.revision > w.before_revision)
                .collect();
            let floor = in_range
                .iter()
                .map(|c| c.revision)
                .find(|r| *r > w.after_revision)
                .unwrap_or(i64::MAX);
            let start = delivered.first().map_or(floor, |d| d.revision.min(floor));
            let seen: BTreeSet<i64> = delivered.iter().map(|d| d.revision).collect();
            if let Some(missed) = in_range
                .iter()
                .find(|c| c.revision >= start && !seen.contains(&c.revision))
            {
                let acked = self
                    .acknowledged
                    .get(&missed.value)
                    .map(|(_, writer)| format!(", acknowledged to writer {writer}"))
                    .unwrap_or_default();
                let around = delivered
                    .iter()
                    .rev()
                    .find(|d| d.revision < missed.revision)
                    .map_or("nothing before it".to_string(), |d| {
                        format!("rev {} before it", d.revision)
                    });
                return Err(violation(
                    NAME,
                    event,
                    format!(
                        "watcher {node} of {:?} (opened between rev {} and {}) missed the committed change {}={} at rev {}{acked}; it delivered {} changes, {around}",
                        w.range,
                        w.before_revision,
                        w.after_revision,
                        missed.key,
                        missed.value,
                        missed.revision,
                        delivered.len()
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

    use crate::sim::checkers::testing::library_event as at;

    fn set(key: &str, value: &str) -> LibraryEvent {
        LibraryEvent::ConfigSet {
            key: key.into(),
            value: value.into(),
            outcome: "ok".into(),
        }
    }

    fn opened(range: &str, prefix: bool, before: i64, after: i64) -> LibraryEvent {
        LibraryEvent::ConfigWatchOpened {
            range: range.into(),
            prefix,
            before_revision: before,
            after_revision: after,
        }
    }

    fn delivered(key: &str, value: &str, revision: i64) -> LibraryEvent {
        LibraryEvent::ConfigDelivered {
            key: key.into(),
            value: value.into(),
            deleted: false,
            revision,
        }
    }

    fn history(changes: &[(i64, &str, &str)]) -> LibraryEvent {
        LibraryEvent::ConfigHistory {
            prefix: "cfg/".into(),
            through_revision: changes.last().map_or(0, |c| c.0),
            changes: changes
                .iter()
                .map(|&(revision, key, value)| CommittedChange {
                    revision,
                    key: key.into(),
                    value: value.into(),
                    deleted: false,
                })
                .collect(),
            error: None,
        }
    }

    fn run(events: Vec<TraceEvent>) -> Result<(), Violation> {
        let mut c = LibraryWatchDelivery::default();
        events.iter().try_for_each(|e| c.observe_read(e))
    }

    /// Committed: a=w1-1 @3, b=w2-1 @4, a=w1-2 @5, a=w2-2 @6.
    fn committed() -> LibraryEvent {
        history(&[
            (3, "cfg/a", "w1-1"),
            (4, "cfg/b", "w2-1"),
            (5, "cfg/a", "w1-2"),
            (6, "cfg/a", "w2-2"),
        ])
    }

    #[test]
    fn a_complete_delivery_passes() {
        run(vec![
            at(1, 781, opened("cfg/", true, 2, 3)),
            at(2, 782, opened("cfg/a", false, 4, 4)),
            at(3, 761, set("cfg/a", "w1-1")),
            at(4, 781, delivered("cfg/a", "w1-1", 3)),
            at(5, 781, delivered("cfg/b", "w2-1", 4)),
            at(6, 781, delivered("cfg/a", "w1-2", 5)),
            at(7, 782, delivered("cfg/a", "w1-2", 5)),
            at(8, 781, delivered("cfg/a", "w2-2", 6)),
            at(9, 782, delivered("cfg/a", "w2-2", 6)),
            at(10, 0, committed()),
        ])
        .unwrap();
    }

    #[test]
    fn fires_on_a_repeat_and_on_history_from_before_the_watch() {
        let v = run(vec![
            at(1, 781, opened("cfg/", true, 2, 3)),
            at(2, 781, delivered("cfg/a", "w1-1", 3)),
            at(3, 781, delivered("cfg/a", "w1-1", 3)),
        ])
        .unwrap_err();
        assert!(v.message.contains("out of order or repeated"), "{v}");
        let v = run(vec![
            at(1, 781, opened("cfg/", true, 4, 4)),
            at(2, 781, delivered("cfg/a", "w1-1", 3)),
        ])
        .unwrap_err();
        assert!(v.message.contains("before the watch was opened"), "{v}");
    }

    #[test]
    fn fires_on_a_gap_after_a_reconnect() {
        let v = run(vec![
            at(1, 781, opened("cfg/", true, 2, 2)),
            at(2, 781, delivered("cfg/a", "w1-1", 3)),
            at(3, 781, delivered("cfg/a", "w1-2", 5)),
            at(4, 781, delivered("cfg/a", "w2-2", 6)),
            at(5, 0, committed()),
        ])
        .unwrap_err();
        assert!(
            v.message
                .contains("missed the committed change cfg/b=w2-1 at rev 4"),
            "{v}"
        );
    }

    #[test]
    fn fires_on_a_silent_watcher_and_on_a_lost_acknowledged_set() {
        // Opened before rev 5 and 6 were written, delivered nothing.
        let v = run(vec![
            at(1, 782, opened("cfg/a", false, 4, 4)),
            at(2, 0, committed()),
        ])
        .unwrap_err();
        assert!(v.message.contains("at rev 5"), "{v}");
        let v = run(vec![
            at(1, 761, set("cfg/c", "w1-9")),
            at(2, 0, committed()),
        ])
        .unwrap_err();
        assert!(v.message.contains("not in the committed history"), "{v}");
    }

    #[test]
    fn fires_on_a_delivery_that_was_never_committed() {
        let v = run(vec![
            at(1, 781, opened("cfg/", true, 2, 3)),
            at(2, 781, delivered("cfg/a", "w1-1", 3)),
            at(3, 781, delivered("cfg/b", "w9-9", 4)),
            at(4, 0, committed()),
        ])
        .unwrap_err();
        assert!(
            v.message
                .contains("committed change at that revision is cfg/b=w2-1"),
            "{v}"
        );
    }
}
