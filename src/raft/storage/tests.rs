//! Storage engine tests: recovery after torn writes, refusal of corruption,
//! snapshots with compaction, and Raft's conflict truncation (§5.3).

use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, Storage};

use super::record;
use super::*;
use crate::seams::disk::{Disk, FileDisk, ReadDisk};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("cmd-{index}-{term}").into_bytes().into(),
        ..Default::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    disk: Arc<FileDisk>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(FileDisk::open(dir.path()).unwrap());
        Fixture { dir, disk }
    }

    fn open(&self) -> Result<StorageEngine, StorageError> {
        StorageEngine::open(self.disk.clone())
    }

    /// The directory as another process sees it: no open files, no reservations.
    fn disk_of_a_new_process(&self) -> Arc<FileDisk> {
        Arc::new(FileDisk::open(self.dir.path()).unwrap())
    }

    fn bootstrapped(&self) -> StorageEngine {
        self.bootstrapped_with(SnapshotOptions::default())
    }

    fn bootstrapped_with(&self, snapshots: SnapshotOptions) -> StorageEngine {
        let mut engine = StorageEngine::open_with(self.disk.clone(), snapshots).unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().set_conf_state(cs);
        engine.bootstrap(&snapshot, &HardState::default()).unwrap();
        engine
    }

    fn segment(&self) -> String {
        self.disk
            .list()
            .unwrap()
            .into_iter()
            .rfind(|n| wal::parse_segment_name(n).is_some())
            .unwrap()
    }
}

#[test]
fn state_survives_reopen() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=5, 1), Some(&hard_state(1, 2, 3)), true)
        .unwrap();
    engine.persist_applied(3).unwrap();
    engine.sync().unwrap();
    drop(engine);
    let engine = fx.open().unwrap();
    let state = engine.state();
    assert_eq!(state.hard_state, hard_state(1, 2, 3));
    assert_eq!(state.entries, entries(1..=5, 1));
    assert_eq!(state.applied, 3);
    assert_eq!(state.snapshot.get_conf_state().voters, vec![1, 2, 3]);
    assert!(state.torn_tail.is_none());
}

#[test]
fn torn_tail_is_truncated_and_earlier_records_kept() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=3, 1), Some(&hard_state(1, 1, 2)), true)
        .unwrap();
    let name = fx.segment();
    let good_len = data_end(&fx.disk.read(&name).unwrap());
    engine.persist(&entries(4..=6, 1), None, true).unwrap();
    drop(engine);
    let mut full = fx.disk.read(&name).unwrap();
    full.truncate(data_end(&full));
    assert!(full.len() > good_len + 7);
    // Every cut inside the last record is a torn write: recovery keeps 1..=3.
    for cut in (good_len + 1..full.len()).step_by(7) {
        fx.disk.write(&name, &full[..cut]).unwrap();
        let engine = fx.open().unwrap();
        assert_eq!(engine.state().last_index(), 3, "cut at {cut}");
        assert_eq!(
            fx.disk.read(&name).unwrap().len(),
            good_len,
            "tail truncated"
        );
    }
    // After the repair the log accepts appends again.
    let mut engine = fx.open().unwrap();
    engine.persist(&entries(4..=4, 2), None, true).unwrap();
    drop(engine);
    assert_eq!(fx.open().unwrap().state().last_index(), 4);
}

/// Where the records of a segment's bytes end (reserved zeros follow).
fn data_end(bytes: &[u8]) -> usize {
    let mut end = 0;
    while let Ok((_, next)) = record::decode_at(bytes, end) {
        end = next;
    }
    end
}

