//! The write path of coordlab's storage engine: WAL appends, snapshots, compaction.
//!
//! Durability rules this file keeps:
//! - a batch of entries and HardState is one append (one frame each, in one write)
//!   followed by one `sync` when the caller asks for durability;
//! - a snapshot file is written to a temporary name, synced, renamed and the
//!   directory synced *before* the WAL record naming it is appended; a snapshot the
//!   node takes itself is written off the Raft loop ([`SnapshotFileWrite`]) and
//!   recorded when done, and until then no cleanup touches its file;
//! - after a snapshot the engine starts a new segment holding a full checkpoint and
//!   only deletes older segments and snapshot files once that checkpoint and the
//!   directory are durable, so a crash at any point recovers a complete state;
//! - the segment being written has space reserved after its data (zeros), so most
//!   syncs commit no new file length; restart and rotation cut the zeros off, so
//!   only the last segment ever ends in them.

use std::sync::Arc;

use raft::eraftpb::{Entry, HardState, Snapshot, SnapshotMetadata};

use super::recovery::{self, RecoveredState};
use super::wal::{self, WalRecord};
use super::StorageError;
use crate::seams::disk::Disk;
use crate::seams::mutants;

/// Start a fresh segment once the current one passes this size.
const SEGMENT_ROTATE_BYTES: u64 = 64 << 20;

/// Space reserved ahead of the current segment's data ([`Disk::reserve`]), so the
/// syncs of most appends do not also commit a new file length. Small enough that
/// recovery reads few zeros, large enough that extending it is rare.
const RESERVE_AHEAD_BYTES: u64 = 4 << 20;

/// How the engine keeps snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Snapshot files kept on disk, the newest first (at least 1: the one the WAL
    /// names). Older ones are for operators (backups, forensics); recovery reads
    /// only the newest.
    pub retention: usize,
    /// Write snapshot files LZ4-compressed (files of either kind are read).
    pub compress: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            retention: 1,
            compress: false,
        }
    }
}

/// The storage engine: the recovered state kept in memory, plus the files behind it.
pub struct StorageEngine {
    disk: Arc<dyn Disk>,
    snapshots: SnapshotOptions,
    state: RecoveredState,
    segment_seq: u64,
    /// `wal::segment_name(segment_seq)`, kept rather than formatted per write.
    segment: String,
    segment_len: u64,
    /// Bytes encoded but not yet appended (reused buffer: no allocation per batch).
    buf: Vec<u8>,
    /// The snapshot file being written off the Raft loop, if any: cleanup spares it.
    writing: Option<String>,
    /// The length the current segment is reserved to; 0 when it is not. A segment
    /// is reserved only once it holds a record, so an empty-looking segment never
    /// exists where the first write of a new node should be.
    reserved_to: u64,
    /// False once the disk said it does not reserve space.
    disk_reserves: bool,
}

/// A snapshot file to write durably away from the Raft loop: the file only, under
/// its final name. The WAL record naming it is written by
/// [`StorageEngine::finish_snapshot_write`] on the loop once this is done; until
/// then recovery ignores the file.
pub struct SnapshotFileWrite {
    disk: Arc<dyn Disk>,
    meta: SnapshotMetadata,
    compress: bool,
}

impl SnapshotFileWrite {
    /// Writes the file (temporary name, sync, rename, directory sync). Blocks on
    /// fsync: run it with [`spawn_disk_job`](crate::seams::disk::spawn_disk_job).
    pub fn run(&self, data: &[u8]) -> Result<(), StorageError> {
        write_snapshot_file(self.disk.as_ref(), &self.meta, data, self.compress)
    }

    /// The extra time this write took on a slow (simulated) device.
    pub fn take_stall(&self) -> std::time::Duration {
        self.disk.take_stall()
    }

    pub fn meta(&self) -> &SnapshotMetadata {
        &self.meta
    }
}

/// Writes a snapshot file durably under its final name (temporary name, sync,
/// rename, directory sync).
fn write_snapshot_file(
    disk: &dyn Disk,
    meta: &SnapshotMetadata,
    data: &[u8],
    compress: bool,
) -> Result<(), StorageError> {
    let name = wal::snapshot_name(meta.index, meta.term);
    let tmp = format!("{name}.tmp");
    let bytes = wal::encode_snapshot_file(meta, data, compress);
    disk.write(&tmp, &bytes).map_err(StorageError::io(&tmp))?;
    disk.sync(&tmp).map_err(StorageError::io(&tmp))?;
    disk.rename(&tmp, &name).map_err(StorageError::io(&name))?;
    disk.sync_dir().map_err(StorageError::io("sync_dir"))
}

