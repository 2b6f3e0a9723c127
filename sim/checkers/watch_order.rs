//! Watch order: every watcher receives its prefix's changes in revision order,
//! without duplicates, without gaps, and only changes that were committed (etcd v3
//! API, "Watch": events are ordered by revision, never duplicated, and a watch
//! from a past revision replays the history since then; a compacted start revision
//! cancels the watch with the compact revision).
//!
//! Judged once the run is over. The committed history of the watched prefixes is
//! rebuilt from what the writers were told, not from the service's own watch: an
//! acknowledged put or swapped compare-and-set names its revision; a lease removal
//! (`LeaseRemoved`) deletes, at its revision, the keys put with that lease before it.
//! A write whose outcome is unknown may appear or not. Several events may share a
//! revision (a lease's keys go in one), so "in order" means revisions never go back
//! and no (revision, key) comes twice.
//!
//! A watcher resumes each broken stream from its last revision + 1, so each session
//! must deliver every known change from its start revision up to the last revision
//! it delivered; a session cancelled as compacted must name a compaction a client
//! asked for, above the session's start.

use std::collections::{BTreeMap, BTreeSet};

use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent, WatchedEvent};

pub const NAME: &str = "watch_order";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Put(String),
    Delete,
}

/// The committed changes of the watched keys, as the writers' answers imply them.
#[derive(Default)]
struct History {
    /// (revision, key) → change, for acknowledged writes and removals of their leases.
    known: BTreeMap<(i64, String), Change>,
    /// Puts whose outcome is unknown: (key, value).
    maybe_puts: BTreeSet<(String, String)>,
    /// Deletions of keys whose put is unknown: (revision, key).
    maybe_deletes: BTreeSet<(i64, String)>,
    /// Revisions compacted at: asked for by clients, or committed by the members'
    /// own auto-compaction (an applied `Compaction`).
    compactions: BTreeSet<i64>,
}

fn fail(seq: u64, message: String) -> Violation {
    Violation {
        invariant: NAME,
        event_seq: seq,
        message,
        related: Vec::new(),
    }
}

impl History {
    fn learn(
        &mut self,
        revision: i64,
        key: &str,
        change: Change,
        seq: u64,
    ) -> Result<(), Violation> {
        if let Some(before) = self.known.get(&(revision, key.to_string())) {
            if *before != change {
                return Err(fail(
                    seq,
                    format!(
                        "key {key} changed twice at revision {revision}: {before:?} and {change:?}"
                    ),
                ));
            }
        }
        self.known.insert((revision, key.to_string()), change);
        Ok(())
    }