#[test]
fn a_reserved_segment_is_cut_back_at_restart_and_loses_no_record() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=3, 1), Some(&hard_state(1, 1, 3)), true)
        .unwrap();
    let name = fx.segment();
    let bytes = fx.disk.read(&name).unwrap();
    let end = data_end(&bytes);
    assert!(
        bytes.len() > end,
        "the segment has room reserved after its data"
    );
    assert!(bytes[end..].iter().all(|&b| b == 0));
    drop(engine);

    let disk = fx.disk_of_a_new_process();
    let mut engine = StorageEngine::open(disk.clone()).unwrap();
    assert_eq!(engine.state().entries, entries(1..=3, 1));
    assert!(
        engine.state().torn_tail.is_none(),
        "reserved zeros are not a torn write"
    );
    assert_eq!(disk.read(&name).unwrap().len(), end, "zeros cut off");
    engine.persist(&entries(4..=6, 1), None, true).unwrap();
    engine.persist(&entries(7..=7, 1), None, true).unwrap();
    drop(engine);

    let disk = fx.disk_of_a_new_process();
    let engine = StorageEngine::open(disk).unwrap();
    assert_eq!(engine.state().entries, entries(1..=7, 1));
    assert_eq!(engine.state().hard_state, hard_state(1, 1, 3));
}

/// Fails every removal, so a rotation stops after its checkpoint is durable and
/// before the segments it supersedes are deleted (a crash there).
struct NoRemove(Arc<FileDisk>);

impl ReadDisk for NoRemove {
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.0.list()
    }
    fn read(&self, name: &str) -> std::io::Result<Vec<u8>> {
        self.0.read(name)
    }
}

impl Disk for NoRemove {
    fn append(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        self.0.append(name, data)
    }
    fn write(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        self.0.write(name, data)
    }
    fn truncate(&self, name: &str, len: u64) -> std::io::Result<()> {
        self.0.truncate(name, len)
    }
    fn sync(&self, name: &str) -> std::io::Result<()> {
        self.0.sync(name)
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove(&self, _name: &str) -> std::io::Result<()> {
        Err(std::io::Error::other("removal refused by the test"))
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.0.sync_dir()
    }
    fn reserve(&self, name: &str, len: u64) -> std::io::Result<bool> {
        self.0.reserve(name, len)
    }
}

#[test]
fn a_rotation_cuts_the_reserved_zeros_off_the_segment_it_leaves() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=5, 1), Some(&hard_state(1, 1, 5)), true)
        .unwrap();
    let old = fx.segment();
    drop(engine);
    let mut engine = StorageEngine::open(Arc::new(NoRemove(fx.disk.clone()))).unwrap();
    engine.persist(&entries(6..=6, 1), None, true).unwrap();
    let reserved = fx.disk.read(&old).unwrap();
    assert!(
        reserved.len() > data_end(&reserved),
        "reserved before the rotation"
    );
    let expected = engine.state().entries[4..].to_vec();
    assert!(engine.persist_snapshot(&snapshot_at(4, 1, b"s4")).is_err());
    drop(engine);

    let left = fx.disk.read(&old).unwrap();
    assert_eq!(
        left.len(),
        data_end(&left),
        "no zeros after the old segment's data"
    );
    let disk = fx.disk_of_a_new_process();
    assert!(
        disk.list().unwrap().contains(&old),
        "the crash kept the old segment"
    );
    let engine = StorageEngine::open(disk).unwrap();
    assert_eq!(engine.state().snapshot.index, 4);
    assert_eq!(engine.state().entries, expected);
}

#[test]
fn a_write_into_reserved_space_that_lost_its_last_sectors_is_torn() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine.persist(&entries(1..=3, 1), None, true).unwrap();
    let name = fx.segment();
    let good_len = data_end(&fx.disk.read(&name).unwrap());
    let mut big = entry(4, 1);
    big.data = vec![0xab; 3000].into();
    engine.persist(&[big], None, true).unwrap();
    drop(engine);
    let full = fx.disk.read(&name).unwrap();
    assert!(full.len() > data_end(&full), "written into reserved space");
    // The device kept the record's first sectors only; the rest reads as zeros.
    let first_lost = good_len.div_ceil(512) * 512 + 512;
    for lost_from in (first_lost..data_end(&full)).step_by(512) {
        let mut torn = full.clone();
        torn[lost_from..].fill(0);
        fx.disk.write(&name, &torn).unwrap();
        let engine = fx.open().unwrap();
        assert_eq!(engine.state().last_index(), 3, "lost from {lost_from}");
        assert!(engine.state().torn_tail.is_some());
    }
}

