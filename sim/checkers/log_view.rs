//! Each node's log as the checkers reconstruct it from the events: persisted entries
//! (a batch starting at index i replaces the suffix from i, Raft §5.3), compaction by
//! snapshots, and loss of the unsynced suffix on restart.

use std::collections::BTreeMap;

use crate::sim::trace::{EntryMeta, EventKind, TraceEvent};

#[derive(Debug, Default, Clone)]
pub struct NodeLog {
    /// index → (term, digest), above `snapshot_index`.
    pub entries: BTreeMap<u64, (u64, u64)>,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
}

impl NodeLog {
    pub fn last_index(&self) -> u64 {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.snapshot_index)
    }

    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entries.get(&index).map(|&(t, _)| t)
    }

    fn append(&mut self, entries: &[EntryMeta]) {
        if let Some(first) = entries.first() {
            self.entries.split_off(&first.index);
        }
        for e in entries {
            if e.index > self.snapshot_index {
                self.entries.insert(e.index, (e.term, e.digest));
            }
        }
    }
}

/// Logs of all nodes.
#[derive(Debug, Default, Clone)]
pub struct LogView {
    pub nodes: BTreeMap<u64, NodeLog>,
}

impl LogView {
    /// Updates the view with `event`; returns the entries it appended, if any.
    pub fn observe<'e>(&mut self, event: &'e TraceEvent) -> &'e [EntryMeta] {
        let log = self.nodes.entry(event.node).or_default();
        match &event.kind {
            EventKind::Persisted { entries, .. } => {
                log.append(entries);
                return entries;
            }
            EventKind::SnapshotPersisted { index, term } => {
                let keep = log.term_at(*index) == Some(*term);
                if keep {
                    log.entries = log.entries.split_off(&(index + 1));
                } else {
                    log.entries.clear();
                }
                log.snapshot_index = *index;
                log.snapshot_term = *term;
            }
            EventKind::Recovered {
                snapshot_index,
                snapshot_term,
                last_index,
                ..
            } => {
                // A crash keeps a prefix: drop what was not durable.
                log.entries.split_off(&(last_index + 1));
                if *snapshot_index > log.snapshot_index {
                    log.snapshot_term = *snapshot_term;
                    log.entries = log.entries.split_off(&(snapshot_index + 1));
                    log.snapshot_index = *snapshot_index;
                }
            }
            _ => {}
        }
        &[]
    }
}
