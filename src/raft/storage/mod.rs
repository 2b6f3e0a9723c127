//! coordlab's storage engine: a checksummed write-ahead log plus snapshot files, on
//! the [`Disk`](crate::seams::disk::Disk) seam.
//!
//! - [`record`]: the checksummed frame every file is made of;
//! - [`wal`]: the record kinds and file names;
//! - [`recovery`]: rebuilding state from files (read-only);
//! - [`engine`]: the write path;
//! - [`DurableStorage`]: raft-rs's `Storage` view over the engine.

pub mod engine;
pub mod record;
pub mod recovery;
pub mod wal;

use std::io;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage};
use thiserror::Error;

pub use engine::{SnapshotFileWrite, SnapshotOptions, StorageEngine};
pub use recovery::{recover, RecoveredState};

/// A failure of the storage engine.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The disk refused an operation.
    #[error("I/O error on {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    /// Data on disk is damaged or inconsistent; the node must not start from it.
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corruption {
        file: String,
        offset: u64,
        reason: String,
    },
}

impl StorageError {
    /// Adapter for `map_err`: an I/O error on `file`.
    pub fn io(file: &str) -> impl FnOnce(io::Error) -> StorageError + '_ {
        move |source| StorageError::Io {
            file: file.to_string(),
            source,
        }
    }

    pub fn corruption(file: &str, offset: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corruption {
            file: file.to_string(),
            offset,
            reason: reason.into(),
        }
    }
}

/// raft-rs's view of the log: served from memory, written through the engine.
pub struct DurableStorage {
    engine: StorageEngine,
    /// Set when raft-rs asked for a snapshot the stored one cannot serve; the core
    /// then takes a fresh one.
    fresh_snapshot_wanted: std::cell::Cell<bool>,
}

impl DurableStorage {
    pub fn new(engine: StorageEngine) -> Self {
        DurableStorage {
            engine,
            fresh_snapshot_wanted: std::cell::Cell::new(false),
        }
    }

    /// Whether raft-rs wanted a newer snapshot since the last call.
    pub fn take_fresh_snapshot_request(&self) -> bool {
        self.fresh_snapshot_wanted.replace(false)
    }

    pub fn engine(&self) -> &StorageEngine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut StorageEngine {
        &mut self.engine
    }

    fn first(&self) -> u64 {
        self.engine.state().snapshot.index + 1
    }

    fn last(&self) -> u64 {
        self.engine.state().last_index()
    }
}

fn unavailable() -> raft::Error {
    raft::Error::Store(raft::StorageError::Unavailable)
}

impl Storage for DurableStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let state = self.engine.state();
        let conf_state: ConfState = state.snapshot.get_conf_state().clone();
        let hard_state: HardState = state.hard_state.clone();
        Ok(RaftState {
            hard_state,
            conf_state,
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(unavailable());
        }
        let offset = self.first();
        let entries =
            &self.engine.state().entries[(low - offset) as usize..(high - offset) as usize];
        let mut out = entries.to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let state = self.engine.state();
        if idx == state.snapshot.index {
            return Ok(state.snapshot.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        state.term_of(idx).ok_or_else(unavailable)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// The stored snapshot, unless it is older than `request_index` or predates the
    /// configuration that made `to` a member (raft-rs's follower ignores a snapshot
    /// whose ConfState does not contain it); then a fresh one is requested.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let meta = &self.engine.state().snapshot;
        let conf = meta.get_conf_state();
        let includes_peer = conf.voters.contains(&to) || conf.learners.contains(&to);
        if meta.index < request_index || !includes_peer {
            self.fresh_snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.engine.snapshot())
    }
}

#[cfg(test)]
mod tests;
