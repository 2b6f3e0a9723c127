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
    /// A torn final record: (segment name, offset where it starts).
    pub torn_tail: Option<(String, u64)>,
    /// Only zeros after the last record of the last segment: space reserved for
    /// appends, or a file extended whose data never reached the disk (segment
    /// name, offset where the zeros start).
    pub zero_tail: Option<(String, u64)>,
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
    let segments = list_segments(disk)?;
    let mut state = RecoveredState::default();
    for (i, &seq) in segments.iter().enumerate() {
        let name = wal::segment_name(seq);
        let data = disk.read(&name).map_err(StorageError::io(&name))?;
        let end = replay_segment(&mut state, &name, &data, 0, i + 1 == segments.len())?;
        state.last_segment_len = end;
    }
    state.segments = segments;
    load_snapshot_data(&mut state, disk)?;
    Ok(state)
}

/// WAL segment sequence numbers on `disk`, ascending.
fn list_segments(disk: &dyn ReadDisk) -> Result<Vec<u64>, StorageError> {
    let names = disk.list().map_err(StorageError::io("list"))?;
    let mut segments: Vec<u64> = names
        .iter()
        .filter_map(|n| wal::parse_segment_name(n))
        .collect();
    segments.sort_unstable();
    Ok(segments)
}

/// Applies the records of segment `name`, whose bytes from offset `start` on are
/// `data`, to `state`; returns the offset after the last whole record. Only the
/// last segment may end in a torn record (recorded in `torn_tail`).
fn replay_segment(
    state: &mut RecoveredState,
    name: &str,
    data: &[u8],
    start: u64,
    is_last: bool,
) -> Result<u64, StorageError> {
    let start = start as usize;
    let mut offset = 0;
    state.torn_tail = None;
    state.zero_tail = None;
    while offset < data.len() {
        let at = (start + offset) as u64;
        match record::decode_in_file(data, offset, start as u64) {
            Ok((payload, next)) => {
                let rec = wal::decode_record(payload)
                    .map_err(|reason| StorageError::corruption(name, at, reason))?;
                state
                    .apply_record(rec)
                    .map_err(|reason| StorageError::corruption(name, at, reason))?;
                offset = next;
            }
            Err(FrameError::Torn { offset: torn }) if is_last => {
                let tail = Some((name.to_string(), start as u64 + torn));
                if data[offset..].iter().all(|&b| b == 0) {
                    state.zero_tail = tail;
                } else {
                    state.torn_tail = tail;
                }
                break;
            }
            Err(FrameError::Torn { offset: torn }) => {
                return Err(StorageError::corruption(
                    name,
                    start as u64 + torn,
                    "incomplete record in a segment that is not the last",
                ));
            }
            Err(FrameError::Corrupt {
                offset: bad,
                reason,
            }) => {
                return Err(StorageError::corruption(name, start as u64 + bad, reason));
            }
        }
    }
    Ok((start + offset) as u64)
}

/// Reads the snapshot file the WAL names (when it names one).
fn load_snapshot_data(state: &mut RecoveredState, disk: &dyn ReadDisk) -> Result<(), StorageError> {
    state.snapshot_data.clear();
    if state.snapshot.index == 0 {
        return Ok(());
    }
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
    Ok(())
}

/// [`recover`] kept current while a disk's WAL only grows: each [`advance`]
/// decodes just the bytes appended to the last segment since the previous one,
/// with the same decoding, so its state always equals a full recovery's. The
/// caller vouches that nothing already read was rewritten — no truncation,
/// flipped bit, or removed or renamed file; after any of those it starts a new
/// one. A new segment or a new snapshot (rare: rotation, compaction) makes it
/// recover in full.
///
/// [`advance`]: IncrementalRecovery::advance
#[derive(Debug, Clone, Default)]
pub struct IncrementalRecovery {
    state: RecoveredState,
    /// False until the first advance, and after a failed one.
    valid: bool,
}

impl IncrementalRecovery {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state as of the last successful advance.
    pub fn state(&self) -> &RecoveredState {
        &self.state
    }

    /// Brings the state up to `disk`'s content and returns it.
    pub fn advance(&mut self, disk: &dyn ReadDisk) -> Result<&RecoveredState, StorageError> {
        let result = self.try_advance(disk);
        self.valid = result.is_ok();
        result.map(|()| &self.state)
    }

    fn try_advance(&mut self, disk: &dyn ReadDisk) -> Result<(), StorageError> {
        let segments = list_segments(disk)?;
        let Some(&last) = self.state.segments.last() else {
            self.state = recover(disk)?;
            return Ok(());
        };
        if !self.valid || segments != self.state.segments {
            self.state = recover(disk)?;
            return Ok(());
        }
        let snapshot = (self.state.snapshot.index, self.state.snapshot.term);
        let name = wal::segment_name(last);
        let start = self.state.last_segment_len;
        let data = disk
            .read_from(&name, start)
            .map_err(StorageError::io(&name))?;
        self.state.last_segment_len = replay_segment(&mut self.state, &name, &data, start, true)?;
        if (self.state.snapshot.index, self.state.snapshot.term) != snapshot {
            self.state = recover(disk)?;
        }
        Ok(())
    }
}
