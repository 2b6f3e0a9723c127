//! Writes the snapshots a node takes itself off its Raft loop.
//!
//! A snapshot file is as large as the whole state, and encoding, writing and
//! syncing it took the loop hundreds of milliseconds on a large state, during which
//! no proposal, heartbeat or read moved. The loop now only captures the state
//! ([`StateMachine::snapshot_later`](super::StateMachine::snapshot_later)) and hands
//! the encoding and the file to a disk job; when the file is durable the loop names
//! it in the WAL and compacts the log
//! ([`StorageEngine::finish_snapshot_write`](super::storage::StorageEngine::finish_snapshot_write)).
//! One write at a time: the next snapshot waits for it.

use std::sync::Arc;

use raft::eraftpb::SnapshotMetadata;
use tokio::sync::oneshot;

use super::storage::{SnapshotFileWrite, StorageError};
use crate::seams::clock::Clock;
use crate::seams::disk::spawn_disk_job;

/// A finished snapshot file write, back on the loop.
pub struct SnapshotWritten {
    pub meta: SnapshotMetadata,
    /// The snapshot's bytes, handed back for the engine to keep serving.
    pub data: Vec<u8>,
    pub written: Result<(), StorageError>,
}

/// What the disk job hands back: the snapshot's bytes and whether they are durable.
type Outcome = (Vec<u8>, Result<(), StorageError>);

/// The node's snapshot write in flight, if any.
#[derive(Default)]
pub struct SnapshotWriter {
    done: Option<(SnapshotMetadata, oneshot::Receiver<Outcome>)>,
}

impl SnapshotWriter {
    pub fn in_flight(&self) -> bool {
        self.done.is_some()
    }

    /// Starts encoding the snapshot with `encode` and writing it with `write`. The
    /// disk's stall (a slow simulated device) is waited out by the writer, not by
    /// the loop.
    pub fn start(
        &mut self,
        write: SnapshotFileWrite,
        encode: impl FnOnce() -> Vec<u8> + Send + 'static,
        clock: Arc<dyn Clock>,
    ) {
        debug_assert!(self.done.is_none(), "two snapshot writes at once");
        let (tx, rx) = oneshot::channel();
        let meta = write.meta().clone();
        tokio::spawn(async move {
            let job = spawn_disk_job(move || {
                let data = encode();
                let written = write.run(&data);
                (data, written, write.take_stall())
            });
            if let Ok((data, written, stall)) = job.await {
                if !stall.is_zero() {
                    clock.sleep(stall).await;
                }
                let _ = tx.send((data, written));
            }
        });
        self.done = Some((meta, rx));
    }

    /// Waits for the write in flight; pending forever when there is none (the
    /// driver polls it only while `in_flight`).
    pub async fn finished(&mut self) -> SnapshotWritten {
        let Some((meta, done)) = self.done.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = done.await;
        let meta = std::mem::take(meta);
        self.done = None;
        let (data, written) = outcome.unwrap_or_else(|_| {
            let failed = std::io::Error::other("the snapshot write stopped without an answer");
            (Vec::new(), Err(StorageError::io("snapshot")(failed)))
        });
        SnapshotWritten {
            meta,
            data,
            written,
        }
    }
}
