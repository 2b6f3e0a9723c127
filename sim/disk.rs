//! The simulated disk: a per-node file system in memory with a volatile and a
//! durable image, owned by the world so it outlives the node's process.
//!
//! Faults it injects, and nothing else:
//! - **unsynced loss**: a crash keeps, for every file, only what `sync` made
//!   durable, and only the names `sync_dir` made durable;
//! - **torn writes**: when enabled, a crash may also keep a prefix of a file's
//!   unsynced appended bytes, cut at an arbitrary byte (the last write torn);
//! - **EIO**: `append`/`write`/`truncate` and `sync`/`sync_dir` fail with an I/O
//!   error at configured rates (the data of a failed sync is *not* made durable);
//! - **latency**: each sync takes a drawn time, which the Raft driver waits out;
//! - **bit flips**: on request, one bit of the durable image flips while the node
//!   is down, each durable byte equally likely (the storage engine's checksums
//!   must catch it).
//!
//! It never injects silent corruption of synced data that no checksum could catch,
//! misdirected writes, or lost renames after `sync_dir`; the storage engine's
//! promises are judged against exactly this model.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use coordlab::seams::disk::{Disk, ReadDisk};
use madsim::rand::{thread_rng, Rng};

/// Fault rates and latencies; all zero means a perfect disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskFaults {
    /// Probability that a write-type call fails with EIO.
    pub write_eio: f64,
    /// Probability that `sync` / `sync_dir` fails with EIO.
    pub sync_eio: f64,
    /// Extra latency of each sync, drawn uniformly from this range (ms).
    pub sync_latency_ms: (u64, u64),
    /// Whether a crash may keep a torn prefix of unsynced appends.
    pub torn_writes: bool,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync (`usize::MAX`: clean).
    dirty_from: usize,
}

impl Inode {
    fn new() -> Self {
        Inode {
            dirty_from: 0,
            ..Default::default()
        }
    }

    fn touch(&mut self, offset: usize) {
        self.dirty_from = self.dirty_from.min(offset);
    }

    /// Makes the data durable; true when durable bytes changed rather than grew.
    fn sync(&mut self) -> bool {
        if self.dirty_from == usize::MAX {
            return false;
        }
        // Only the changed suffix is copied: appends are the common case.
        let keep = self.dirty_from.min(self.durable.len()).min(self.data.len());
        let rewrote = keep < self.durable.len();
        self.durable.truncate(keep);
        self.durable.extend_from_slice(&self.data[keep..]);
        self.dirty_from = usize::MAX;
        rewrote
    }
}

#[derive(Debug, Default)]
struct DiskState {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    faults: DiskFaults,
    stall: Duration,
    /// Bumped whenever the durable image may have changed.
    generation: u64,
    /// Bumped whenever durable bytes changed other than by growing: a file
    /// rewritten or truncated, a bit flipped, a name removed or pointed elsewhere.
    rewrites: u64,
    stats: DiskStats,
}

/// Counters of what the disk did and injected.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    pub writes: u64,
    pub syncs: u64,
    pub eio_injected: u64,
    pub crashes: u64,
    pub torn_bytes_kept: u64,
    pub bit_flips: u64,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO on {what}"))
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name:?}"))
}

/// One node's simulated disk.
#[derive(Debug, Default)]
pub struct SimDisk {
    state: Mutex<DiskState>,
}

impl DiskState {
    fn inode_of(&mut self, name: &str) -> io::Result<&mut Inode> {
        let id = *self.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(self.inodes.get_mut(&id).expect("named inode exists"))
    }

    fn create(&mut self, name: &str) -> &mut Inode {
        let id = match self.names.get(name) {
            Some(&id) => id,
            None => {
                let id = self.next_inode;
                self.next_inode += 1;
                self.inodes.insert(id, Inode::new());
                self.names.insert(name.to_string(), id);
                id
            }
        };
        self.inodes.get_mut(&id).expect("inode exists")
    }

    fn maybe_fail(&mut self, rate: f64, what: &str) -> io::Result<()> {
        if rate > 0.0 && thread_rng().gen_bool(rate.min(1.0)) {
            self.stats.eio_injected += 1;
            return Err(eio(what));
        }
        Ok(())
    }

    fn drop_unreferenced(&mut self) {
        let live: std::collections::BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
    }
}