    fn from_trace(events: &[TraceEvent]) -> Result<History, Violation> {
        let mut h = History::default();
        let mut invoked: BTreeMap<(u64, u64), (&str, Option<i64>)> = BTreeMap::new();
        // lease → (key, revision of its acknowledged put, or None: unknown)
        let mut lease_keys: BTreeMap<i64, Vec<(&str, Option<i64>)>> = BTreeMap::new();
        let mut removed: BTreeSet<i64> = BTreeSet::new();
        // (lease, revision, event) of each lease's first removal.
        let mut removals: Vec<(i64, i64, u64)> = Vec::new();
        for e in events {
            match &e.kind {
                EventKind::RegisterInvoke {
                    client,
                    op,
                    key,
                    kind,
                    value,
                    ..
                } if kind != "read" => {
                    invoked.insert((*client, *op), (key, *value));
                }
                EventKind::RegisterComplete {
                    client,
                    op,
                    outcome,
                    swapped,
                    revision,
                    ..
                } => {
                    let Some((key, Some(value))) = invoked.remove(&(*client, *op)) else {
                        continue;
                    };
                    match (outcome.as_str(), swapped, revision) {
                        ("ok", Some(false), _) | ("fail", _, _) => {}
                        ("ok", _, Some(rev)) => {
                            h.learn(*rev, key, Change::Put(value.to_string()), e.seq)?
                        }
                        _ => {
                            h.maybe_puts.insert((key.to_string(), value.to_string()));
                        }
                    }
                }
                EventKind::LeaseKeyPut {
                    lease,
                    key,
                    value,
                    outcome,
                    revision,
                    ..
                } => match (outcome.as_str(), revision) {
                    ("ok", Some(rev)) => {
                        h.learn(*rev, key, Change::Put(value.clone()), e.seq)?;
                        lease_keys
                            .entry(*lease)
                            .or_default()
                            .push((key, Some(*rev)));
                    }
                    ("fail", _) => {}
                    _ => {
                        h.maybe_puts.insert((key.clone(), value.clone()));
                        lease_keys.entry(*lease).or_default().push((key, None));
                    }
                },
                EventKind::LeaseRemoved {
                    lease, revision, ..
                } if removed.insert(*lease) => removals.push((*lease, *revision, e.seq)),
                EventKind::Compacted {
                    revision, outcome, ..
                } if outcome != "fail" => {
                    h.compactions.insert(*revision);
                }
                EventKind::Applied { .. } => {
                    h.compactions
                        .extend(super::auto_compaction_live::compaction_revision(&e.kind));
                }
                _ => {}
            }
        }
        // A write still unanswered when the run ended may have been applied (a
        // watcher can see it before its writer hears back).
        for (key, value) in invoked.into_values() {
            if let Some(value) = value {
                h.maybe_puts.insert((key.to_string(), value.to_string()));
            }
        }
        // After the whole trace: a put's answer may come after its lease's removal
        // (a late or timed-out reply), and the removal still deleted its key.
        for (lease, revision, seq) in removals {
            for &(key, put_at) in lease_keys.get(&lease).into_iter().flatten() {
                match put_at {
                    Some(put_at) if put_at < revision => {
                        h.learn(revision, key, Change::Delete, seq)?
                    }
                    Some(_) => {}
                    None => {
                        h.maybe_deletes.insert((revision, key.to_string()));
                    }
                }
            }
        }
        Ok(h)
    }
}

/// One stream of a watcher, from its start revision.
struct Session<'a> {
    prefix: &'a str,
    start: i64,
    opened_seq: u64,
    events: Vec<(&'a WatchedEvent, u64)>,
    compact_revision: i64,
    closed_seq: u64,
}

fn sessions(events: &[TraceEvent]) -> BTreeMap<u64, Vec<Session<'_>>> {
    let mut by_watcher: BTreeMap<u64, Vec<Session>> = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::WatchOpened {
                watcher,
                prefix,
                start_revision,
            } => by_watcher.entry(*watcher).or_default().push(Session {
                prefix,
                start: *start_revision,
                opened_seq: e.seq,
                events: Vec::new(),
                compact_revision: 0,
                closed_seq: e.seq,
            }),
            EventKind::WatchEvents { watcher, events } => {
                if let Some(s) = by_watcher.get_mut(watcher).and_then(|s| s.last_mut()) {
                    s.events.extend(events.iter().map(|w| (w, e.seq)));
                }
            }
            EventKind::WatchClosed {
                watcher,
                compact_revision,
                ..
            } => {
                if let Some(s) = by_watcher.get_mut(watcher).and_then(|s| s.last_mut()) {
                    s.compact_revision = *compact_revision;
                    s.closed_seq = e.seq;
                }
            }
            _ => {}
        }
    }
    by_watcher
}

/// Checks a finished run's watchers.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    let history = History::from_trace(events)?;
    // (key, value) of an unknown put → the revision a watcher saw it at.
    let mut resolved: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (watcher, sessions) in sessions(events) {
        let mut last: Option<(i64, BTreeSet<&str>)> = None;
        for session in &sessions {
            for &(event, seq) in &session.events {
                check_in_order(watcher, event, seq, &mut last)?;
                check_committed(watcher, event, seq, &history, &mut resolved)?;
            }
            check_complete(watcher, session, &history)?;
            check_compaction(watcher, session, &history)?;
        }
    }
    Ok(())
}

