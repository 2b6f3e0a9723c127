//! Each node's log as the checkers reconstruct it from the events: persisted entries
//! (a batch starting at index i replaces the suffix from i, Raft §5.3), compaction by
//! snapshots, and loss of the unsynced suffix on restart.

use std::collections::{BTreeMap, VecDeque};

use super::Reads;
use crate::sim::trace::{EntryMeta, EventKind, EventTag, TraceEvent};

/// One node's log above its snapshot. A deque indexed from `snapshot_index + 1`
/// rather than a map: four checkers keep a view each and update it on every
/// persisted batch, where a map's `split_off` allocated a new tree per batch.
#[derive(Debug, Default, Clone)]
pub struct NodeLog {
    /// (term, digest) of entries `snapshot_index + 1 ..`; `None` where no entry was
    /// persisted (a gap), never last.
    entries: VecDeque<Option<(u64, u64)>>,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
}

impl NodeLog {
    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    /// (term, digest) of the entry at `index`, if the log holds it.
    pub fn entry(&self, index: u64) -> Option<(u64, u64)> {
        let offset = index.checked_sub(self.snapshot_index + 1)?;
        self.entries.get(offset as usize).copied().flatten()
    }

    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|(t, _)| t)
    }

    /// Drops the entries from `index` on.
    fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.snapshot_index + 1);
        self.entries.truncate(keep as usize);
        while let Some(None) = self.entries.back() {
            self.entries.pop_back();
        }
    }

    /// Drops the entries up to `index` and makes it the snapshot.
    fn compact_through(&mut self, index: u64, term: u64) {
        let drop = (index + 1).saturating_sub(self.snapshot_index + 1) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    fn append(&mut self, entries: &[EntryMeta]) {
        if let Some(first) = entries.first() {
            self.truncate_from(first.index);
        }
        for e in entries {
            let Some(offset) = e.index.checked_sub(self.snapshot_index + 1) else {
                continue;
            };
            let offset = offset as usize;
            if offset < self.entries.len() {
                self.entries[offset] = Some((e.term, e.digest));
            } else {
                self.entries.resize(offset, None);
                self.entries.push_back(Some((e.term, e.digest)));
            }
        }
    }
}

/// A node no log event has named yet.
static EMPTY: NodeLog = NodeLog {
    entries: VecDeque::new(),
    snapshot_index: 0,
    snapshot_term: 0,
};

/// Logs of all nodes.
#[derive(Debug, Default, Clone)]
pub struct LogView {
    nodes: BTreeMap<u64, NodeLog>,
}

impl LogView {
    /// The kinds of event the view is built from; a checker keeping one reads them.
    pub const READS: Reads = Reads::only(&[
        EventTag::Persisted,
        EventTag::SnapshotPersisted,
        EventTag::Recovered,
    ]);

    /// `node`'s log (empty until an event about its log).
    pub fn node(&self, node: u64) -> &NodeLog {
        self.nodes.get(&node).unwrap_or(&EMPTY)
    }

    fn log_mut(&mut self, node: u64) -> &mut NodeLog {
        self.nodes.entry(node).or_default()
    }

    /// Updates the view with `event`; returns the entries it appended, if any.
    /// Most events are not about logs, and cost no lookup.
    pub fn observe<'e>(&mut self, event: &'e TraceEvent) -> &'e [EntryMeta] {
        match &event.kind {
            EventKind::Persisted { entries, .. } => {
                self.log_mut(event.node).append(entries);
                return entries;
            }
            EventKind::SnapshotPersisted { index, term } => {
                let log = self.log_mut(event.node);
                if log.term_at(*index) != Some(*term) {
                    log.entries.clear();
                }
                log.compact_through(*index, *term);
            }
            EventKind::Recovered {
                snapshot_index,
                snapshot_term,
                last_index,
                entries,
                ..
            } => {
                let log = self.log_mut(event.node);
                // A crash keeps a prefix: drop what was not durable.
                log.truncate_from(last_index + 1);
                if *snapshot_index > log.snapshot_index {
                    log.compact_through(*snapshot_index, *snapshot_term);
                }
                // What the disk holds is the log, including entries of a write
                // that failed after reaching the disk (the node stopped on the
                // error, so no `Persisted` named them).
                log.append(entries);
            }
            _ => {}
        }
        &[]
    }
}