impl StorageEngine {
    /// Opens the engine with default snapshot options.
    pub fn open(disk: Arc<dyn Disk>) -> Result<Self, StorageError> {
        Self::open_with(disk, SnapshotOptions::default())
    }

    /// Opens the engine: recovers, and repairs a torn tail by truncating it.
    pub fn open_with(
        disk: Arc<dyn Disk>,
        snapshots: SnapshotOptions,
    ) -> Result<Self, StorageError> {
        let mut state = recovery::recover(disk.as_ref())?;
        if mutants::active("lose_commit_on_restart") {
            state.hard_state.commit = 0;
        }
        if let Some((name, offset)) = &state.torn_tail {
            tracing::warn!(file = %name, offset, "truncating torn WAL tail");
        } else if let Some((name, offset)) = &state.zero_tail {
            tracing::debug!(file = %name, offset, "cutting reserved zeros off the WAL");
        }
        if let Some((name, offset)) = state.torn_tail.as_ref().or(state.zero_tail.as_ref()) {
            disk.truncate(name, *offset)
                .map_err(StorageError::io(name))?;
            disk.sync(name).map_err(StorageError::io(name))?;
        }
        let segment_seq = state.segments.last().copied().unwrap_or(0);
        let segment_len = state.last_segment_len;
        Ok(StorageEngine {
            disk,
            snapshots: SnapshotOptions {
                retention: snapshots.retention.max(1),
                ..snapshots
            },
            state,
            segment_seq,
            segment: wal::segment_name(segment_seq),
            segment_len,
            buf: Vec::new(),
            writing: None,
            reserved_to: 0,
            disk_reserves: true,
        })
    }

    /// The state as recovered and updated since.
    pub fn state(&self) -> &RecoveredState {
        &self.state
    }

    /// True when nothing was ever persisted (a brand-new node).
    pub fn is_new(&self) -> bool {
        self.state.segments.is_empty()
    }

    /// Persists a brand-new node's initial state: for a founder, a snapshot holding
    /// the initial configuration and state; for a joiner, an empty one (index 0).
    ///
    /// The WAL segment, whose existence makes the node "not new", is written last,
    /// in one synced append, so a crash during bootstrap leaves a node that simply
    /// bootstraps again.
    pub fn bootstrap(
        &mut self,
        snapshot: &Snapshot,
        hard_state: &HardState,
    ) -> Result<(), StorageError> {
        debug_assert!(self.is_new(), "bootstrap of a node with state");
        let meta = snapshot.get_metadata().clone();
        if meta.index > 0 {
            self.write_snapshot_file(&meta, &snapshot.data)?;
        }
        self.state.segments.push(self.segment_seq);
        let records = [
            WalRecord::Snapshot(meta.clone()),
            WalRecord::HardState(hard_state.clone()),
        ];
        self.write_records(&records, true)?;
        self.disk.sync_dir().map_err(StorageError::io("sync_dir"))?;
        for rec in records {
            self.apply_to_memory(rec)?;
        }
        self.state.snapshot_data = snapshot.data.to_vec();
        self.state.applied = meta.index;
        Ok(())
    }

    /// Writes a snapshot file now, on the caller's task.
    fn write_snapshot_file(
        &self,
        meta: &SnapshotMetadata,
        data: &[u8],
    ) -> Result<(), StorageError> {
        write_snapshot_file(self.disk.as_ref(), meta, data, self.snapshots.compress)
    }