fn check_in_order<'a>(
    watcher: u64,
    event: &'a WatchedEvent,
    seq: u64,
    last: &mut Option<(i64, BTreeSet<&'a str>)>,
) -> Result<(), Violation> {
    let (rev, key) = (event.revision, event.key.as_str());
    match last {
        Some((last_rev, _)) if rev < *last_rev => Err(fail(
            seq,
            format!(
                "watcher {watcher} received {} {key} at revision {rev} after revision {last_rev}",
                event.kind
            ),
        )),
        Some((last_rev, keys)) if rev == *last_rev => {
            if !keys.insert(key) {
                return Err(fail(
                    seq,
                    format!(
                        "watcher {watcher} received {} {key} at revision {rev} twice",
                        event.kind
                    ),
                ));
            }
            Ok(())
        }
        _ => {
            *last = Some((rev, BTreeSet::from([key])));
            Ok(())
        }
    }
}

fn check_committed(
    watcher: u64,
    event: &WatchedEvent,
    seq: u64,
    history: &History,
    resolved: &mut BTreeMap<(String, String), i64>,
) -> Result<(), Violation> {
    let (rev, key) = (event.revision, &event.key);
    let known = history.known.get(&(rev, key.clone()));
    let committed = match (event.kind.as_str(), known) {
        ("put", Some(Change::Put(v))) => *v == event.value,
        ("delete", Some(Change::Delete)) => true,
        ("put", None) => {
            let id = (key.clone(), event.value.clone());
            if !history.maybe_puts.contains(&id) {
                false
            } else {
                let at = *resolved.entry(id).or_insert(rev);
                if at != rev {
                    return Err(fail(
                        seq,
                        format!("watcher {watcher} received put {key}={} at revision {rev}, another watcher at revision {at}", event.value),
                    ));
                }
                true
            }
        }
        ("delete", None) => history.maybe_deletes.contains(&(rev, key.clone())),
        _ => false,
    };
    if committed {
        return Ok(());
    }
    let expected = known.map_or("nothing".to_string(), |c| format!("{c:?}"));
    Err(fail(
        seq,
        format!(
            "watcher {watcher} received {} {key}={:?} at revision {rev}, but the writers' answers imply {expected} there",
            event.kind, event.value
        ),
    ))
}

fn check_complete(watcher: u64, session: &Session, history: &History) -> Result<(), Violation> {
    let Some(delivered_to) = session.events.iter().map(|(e, _)| e.revision).max() else {
        return Ok(());
    };
    let got: BTreeSet<(i64, &str)> = session
        .events
        .iter()
        .map(|(e, _)| (e.revision, e.key.as_str()))
        .collect();
    let from = (session.start, String::new());
    let to = (delivered_to, String::new());
    for ((rev, key), change) in history.known.range(from..to) {
        if key.starts_with(session.prefix) && !got.contains(&(*rev, key.as_str())) {
            return Err(fail(
                session.closed_seq,
                format!(
                    "watcher {watcher}'s watch of {:?} from revision {} (event #{}) delivered up to revision {delivered_to} but missed {change:?} of {key} at revision {rev}",
                    session.prefix, session.start, session.opened_seq
                ),
            ));
        }
    }
    Ok(())
}