#[cfg(test)]
mod tests {
    //! The deque-backed log against the map it replaced, as a model: random
    //! persisted batches (overwriting suffixes, with gaps), snapshots and restarts.
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Default)]
    struct MapLog {
        entries: BTreeMap<u64, (u64, u64)>,
        snapshot_index: u64,
        snapshot_term: u64,
    }

    impl MapLog {
        fn term_at(&self, index: u64) -> Option<u64> {
            if index == self.snapshot_index {
                return Some(self.snapshot_term);
            }
            self.entries.get(&index).map(|&(t, _)| t)
        }

        fn last_index(&self) -> u64 {
            self.entries
                .keys()
                .next_back()
                .copied()
                .unwrap_or(self.snapshot_index)
        }

        fn observe(&mut self, kind: &EventKind) {
            match kind {
                EventKind::Persisted { entries, .. } => {
                    if let Some(first) = entries.first() {
                        self.entries.split_off(&first.index);
                    }
                    for e in entries {
                        if e.index > self.snapshot_index {
                            self.entries.insert(e.index, (e.term, e.digest));
                        }
                    }
                }
                EventKind::SnapshotPersisted { index, term } => {
                    if self.term_at(*index) == Some(*term) {
                        self.entries = self.entries.split_off(&(index + 1));
                    } else {
                        self.entries.clear();
                    }
                    self.snapshot_index = *index;
                    self.snapshot_term = *term;
                }
                EventKind::Recovered {
                    snapshot_index,
                    snapshot_term,
                    last_index,
                    ..
                } => {
                    self.entries.split_off(&(last_index + 1));
                    if *snapshot_index > self.snapshot_index {
                        self.snapshot_term = *snapshot_term;
                        self.entries = self.entries.split_off(&(snapshot_index + 1));
                        self.snapshot_index = *snapshot_index;
                    }
                }
                _ => {}
            }
        }
    }

    fn event_kind() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            4 => (1u64..40, 0usize..6, 1u64..4, 0u64..3).prop_map(|(first, n, term, gap)| {
                let entries = (0..n as u64)
                    .map(|k| EntryMeta {
                        index: first + k + if k > 0 { gap } else { 0 },
                        term,
                        digest: first * 31 + k,
                    })
                    .collect();
                EventKind::Persisted { hard_state: None, entries, synced: true }
            }),
            1 => (0u64..40, 1u64..4).prop_map(|(index, term)| EventKind::SnapshotPersisted { index, term }),
            1 => (0u64..40, 1u64..4, 0u64..45).prop_map(|(snapshot_index, snapshot_term, last_index)| {
                EventKind::Recovered {
                    term: 0,
                    vote: 0,
                    commit: 0,
                    snapshot_index,
                    snapshot_term,
                    last_index,
                    applied: 0,
                    entries: Vec::new(),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn the_deque_log_matches_the_map_log(kinds in proptest::collection::vec(event_kind(), 1..60)) {
            let mut view = LogView::default();
            let mut model = MapLog::default();
            for (seq, kind) in kinds.into_iter().enumerate() {
                model.observe(&kind);
                view.observe(&TraceEvent { seq: seq as u64, time_ms: 0, node: 1, kind });
                let log = view.node(1);
                prop_assert_eq!(log.last_index(), model.last_index());
                prop_assert_eq!(log.snapshot_index, model.snapshot_index);
                for index in 0..50 {
                    prop_assert_eq!(log.term_at(index), model.term_at(index));
                    if index != model.snapshot_index {
                        prop_assert_eq!(log.entry(index), model.entries.get(&index).copied());
                    }
                }
            }
        }
    }
}