#[test]
fn zero_filled_tail_is_torn() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine.persist(&entries(1..=2, 1), None, true).unwrap();
    drop(engine);
    fx.disk.append(&fx.segment(), &[0u8; 512]).unwrap();
    let engine = fx.open().unwrap();
    assert_eq!(engine.state().last_index(), 2);
}

#[test]
fn corruption_inside_the_log_is_refused_with_file_and_offset() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    let name = fx.segment();
    let first_entries_at = fx.disk.read(&name).unwrap().len();
    engine.persist(&entries(1..=3, 1), None, true).unwrap();
    engine.persist(&entries(4..=6, 1), None, true).unwrap();
    drop(engine);
    let mut bytes = fx.disk.read(&name).unwrap();
    bytes[first_entries_at + 20] ^= 0x10;
    fx.disk.write(&name, &bytes).unwrap();
    match fx.open() {
        Err(StorageError::Corruption {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, name);
            assert_eq!(offset, first_entries_at as u64);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!(
            "expected corruption, got {:?}",
            other.map(|e| e.state().last_index())
        ),
    }
    // The refusal changed nothing on disk.
    assert_eq!(fx.disk.read(&name).unwrap(), bytes);
}

#[test]
fn conflicting_suffix_is_replaced() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine.persist(&entries(1..=5, 1), None, true).unwrap();
    engine.persist(&entries(3..=4, 2), None, true).unwrap();
    assert_eq!(engine.state().last_index(), 4);
    drop(engine);
    let engine = fx.open().unwrap();
    let terms: Vec<(u64, u64)> = engine
        .state()
        .entries
        .iter()
        .map(|e| (e.index, e.term))
        .collect();
    assert_eq!(terms, vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
}

#[test]
fn gap_in_the_log_is_corruption() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine.persist(&entries(1..=2, 1), None, true).unwrap();
    let err = engine.persist(&entries(5..=6, 1), None, true).unwrap_err();
    assert!(matches!(err, StorageError::Corruption { .. }), "{err}");
    drop(engine);
    // Nothing of the refused batch reached the disk.
    assert_eq!(fx.open().unwrap().state().last_index(), 2);
}

fn snapshot_at(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    meta.set_conf_state(ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    });
    let mut snap = Snapshot::default();
    snap.set_metadata(meta);
    snap.data = data.to_vec().into();
    snap
}

#[test]
fn snapshot_compacts_rotates_and_recovers() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=10, 1), Some(&hard_state(1, 1, 8)), true)
        .unwrap();
    engine
        .persist_snapshot(&snapshot_at(6, 1, b"state@6"))
        .unwrap();
    engine
        .persist_snapshot(&snapshot_at(8, 1, b"state@8"))
        .unwrap();
    let names = fx.disk.list().unwrap();
    assert_eq!(
        names,
        vec![wal::snapshot_name(8, 1), wal::segment_name(2)],
        "old segments and snapshots removed"
    );
    drop(engine);
    let storage = DurableStorage::new(fx.open().unwrap());
    assert_eq!(storage.first_index().unwrap(), 9);
    assert_eq!(storage.last_index().unwrap(), 10);
    assert_eq!(storage.term(8).unwrap(), 1);
    assert!(storage.term(7).is_err());
    assert_eq!(&storage.snapshot(0, 2).unwrap().data[..], b"state@8");
    let got = storage
        .entries(9, 11, None, GetEntriesContext::empty(false))
        .unwrap();
    assert_eq!(got, entries(9..=10, 1));
    assert_eq!(storage.initial_state().unwrap().hard_state.commit, 8);
}

#[test]
fn snapshot_beyond_the_log_replaces_it() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine.persist(&entries(1..=3, 1), None, true).unwrap();
    engine
        .persist_snapshot(&snapshot_at(20, 4, b"from leader"))
        .unwrap();
    assert_eq!(engine.state().last_index(), 20);
    assert!(engine.state().entries.is_empty());
    engine.persist(&entries(21..=22, 4), None, true).unwrap();
    drop(engine);
    assert_eq!(fx.open().unwrap().state().last_index(), 22);
}