fn check_compaction(watcher: u64, session: &Session, history: &History) -> Result<(), Violation> {
    let c = session.compact_revision;
    if c == 0 {
        return Ok(());
    }
    if !history.compactions.contains(&c) || c <= session.start {
        return Err(fail(
            session.closed_seq,
            format!(
                "watcher {watcher}'s watch from revision {} was cancelled as compacted at revision {c}, but only compactions at {:?} were asked for or committed",
                session.start, history.compactions
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History as Builder;

    fn put(h: &mut Builder, op: u64, key: &str, value: i64, revision: i64) -> Vec<TraceEvent> {
        vec![
            h.push(
                201,
                EventKind::RegisterInvoke {
                    client: 201,
                    op,
                    key: key.into(),
                    kind: "write".into(),
                    value: Some(value),
                    expect: None,
                },
            ),
            h.push(
                201,
                EventKind::RegisterComplete {
                    client: 201,
                    op,
                    outcome: "ok".into(),
                    value: None,
                    swapped: None,
                    revision: Some(revision),
                    error: None,
                },
            ),
        ]
    }

    fn opened(h: &mut Builder, start_revision: i64) -> TraceEvent {
        h.push(
            501,
            EventKind::WatchOpened {
                watcher: 501,
                prefix: "reg/".into(),
                start_revision,
            },
        )
    }

    fn seen(h: &mut Builder, events: &[(&str, i64, i64)]) -> TraceEvent {
        h.push(
            501,
            EventKind::WatchEvents {
                watcher: 501,
                events: events
                    .iter()
                    .map(|&(key, value, revision)| WatchedEvent {
                        revision,
                        key: key.into(),
                        kind: "put".into(),
                        value: value.to_string(),
                    })
                    .collect(),
            },
        )
    }

    fn writes(h: &mut Builder) -> Vec<TraceEvent> {
        let mut w = put(h, 1, "reg/0", 10, 2);
        w.extend(put(h, 2, "reg/1", 11, 3));
        w.extend(put(h, 3, "reg/0", 12, 4));
        w
    }

    #[test]
    fn a_complete_ordered_watch_passes() {
        let mut h = Builder::default();
        let mut events = writes(&mut h);
        events.push(opened(&mut h, 1));
        events.push(seen(&mut h, &[("reg/0", 10, 2), ("reg/1", 11, 3)]));
        events.push(opened(&mut h, 4));
        events.push(seen(&mut h, &[("reg/0", 12, 4)]));
        check(&events).unwrap();
    }

    #[test]
    fn passes_a_put_whose_writer_had_no_answer_when_the_run_ended() {
        let mut h = Builder::default();
        let mut events = writes(&mut h);
        let mut late = put(&mut h, 4, "reg/1", 13, 5);
        late.pop(); // the answer never came
        events.extend(late);
        events.push(opened(&mut h, 1));
        let all = [
            ("reg/0", 10, 2),
            ("reg/1", 11, 3),
            ("reg/0", 12, 4),
            ("reg/1", 13, 5),
        ];
        events.push(seen(&mut h, &all));
        check(&events).unwrap();
        // Nobody wrote 14: still an invention.
        events.push(seen(&mut h, &[("reg/1", 14, 6)]));
        assert!(check(&events).is_err());
    }

    #[test]
    fn fires_on_a_gap() {
        let mut h = Builder::default();
        let mut events = writes(&mut h);
        events.push(opened(&mut h, 1));
        events.push(seen(&mut h, &[("reg/0", 10, 2), ("reg/0", 12, 4)]));
        let v = check(&events).unwrap_err();
        assert!(
            v.message
                .contains("missed Put(\"11\") of reg/1 at revision 3"),
            "{v}"
        );
    }

    #[test]
    fn fires_when_history_is_skipped_on_resume() {
        let mut h = Builder::default();
        let mut events = writes(&mut h);
        events.push(opened(&mut h, 1));
        events.push(seen(&mut h, &[("reg/0", 10, 2)]));
        events.push(opened(&mut h, 3));
        events.push(seen(&mut h, &[("reg/0", 12, 4)]));
        let v = check(&events).unwrap_err();
        assert!(v.message.contains("from revision 3"), "{v}");
    }

    #[test]
    fn fires_on_disorder_duplicates_and_inventions() {
        let mut h = Builder::default();
        let base = writes(&mut h);
        let mut back = base.clone();
        back.push(opened(&mut h, 1));
        back.push(seen(&mut h, &[("reg/1", 11, 3), ("reg/0", 10, 2)]));
        assert!(check(&back)
            .unwrap_err()
            .message
            .contains("after revision 3"));
        let mut twice = base.clone();
        twice.push(opened(&mut h, 3));
        twice.push(seen(&mut h, &[("reg/1", 11, 3), ("reg/1", 11, 3)]));
        assert!(check(&twice).unwrap_err().message.contains("twice"));
        let mut invented = base;
        invented.push(opened(&mut h, 3));
        invented.push(seen(&mut h, &[("reg/1", 99, 3)]));
        assert!(check(&invented).unwrap_err().message.contains("imply"));
    }

    fn lease_put(h: &mut Builder, key: &str, outcome: &str, revision: Option<i64>) -> TraceEvent {
        h.push(
            402,
            EventKind::LeaseKeyPut {
                client: 402,
                lease: 7,
                key: key.into(),
                value: "v".into(),
                outcome: outcome.into(),
                revision,
            },
        )
    }

    fn lease_watch(h: &mut Builder, events: &[(&str, &str, i64)]) -> TraceEvent {
        h.push(
            502,
            EventKind::WatchEvents {
                watcher: 502,
                events: events
                    .iter()
                    .map(|&(kind, key, revision)| WatchedEvent {
                        revision,
                        key: key.into(),
                        kind: kind.into(),
                        value: if kind == "put" {
                            "v".into()
                        } else {
                            String::new()
                        },
                    })
                    .collect(),
            },
        )
    }

    /// coord_clocks_disks::seed_2000000125: a lease's second put timed out
    /// ("unknown") after the lease had expired; the expiry deleted both keys.
    #[test]
    fn a_put_answered_after_its_lease_was_removed_is_deleted_by_the_removal() {
        let mut h = Builder::default();
        // A watch opens, lease/a is put, the lease is removed at revision 9, and
        // lease/b's put (applied at 5) is answered `late` only then.
        let until_late_answer = |h: &mut Builder, late: &str| {
            vec![
                h.push(
                    502,
                    EventKind::WatchOpened {
                        watcher: 502,
                        prefix: "lease/".into(),
                        start_revision: 1,
                    },
                ),
                lease_put(h, "lease/a", "ok", Some(4)),
                h.push(
                    3,
                    EventKind::LeaseRemoved {
                        lease: 7,
                        expired: true,
                        revision: 9,
                    },
                ),
                lease_put(h, "lease/b", late, Some(5)),
            ]
        };
        for late in ["unknown", "ok"] {
            let mut events = until_late_answer(&mut h, late);
            events.push(lease_watch(
                &mut h,
                &[
                    ("put", "lease/a", 4),
                    ("put", "lease/b", 5),
                    ("delete", "lease/a", 9),
                    ("delete", "lease/b", 9),
                ],
            ));
            check(&events).unwrap_or_else(|v| panic!("late {late}: {v}"));
        }
        // A known late put's deletion is required: a watch that skips it fails.
        let mut events = until_late_answer(&mut h, "ok");
        events.push(lease_put(&mut h, "lease/c", "ok", Some(10)));
        events.push(lease_watch(
            &mut h,
            &[
                ("put", "lease/a", 4),
                ("put", "lease/b", 5),
                ("delete", "lease/a", 9),
                ("put", "lease/c", 10),
            ],
        ));
        let v = check(&events).unwrap_err();
        assert!(
            v.message.contains("missed Delete of lease/b at revision 9"),
            "{v}"
        );
    }

    /// Watcher 501's watch, cancelled as compacted at `revision`.
    fn cancelled_as_compacted_at(h: &mut Builder, revision: i64) -> TraceEvent {
        h.push(
            501,
            EventKind::WatchClosed {
                watcher: 501,
                reason: "compacted".into(),
                compact_revision: revision,
            },
        )
    }

    #[test]
    fn fires_on_a_compaction_nobody_asked_for() {
        let mut h = Builder::default();
        let mut events = writes(&mut h);
        events.push(opened(&mut h, 1));
        events.push(cancelled_as_compacted_at(&mut h, 3));
        assert!(check(&events).unwrap_err().message.contains("compacted"));
        // A member's own compaction at another revision is no excuse.
        events.push(h.applied_command(1, 40, "etcd compact 2"));
        assert!(check(&events).unwrap_err().message.contains("compacted"));
        events.push(h.push(
            202,
            EventKind::Compacted {
                client: 202,
                revision: 3,
                outcome: "ok".into(),
            },
        ));
        check(&events).unwrap();
    }

    #[test]
    fn passes_a_compaction_the_members_committed_themselves() {
        let mut h = Builder::default();
        let mut events = writes(&mut h);
        events.push(opened(&mut h, 1));
        events.push(h.applied_command(2, 40, "etcd compact 3"));
        events.push(cancelled_as_compacted_at(&mut h, 3));
        check(&events).unwrap();
    }
}