    /// Appends `entries` and/or `hard_state` as one write; syncs when `sync`.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), StorageError> {
        self.check_appendable(entries)?;
        let mut records = Vec::with_capacity(2);
        if !entries.is_empty() {
            records.push(WalRecord::Entries(entries.to_vec()));
        }
        if let Some(hs) = hard_state {
            let mut hs = hs.clone();
            if mutants::active("forget_vote") {
                hs.vote = 0;
            }
            records.push(WalRecord::HardState(hs));
        }
        if records.is_empty() && !sync {
            return Ok(());
        }
        self.write_records(&records, sync)?;
        for rec in records {
            self.apply_to_memory(rec)?;
        }
        self.rotate_if_large()
    }

    /// Refuses entries that would leave a gap, before anything reaches the disk.
    fn check_appendable(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let contiguous = entries.windows(2).all(|w| w[1].index == w[0].index + 1);
        let last = self.state.last_index();
        if !contiguous || first.index > last + 1 || first.index <= self.state.snapshot.index {
            return Err(StorageError::corruption(
                &self.segment,
                self.segment_len,
                format!(
                    "refusing to append entries {}..={} to a log ending at {last} (snapshot {})",
                    first.index,
                    entries.last().map_or(0, |e| e.index),
                    self.state.snapshot.index
                ),
            ));
        }
        Ok(())
    }

    /// Records how far the state machine has applied (not synced).
    pub fn persist_applied(&mut self, applied: u64) -> Result<(), StorageError> {
        if applied <= self.state.applied {
            return Ok(());
        }
        self.write_records(&[WalRecord::Applied(applied)], false)?;
        self.state.applied = applied;
        self.rotate_if_large()
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        let name = &self.segment;
        self.disk.sync(name).map_err(StorageError::io(name))
    }

    /// Persists a snapshot (received from the leader) now, compacts the log up to
    /// it, and rotates to a checkpointed segment.
    pub fn persist_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata();
        if meta.index <= self.state.snapshot.index {
            return Ok(());
        }
        self.write_snapshot_file(meta, &snapshot.data)?;
        self.record_snapshot(meta, snapshot.data.to_vec())
    }

    /// Starts a snapshot the node took itself: returns the file write to run off
    /// the Raft loop, and spares its file from cleanup until
    /// [`finish_snapshot_write`](Self::finish_snapshot_write).
    pub fn begin_snapshot_write(&mut self, meta: SnapshotMetadata) -> SnapshotFileWrite {
        self.writing = Some(wal::snapshot_name(meta.index, meta.term));
        SnapshotFileWrite {
            disk: self.disk.clone(),
            meta,
            compress: self.snapshots.compress,
        }
    }

    /// Ends the write begun by `begin_snapshot_write`: when the file was written,
    /// names it in the WAL, compacts and rotates as `persist_snapshot` does. A
    /// snapshot from the leader installed meanwhile supersedes it: its file is
    /// removed, and `Ok(false)` says nothing was recorded.
    pub fn finish_snapshot_write(
        &mut self,
        meta: &SnapshotMetadata,
        data: Vec<u8>,
        written: Result<(), StorageError>,
    ) -> Result<bool, StorageError> {
        self.writing = None;
        written?;
        let current = &self.state.snapshot;
        if meta.index <= current.index {
            // At the same index (hence term) it is the very file the WAL names.
            if (meta.index, meta.term) != (current.index, current.term) {
                let name = wal::snapshot_name(meta.index, meta.term);
                self.disk.remove(&name).map_err(StorageError::io(&name))?;
            }
            return Ok(false);
        }
        self.record_snapshot(meta, data)?;
        Ok(true)
    }

    /// Names a durable snapshot file in the WAL, compacts, and rotates.
    fn record_snapshot(
        &mut self,
        meta: &SnapshotMetadata,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.write_records(&[WalRecord::Snapshot(meta.clone())], true)?;
        self.apply_to_memory(WalRecord::Snapshot(meta.clone()))?;
        self.state.snapshot_data = data;
        self.state.applied = self.state.applied.max(meta.index);
        self.rotate_with_checkpoint()
    }

    /// The latest snapshot as raft-rs wants it.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        snap.set_metadata(self.state.snapshot.clone());
        snap.data = self.state.snapshot_data.clone().into();
        snap
    }

    fn write_records(&mut self, records: &[WalRecord], sync: bool) -> Result<(), StorageError> {
        self.buf.clear();
        for rec in records {
            wal::encode_record(&mut self.buf, rec);
        }
        self.reserve_ahead()?;
        let name = &self.segment;
        if !self.buf.is_empty() {
            self.disk
                .append(name, &self.buf)
                .map_err(StorageError::io(name))?;
            self.segment_len += self.buf.len() as u64;
        }
        if sync && !mutants::active("skip_fsync") {
            self.disk.sync(name).map_err(StorageError::io(name))?;
        }
        Ok(())
    }

    /// Extends the current segment's reservation when the bytes in `buf` would pass it.
    fn reserve_ahead(&mut self) -> Result<(), StorageError> {
        let end = self.segment_len + self.buf.len() as u64;
        if !self.disk_reserves || self.segment_len == 0 || end <= self.reserved_to {
            return Ok(());
        }
        let to = end + RESERVE_AHEAD_BYTES;
        let name = &self.segment;
        if self
            .disk
            .reserve(name, to)
            .map_err(StorageError::io(name))?
        {
            self.reserved_to = to;
        } else {
            self.disk_reserves = false;
        }
        Ok(())
    }

    /// Rotates once the segment is large; called after memory reflects the write, so
    /// the checkpoint includes it.
    fn rotate_if_large(&mut self) -> Result<(), StorageError> {
        if self.segment_len >= SEGMENT_ROTATE_BYTES {
            self.rotate_with_checkpoint()?;
        }
        Ok(())
    }

    fn apply_to_memory(&mut self, rec: WalRecord) -> Result<(), StorageError> {
        let (name, offset) = (&self.segment, self.segment_len);
        self.state
            .apply_record(rec)
            .map_err(|reason| StorageError::corruption(name, offset, reason))
    }

    /// Starts a new segment holding the whole state, then drops what it supersedes.
    fn rotate_with_checkpoint(&mut self) -> Result<(), StorageError> {
        if self.reserved_to > 0 {
            // Recovery allows a torn (or zero) tail only in the last segment: cut
            // the reserved zeros off, durably, before another segment follows.
            let name = &self.segment;
            self.disk
                .truncate(name, self.segment_len)
                .map_err(StorageError::io(name))?;
            self.disk.sync(name).map_err(StorageError::io(name))?;
            self.reserved_to = 0;
        }
        let old_segments = std::mem::take(&mut self.state.segments);
        self.segment_seq += 1;
        self.segment = wal::segment_name(self.segment_seq);
        self.segment_len = 0;
        self.state.segments = vec![self.segment_seq];
        let checkpoint = [
            WalRecord::Snapshot(self.state.snapshot.clone()),
            WalRecord::HardState(self.state.hard_state.clone()),
            WalRecord::Entries(self.state.entries.clone()),
            WalRecord::Applied(self.state.applied),
        ];
        self.buf.clear();
        for rec in &checkpoint {
            wal::encode_record(&mut self.buf, rec);
        }
        let name = &self.segment;
        self.disk
            .append(name, &self.buf)
            .map_err(StorageError::io(name))?;
        self.segment_len = self.buf.len() as u64;
        self.disk.sync(name).map_err(StorageError::io(name))?;
        self.disk.sync_dir().map_err(StorageError::io("sync_dir"))?;
        for seq in old_segments {
            let old = wal::segment_name(seq);
            self.disk.remove(&old).map_err(StorageError::io(&old))?;
        }
        for name in self.stale_snapshot_files()? {
            self.disk.remove(&name).map_err(StorageError::io(&name))?;
        }
        self.disk.sync_dir().map_err(StorageError::io("sync_dir"))
    }

    /// Leftover temporary snapshot files, and snapshot files beyond the newest
    /// `retention` (the one the WAL names is the newest, always kept). The file
    /// being written off the loop is not stale.
    fn stale_snapshot_files(&self) -> Result<Vec<String>, StorageError> {
        let current = self.state.snapshot.index;
        let mut snapshots = Vec::new();
        let mut stale = Vec::new();
        for name in self.disk.list().map_err(StorageError::io("list"))? {
            if let Some(writing) = &self.writing {
                if name.strip_suffix(".tmp").unwrap_or(&name) == writing {
                    continue;
                }
            }
            match wal::parse_snapshot_name(&name) {
                // A file newer than the WAL's (written, never named: a crash
                // between the two) is not a snapshot this node has.
                Some((index, _)) if index > current => stale.push(name),
                Some((index, term)) => snapshots.push(((index, term), name)),
                None if name.ends_with(".snap.tmp") => stale.push(name),
                None => {}
            }
        }
        snapshots.sort_unstable_by_key(|(position, _)| std::cmp::Reverse(*position));
        stale.extend(
            snapshots
                .into_iter()
                .skip(self.snapshots.retention)
                .map(|(_, name)| name),
        );
        Ok(stale)
    }
}