impl SimDisk {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    pub fn faults(&self) -> DiskFaults {
        self.lock().faults.clone()
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }

    /// Changes whenever the durable image may have changed.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Changes whenever the durable image changed other than by files growing or
    /// appearing (see [`coordlab::raft::storage::recovery::IncrementalRecovery`]).
    pub fn rewrites(&self) -> u64 {
        self.lock().rewrites
    }

    /// A power cut: the volatile image becomes the durable one (plus, with torn
    /// writes on, a random prefix of each file's unsynced appended bytes).
    pub fn crash(&self) {
        let mut state = self.lock();
        let torn = state.faults.torn_writes;
        state.stats.crashes += 1;
        state.names = state.durable_names.clone();
        let durable_ids: Vec<u64> = state.durable_names.values().copied().collect();
        let mut kept = 0;
        for id in durable_ids {
            let inode = state.inodes.get_mut(&id).expect("durable inode");
            let appended_only =
                inode.dirty_from >= inode.durable.len() && inode.data.len() > inode.durable.len();
            let mut image = inode.durable.clone();
            if torn && appended_only && thread_rng().gen_bool(0.5) {
                let unsynced = &inode.data[inode.durable.len()..];
                let cut = thread_rng().gen_range(0..=unsynced.len());
                image.extend_from_slice(&unsynced[..cut]);
                kept += cut as u64;
            }
            inode.data = image.clone();
            inode.durable = image;
            inode.dirty_from = usize::MAX;
        }
        state.stats.torn_bytes_kept += kept;
        state.drop_unreferenced();
        state.stall = Duration::ZERO;
        state.generation += 1;
    }

    /// Flips one random bit of the durable image (node down): every durable byte is
    /// equally likely, so a file is hit in proportion to its size — mostly WAL
    /// segments full of synced entries, rarely the small bootstrap files. Returns
    /// the file and offset flipped.
    pub fn flip_random_bit(&self) -> Option<(String, usize)> {
        let mut state = self.lock();
        let files: Vec<(String, u64, usize)> = state
            .durable_names
            .iter()
            .map(|(n, &id)| (n.clone(), id, state.inodes[&id].durable.len()))
            .filter(|(_, _, len)| *len > 0)
            .collect();
        let total: usize = files.iter().map(|(_, _, len)| len).sum();
        if total == 0 {
            return None;
        }
        let mut rng = thread_rng();
        let mut at = rng.gen_range(0..total);
        let (name, id, offset) = files
            .into_iter()
            .find_map(|(name, id, len)| {
                if at < len {
                    Some((name, id, at))
                } else {
                    at -= len;
                    None
                }
            })
            .expect("the offset falls in some file");
        let inode = state.inodes.get_mut(&id).expect("inode");
        let bit = 1u8 << rng.gen_range(0..8);
        inode.durable[offset] ^= bit;
        if inode.data.len() > offset {
            inode.data[offset] ^= bit;
        }
        state.stats.bit_flips += 1;
        state.generation += 1;
        state.rewrites += 1;
        Some((name, offset))
    }

    /// Read access to the durable image, for recovery "as if crashed now".
    pub fn durable_image(&self) -> DurableImage<'_> {
        DurableImage(self.lock())
    }
}

impl ReadDisk for SimDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().names.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        Ok(state.inode_of(name)?.data.clone())
    }
}

impl Disk for SimDisk {
    fn append(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        let rate = state.faults.write_eio;
        state.maybe_fail(rate, name)?;
        state.stats.writes += 1;
        let inode = state.create(name);
        let at = inode.data.len();
        inode.touch(at);
        inode.data.extend_from_slice(data);
        Ok(())
    }