#[test]
fn damaged_snapshot_file_is_refused() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine.persist(&entries(1..=4, 1), None, true).unwrap();
    engine
        .persist_snapshot(&snapshot_at(3, 1, b"snapshot bytes"))
        .unwrap();
    drop(engine);
    let name = wal::snapshot_name(3, 1);
    let mut bytes = fx.disk.read(&name).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fx.disk.write(&name, &bytes).unwrap();
    match fx.open() {
        Err(StorageError::Corruption { file, .. }) => assert_eq!(file, name),
        other => panic!("expected corruption, got {:?}", other.is_ok()),
    }
    fx.disk.remove(&name).unwrap();
    assert!(matches!(fx.open(), Err(StorageError::Corruption { .. })));
}

#[test]
fn crash_before_old_segments_are_removed_recovers_the_same_state() {
    // Simulates a crash after the checkpoint segment was written but before the
    // old segment was deleted: replaying both must give the same state.
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=5, 1), Some(&hard_state(1, 1, 5)), true)
        .unwrap();
    let old = fx.segment();
    // As the rotation leaves it: its reserved zeros cut off.
    let mut old_bytes = fx.disk.read(&old).unwrap();
    old_bytes.truncate(data_end(&old_bytes));
    engine.persist_snapshot(&snapshot_at(4, 1, b"s4")).unwrap();
    let expected = engine.state().entries.clone();
    drop(engine);
    fx.disk.write(&old, &old_bytes).unwrap();
    let engine = fx.open().unwrap();
    assert_eq!(engine.state().snapshot.index, 4);
    assert_eq!(engine.state().entries, expected);
}

#[test]
fn brand_new_disk_is_empty() {
    let fx = Fixture::new();
    let engine = fx.open().unwrap();
    assert!(engine.is_new());
    assert_eq!(engine.state().last_index(), 0);
}

#[test]
fn a_snapshot_implies_its_commit_index_after_a_crash() {
    // A crash after the Snapshot record was synced but before any HardState record
    // carried the higher commit: replay must not yield commit < snapshot index
    // (raft-rs refuses to start from that). Found by the `everything` scenario.
    let mut state = RecoveredState::default();
    state
        .apply_record(wal::WalRecord::HardState(hard_state(1, 1, 2)))
        .unwrap();
    let meta = snapshot_at(10, 2, b"").get_metadata().clone();
    state.apply_record(wal::WalRecord::Snapshot(meta)).unwrap();
    assert_eq!(state.snapshot.index, 10);
    assert_eq!(state.hard_state.commit, 10);
}

#[test]
fn retention_keeps_the_newest_snapshot_files_and_recovery_reads_the_newest() {
    let fx = Fixture::new();
    let options = SnapshotOptions {
        retention: 3,
        compress: false,
    };
    let mut engine = fx.bootstrapped_with(options);
    engine
        .persist(&entries(1..=10, 1), Some(&hard_state(1, 1, 10)), true)
        .unwrap();
    for index in [2, 4, 6, 8, 10] {
        let data = format!("state@{index}");
        engine
            .persist_snapshot(&snapshot_at(index, 1, data.as_bytes()))
            .unwrap();
    }
    let kept: Vec<String> = fx
        .disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| wal::parse_snapshot_name(n).is_some())
        .collect();
    assert_eq!(
        kept,
        vec![
            wal::snapshot_name(6, 1),
            wal::snapshot_name(8, 1),
            wal::snapshot_name(10, 1)
        ]
    );
    drop(engine);
    let reopened = StorageEngine::open_with(fx.disk.clone(), options).unwrap();
    assert_eq!(reopened.state().snapshot.index, 10);
    assert_eq!(reopened.state().snapshot_data, b"state@10");
}

