//! Rebuilding a node's Raft state from its files, without changing them.
//!
//! The same function serves start-up (followed by [`super::engine`]'s repair of a
//! torn tail) and the simulation's persist-before-send checker, which runs it over a
//! simulated disk's *durable* image to learn what a crash right now would recover.

use raft::eraftpb::{Entry, HardState, SnapshotMetadata};

use super::record::{self, FrameError};
use super::wal::{self, WalRecord};
use super::StorageError;
use crate::seams::disk::ReadDisk;

/// Everything recovered from disk.
#[derive(Debug, Clone, Default)]
pub struct RecoveredState {
    pub hard_state: HardState,
    /// Metadata of the latest durable snapshot (index 0: none, or bootstrap only).
    pub snapshot: SnapshotMetadata,
    /// The snapshot's state bytes (empty when index is 0).
    pub snapshot_data: Vec<u8>,
    /// Log entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// Applied index last recorded.
    pub applied: u64,
    /// WAL segment sequence numbers, ascending.
    pub segments: Vec<u64>,
    /// A torn final record: (segment name, offset where it starts, bytes after it).
    pub torn_tail: Option<(String, u64)>,
    /// Length of the last segment up to its last good record.
    pub last_segment_len: u64,
}

impl RecoveredState {
    /// Index of the last entry (or of the snapshot when the log is empty).
    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    /// Term of the entry at `index`, if known (the snapshot's own index included).
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        let first = self.snapshot.index + 1;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize).map(|e| e.term)
    }

    /// True when the disk held no WAL at all (a brand-new node).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Applies one WAL record to the state (replay and the live write path alike).
    pub fn apply_record(&mut self, rec: WalRecord) -> Result<(), String> {
        match rec {
            WalRecord::Entries(entries) => self.replay_entries(entries),
            WalRecord::HardState(hs) => {
                self.hard_state = hs;
                Ok(())
            }
            WalRecord::Snapshot(meta) => {
                let index = meta.index;
                if index < self.snapshot.index {
                    return Err(format!(
                        "snapshot {index} is older than snapshot {}",
                        self.snapshot.index
                    ));
                }
                if index >= self.last_index() || self.term_of(index) != Some(meta.term) {
                    self.entries.clear();
                } else {
                    let keep_from = (index - self.snapshot.index) as usize;
                    self.entries.drain(..keep_from);
                }
                // A snapshot only ever covers committed entries: its index is a
                // commit index even if no HardState record said so before a crash.
                self.hard_state.commit = self.hard_state.commit.max(meta.index);
                self.snapshot = meta;
                Ok(())
            }
            WalRecord::Applied(index) => {
                self.applied = index;
                Ok(())
            }
        }
    }

    fn replay_entries(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(format!(
                    "entries not contiguous: {} then {}",
                    pair[0].index, pair[1].index
                ));
            }
        }
        let first_index = first.index;
        if first_index > self.last_index() + 1 {
            return Err(format!(
                "gap in the log: entry {first_index} after last index {}",
                self.last_index()
            ));
        }
        // Entries at or below the snapshot are already covered by it.
        let skip = (self.snapshot.index + 1).saturating_sub(first_index) as usize;
        let entries = entries.into_iter().skip(skip);
        let base = self.snapshot.index + 1;
        let mut entries = entries.peekable();
        if let Some(e) = entries.peek() {
            self.entries.truncate((e.index - base) as usize);
        }
        self.entries.extend(entries);
        Ok(())
    }
}

/// Reads all segments and the snapshot they name. A torn final record of the last
/// segment is reported in `torn_tail`, not treated as an error; every other damage
/// is [`StorageError::Corruption`] naming the file and offset.
pub fn recover(disk: &dyn ReadDisk) -> Result<RecoveredState, StorageError> {
    let names = disk.list().map_err(StorageError::io("list"))?;
    let mut segments: Vec<u64> = names
        .iter()
        .filter_map(|n| wal::parse_segment_name(n))
        .collect();
    segments.sort_unstable();
    let mut state = RecoveredState {
        segments: segments.clone(),
        ..Default::default()
    };
    for (i, &seq) in segments.iter().enumerate() {
        let name = wal::segment_name(seq);
        let is_last = i + 1 == segments.len();
        let data = disk.read(&name).map_err(StorageError::io(&name))?;
        let mut offset = 0;
        while offset < data.len() {
            match record::decode_at(&data, offset) {
                Ok((payload, next)) => {
                    let rec = wal::decode_record(payload)
                        .map_err(|reason| StorageError::corruption(&name, offset as u64, reason))?;
                    state
                        .apply_record(rec)
                        .map_err(|reason| StorageError::corruption(&name, offset as u64, reason))?;
                    offset = next;
                }
                Err(FrameError::Torn { offset: at }) if is_last => {
                    state.torn_tail = Some((name.clone(), at));
                    break;
                }
                Err(FrameError::Torn { offset: at }) => {
                    return Err(StorageError::corruption(
                        &name,
                        at,
                        "incomplete record in a segment that is not the last",
                    ));
                }
                Err(FrameError::Corrupt { offset: at, reason }) => {
                    return Err(StorageError::corruption(&name, at, reason));
                }
            }
        }
        if is_last {
            state.last_segment_len = offset as u64;
        }
    }
    if state.snapshot.index > 0 {
        let name = wal::snapshot_name(state.snapshot.index, state.snapshot.term);
        let bytes = disk.read(&name).map_err(|e| {
            StorageError::corruption(
                &name,
                0,
                format!("snapshot named by the WAL is unreadable: {e}"),
            )
        })?;
        let (meta, data) = wal::decode_snapshot_file(&bytes)
            .map_err(|reason| StorageError::corruption(&name, 0, reason))?;
        if meta.index != state.snapshot.index || meta.term != state.snapshot.term {
            return Err(StorageError::corruption(
                &name,
                0,
                "snapshot metadata does not match its name",
            ));
        }
        state.snapshot_data = data;
    }
    Ok(state)
}