    fn write(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        let rate = state.faults.write_eio;
        state.maybe_fail(rate, name)?;
        state.stats.writes += 1;
        let inode = state.create(name);
        inode.touch(0);
        inode.data = data.to_vec();
        Ok(())
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        let rate = state.faults.write_eio;
        state.maybe_fail(rate, name)?;
        let inode = state.inode_of(name)?;
        let len = len as usize;
        inode.touch(len);
        inode.data.truncate(len);
        Ok(())
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        let mut state = self.lock();
        let rate = state.faults.sync_eio;
        state.maybe_fail(rate, name)?;
        let (lo, hi) = state.faults.sync_latency_ms;
        if hi > 0 {
            let ms = thread_rng().gen_range(lo..=hi.max(lo));
            state.stall += Duration::from_millis(ms);
        }
        state.stats.syncs += 1;
        if state.inode_of(name)?.sync() {
            state.rewrites += 1;
        }
        state.generation += 1;
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.lock();
        let id = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_string(), id);
        state.drop_unreferenced();
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.names.remove(name);
        state.drop_unreferenced();
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.lock();
        let rate = state.faults.sync_eio;
        state.maybe_fail(rate, "directory")?;
        let kept = state
            .durable_names
            .iter()
            .all(|(name, id)| state.names.get(name) == Some(id));
        if !kept {
            state.rewrites += 1;
        }
        state.durable_names = state.names.clone();
        state.drop_unreferenced();
        state.generation += 1;
        Ok(())
    }

    fn take_stall(&self) -> Duration {
        std::mem::take(&mut self.lock().stall)
    }
}

/// The durable image, read-only: what a crash at this instant would leave.
pub struct DurableImage<'a>(MutexGuard<'a, DiskState>);