#[test]
fn compressed_snapshots_are_smaller_and_read_back_by_any_engine() {
    let fx = Fixture::new();
    let compress = SnapshotOptions {
        retention: 1,
        compress: true,
    };
    let mut engine = fx.bootstrapped_with(compress);
    engine
        .persist(&entries(1..=4, 1), Some(&hard_state(1, 1, 4)), true)
        .unwrap();
    let state = b"key=value;".repeat(1_000);
    engine.persist_snapshot(&snapshot_at(4, 1, &state)).unwrap();
    drop(engine);
    let name = wal::snapshot_name(4, 1);
    let on_disk = fx.disk.read(&name).unwrap().len();
    assert!(
        on_disk < state.len() / 4,
        "{on_disk} bytes on disk for {}",
        state.len()
    );
    // An engine that writes uncompressed still reads it.
    let plain = fx.open().unwrap();
    assert_eq!(plain.state().snapshot_data, state);
    drop(plain);
    // A damaged compressed file is refused, naming the file.
    let mut bytes = fx.disk.read(&name).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fx.disk.write(&name, &bytes).unwrap();
    match fx.open() {
        Err(StorageError::Corruption { file, .. }) => assert_eq!(file, name),
        other => panic!("expected corruption, got {:?}", other.is_ok()),
    }
}

#[test]
fn a_snapshot_written_off_the_loop_is_named_in_the_wal_only_when_finished() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=10, 1), Some(&hard_state(1, 1, 8)), true)
        .unwrap();
    let meta = snapshot_at(6, 1, b"").take_metadata();
    let write = engine.begin_snapshot_write(meta.clone());
    write.run(b"state@6").unwrap();
    // The log grows while the file is written.
    engine.persist(&entries(11..=12, 1), None, true).unwrap();
    // A crash now: the durable file is not named in the WAL, so it is not used.
    assert_eq!(fx.open().unwrap().state().snapshot.index, 0);

    let recorded = engine
        .finish_snapshot_write(&meta, b"state@6".to_vec(), Ok(()))
        .unwrap();
    assert!(recorded);
    assert_eq!(engine.state().snapshot.index, 6);
    assert_eq!(engine.state().entries, entries(7..=12, 1));
    drop(engine);
    let reopened = fx.open().unwrap();
    assert_eq!(reopened.state().snapshot.index, 6);
    assert_eq!(reopened.state().snapshot_data, b"state@6");
    assert_eq!(reopened.state().entries, entries(7..=12, 1));
}

#[test]
fn cleanup_spares_the_snapshot_being_written_and_a_newer_snapshot_supersedes_it() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=10, 1), Some(&hard_state(1, 1, 10)), true)
        .unwrap();
    let meta = snapshot_at(6, 1, b"").take_metadata();
    let write = engine.begin_snapshot_write(meta.clone());
    // The writer has its temporary file on disk, not yet renamed, when the leader's
    // snapshot is installed and the engine removes stale snapshot files.
    let tmp = format!("{}.tmp", wal::snapshot_name(6, 1));
    fx.disk.write(&tmp, b"half a snapshot").unwrap();
    engine
        .persist_snapshot(&snapshot_at(8, 1, b"from leader"))
        .unwrap();
    assert!(fx.disk.read(&tmp).is_ok(), "the file in flight was removed");

    write.run(b"state@6").unwrap();
    let recorded = engine
        .finish_snapshot_write(&meta, b"state@6".to_vec(), Ok(()))
        .unwrap();
    assert!(
        !recorded,
        "an older snapshot than the installed one was recorded"
    );
    assert_eq!(
        fx.disk.list().unwrap(),
        vec![wal::snapshot_name(8, 1), fx.segment()],
        "the superseded file is removed"
    );
    assert_eq!(engine.state().snapshot_data, b"from leader");
}

#[test]
fn a_failed_snapshot_write_reports_the_error_and_changes_nothing() {
    let fx = Fixture::new();
    let mut engine = fx.bootstrapped();
    engine
        .persist(&entries(1..=4, 1), Some(&hard_state(1, 1, 4)), true)
        .unwrap();
    let meta = snapshot_at(3, 1, b"").take_metadata();
    let _write = engine.begin_snapshot_write(meta.clone());
    let failed = std::io::Error::other("disk full");
    let err = engine
        .finish_snapshot_write(&meta, Vec::new(), Err(StorageError::io("3.snap")(failed)))
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert_eq!(engine.state().snapshot.index, 0);
    assert_eq!(engine.state().entries, entries(1..=4, 1));
}