impl ReadDisk for DurableImage<'_> {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.0.durable_names.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let id = self
            .0
            .durable_names
            .get(name)
            .ok_or_else(|| not_found(name))?;
        Ok(self.0.inodes[id].durable.clone())
    }

    fn read_from(&self, name: &str, offset: u64) -> io::Result<Vec<u8>> {
        let id = self
            .0
            .durable_names
            .get(name)
            .ok_or_else(|| not_found(name))?;
        let durable = &self.0.inodes[id].durable;
        Ok(durable[(offset as usize).min(durable.len())..].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use coordlab::raft::storage::recovery::IncrementalRecovery;
    use coordlab::raft::storage::{recover, StorageEngine};
    use proptest::prelude::*;
    use raft::eraftpb::{Entry, HardState, Snapshot};

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Entries from `back` before the end (overwriting a suffix), in a new
        /// term or not, with or without a HardState, synced or not.
        Persist {
            back: u64,
            count: u64,
            new_term: bool,
            hard_state: bool,
            sync: bool,
        },
        Applied,
        Sync,
        /// A snapshot at `ahead` past the first entry after the current snapshot.
        Snapshot {
            ahead: u64,
        },
        /// A power cut, with or without torn unsynced appends, and a restart
        /// (which truncates a torn tail).
        Crash {
            torn: bool,
        },
        /// A flipped durable bit (the last step: the node would refuse to start).
        Flip,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3u64, 0..4u64, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                |(back, count, new_term, hard_state, sync)| Op::Persist {
                    back,
                    count,
                    new_term,
                    hard_state,
                    sync
                }
            ),
            1 => Just(Op::Applied),
            2 => Just(Op::Sync),
            1 => (0..6u64).prop_map(|ahead| Op::Snapshot { ahead }),
            2 => any::<bool>().prop_map(|torn| Op::Crash { torn }),
            1 => Just(Op::Flip),
        ]
    }

    fn bootstrapped(disk: &Arc<SimDisk>) -> StorageEngine {
        let mut engine = StorageEngine::open(disk.clone()).expect("open");
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 1;
        snapshot.mut_metadata().term = 1;
        snapshot.data = b"initial".to_vec().into();
        let hs = HardState {
            term: 1,
            commit: 1,
            ..Default::default()
        };
        engine.bootstrap(&snapshot, &hs).expect("bootstrap");
        engine
    }

    /// Steps `engine` by `op`; false when the run ends (a flipped bit).
    fn step(engine: &mut StorageEngine, disk: &Arc<SimDisk>, term: &mut u64, op: &Op) -> bool {
        let state = engine.state();
        let (snap, last) = (state.snapshot.index, state.last_index());
        match *op {
            Op::Persist {
                back,
                count,
                new_term,
                hard_state,
                sync,
            } => {
                if new_term {
                    *term += 1;
                }
                let first = last.saturating_sub(back).max(snap) + 1;
                let entries: Vec<Entry> = (first..first + count)
                    .map(|index| Entry {
                        index,
                        term: *term,
                        data: format!("{index}@{term}").into_bytes().into(),
                        ..Default::default()
                    })
                    .collect();
                let hs = hard_state.then(|| HardState {
                    term: *term,
                    commit: snap,
                    ..Default::default()
                });
                engine
                    .persist(&entries, hs.as_ref(), sync)
                    .expect("persist");
            }
            Op::Applied => engine.persist_applied(last).expect("applied"),
            Op::Sync => engine.sync().expect("sync"),
            Op::Snapshot { ahead } => {
                let index = snap + 1 + ahead;
                let mut snapshot = Snapshot::default();
                snapshot.mut_metadata().index = index;
                snapshot.mut_metadata().term = state.term_of(index).unwrap_or(*term);
                snapshot.data = format!("state@{index}").into_bytes().into();
                engine.persist_snapshot(&snapshot).expect("snapshot");
            }
            Op::Crash { torn } => {
                disk.set_faults(DiskFaults {
                    torn_writes: torn,
                    ..Default::default()
                });
                disk.crash();
                *engine = StorageEngine::open(disk.clone()).expect("restart");
            }
            Op::Flip => {
                disk.flip_random_bit();
                return false;
            }
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The observer's incremental view of a durable image equals a full
        /// recovery of it after every step of a random write/sync/crash/tear run
        /// (the same error when a flipped bit makes it unrecoverable).
        #[test]
        fn incremental_recovery_equals_full_recovery(ops in prop::collection::vec(op(), 1..60)) {
            let disk = Arc::new(SimDisk::new());
            let mut engine = bootstrapped(&disk);
            let mut term = 1;
            let mut incremental = IncrementalRecovery::new();
            let mut rewrites = disk.rewrites();
            for op in &ops {
                let going = step(&mut engine, &disk, &mut term, op);
                if disk.rewrites() != rewrites {
                    rewrites = disk.rewrites();
                    incremental = IncrementalRecovery::new();
                }
                let full = recover(&disk.durable_image()).map(|s| format!("{s:?}"));
                let kept = incremental
                    .advance(&disk.durable_image())
                    .map(|s| format!("{s:?}"));
                match (&full, &kept) {
                    (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "after {:?}", op),
                    (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                    _ => prop_assert!(false, "after {:?}: full {:?}, incremental {:?}", op, full.map(|_| ()), kept.map(|_| ())),
                }
                if !going {
                    break;
                }
            }
        }
    }

    /// Appends, synced or not, only add durable bytes: the view reads on from
    /// where it stopped (a torn-looking partial record included) and agrees with
    /// a full recovery; a snapshot removes files and counts as a rewrite.
    #[test]
    fn appends_are_read_on_and_a_snapshot_starts_over() {
        let disk = Arc::new(SimDisk::new());
        let mut engine = bootstrapped(&disk);
        let mut term = 1;
        let mut incremental = IncrementalRecovery::new();
        let persist = |count, sync| Op::Persist {
            back: 0,
            count,
            new_term: false,
            hard_state: true,
            sync,
        };
        let rewrites = disk.rewrites();
        for op in [
            persist(3, true),
            persist(2, false),
            Op::Sync,
            persist(1, true),
        ] {
            step(&mut engine, &disk, &mut term, &op);
            assert_eq!(disk.rewrites(), rewrites, "{op:?} only adds durable bytes");
            let full = format!("{:?}", recover(&disk.durable_image()).unwrap());
            let kept = format!("{:?}", incremental.advance(&disk.durable_image()).unwrap());
            assert_eq!(full, kept, "after {op:?}");
        }
        assert_eq!(incremental.state().last_index(), 7);
        step(&mut engine, &disk, &mut term, &Op::Snapshot { ahead: 2 });
        assert!(
            disk.rewrites() > rewrites,
            "a snapshot removes the old segment"
        );
    }

    /// The view must notice what only a rewrite counter can tell it: without
    /// `rewrites`, a truncated-then-regrown segment would be read from a stale
    /// offset.
    #[test]
    fn a_rewrite_is_counted() {
        let disk = SimDisk::new();
        disk.append("f", b"abcdef").unwrap();
        disk.sync("f").unwrap();
        let before = disk.rewrites();
        disk.append("f", b"gh").unwrap();
        disk.sync("f").unwrap();
        assert_eq!(disk.rewrites(), before, "growing is not a rewrite");
        disk.truncate("f", 2).unwrap();
        disk.append("f", b"xyzxyzxyz").unwrap();
        disk.sync("f").unwrap();
        assert_eq!(disk.rewrites(), before + 1);
    }
}
