//! The Disk seam: all persistence of a node goes through one flat directory of files.
//!
//! The real implementation, [`FileDisk`], is a directory with `fsync`. The simulated
//! one (in `sim/`) keeps a volatile and a durable image of every file and decides what
//! a crash keeps; its module documents exactly which faults it injects.
//!
//! Contract for implementers:
//! - `append` and `write` change the *volatile* state; they may be lost by a crash
//!   until `sync(name)` returns (file contents) and `sync_dir` returns (the existence
//!   of created, renamed and removed names).
//! - `sync` returns only after the file's data is durable.
//! - `rename` replaces `to` atomically: after a crash either the old or the new
//!   content is under `to`, never a mix.
//! - `list` returns names in ascending byte order.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The read side of a disk: all that recovery needs. Also implemented by views of a
/// simulated disk's durable image, so recovery can run over "what a crash keeps".
pub trait ReadDisk {
    /// Names of all files, in ascending order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The whole content of `name` (`NotFound` if absent).
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;
    /// The content of `name` from byte `offset` on (empty past the end).
    fn read_from(&self, name: &str, offset: u64) -> io::Result<Vec<u8>> {
        let mut data = self.read(name)?;
        Ok(data.split_off((offset as usize).min(data.len())))
    }
}

/// One node's persistent storage: a flat namespace of files.
pub trait Disk: ReadDisk + Send + Sync + 'static {
    /// Appends `data` to `name`, creating it if absent.
    fn append(&self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Replaces the content of `name` with `data`, creating it if absent.
    fn write(&self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Cuts `name` to `len` bytes.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Makes the data of `name` durable.
    fn sync(&self, name: &str) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `name`; absent is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes the set of names durable (creations, renames, removals).
    fn sync_dir(&self) -> io::Result<()>;
    /// Lets `name` grow to `len` bytes without its length changing at every
    /// append: syncing an append that lengthens a file also commits the new length
    /// to the file system's journal, which costs more than the data. The file then
    /// reads as its data followed by zeros up to `len`, also after a crash
    /// (recovery takes zeros after the last record for a torn tail), and appends
    /// through this `Disk` go on after the data until `name` is truncated,
    /// written, renamed or removed. Returns false, changing nothing, when the disk
    /// does not reserve space (the simulated one).
    fn reserve(&self, _name: &str, _len: u64) -> io::Result<bool> {
        Ok(false)
    }
    /// Extra time the operations since the last call took on a slow device. The Raft
    /// driver waits it out before its next step, as a blocking fsync would make it.
    fn take_stall(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Runs `job`, disk work that blocks on fsync, away from the task that calls it:
/// on tokio's blocking pool in real mode, so no runtime worker waits on the disk;
/// as an ordinary task in simulation, where there are no threads and the simulated
/// disk never blocks (its slowness is reported by [`Disk::take_stall`]).
pub fn spawn_disk_job<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> tokio::task::JoinHandle<R> {
    #[cfg(not(madsim))]
    return tokio::task::spawn_blocking(job);
    #[cfg(madsim)]
    return tokio::spawn(async move { job() });
}

/// A directory on the real file system, with `fsync` for durability.
pub struct FileDisk {
    dir: PathBuf,
    /// Open append handles, so the write path does not reopen files.
    appenders: Mutex<HashMap<String, Appender>>,
}

/// An open file and where its data ends: before the file's length once space is
/// reserved, so appends are positioned writes rather than `O_APPEND` ones.
struct Appender {
    file: File,
    end: u64,
}

impl FileDisk {
    /// Opens (creating if needed) the directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(FileDisk {
            dir,
            appenders: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid file name {name:?}"),
            ));
        }
        Ok(self.dir.join(name))
    }

    fn forget_appender(&self, name: &str) {
        self.appenders.lock().expect("appender lock").remove(name);
    }

    /// Runs `f` on the append handle of `name`, opening it (data ending at the
    /// file's length) the first time.
    fn with_appender<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Appender) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut appenders = self.appenders.lock().expect("appender lock");
        let appender = match appenders.entry(name.to_string()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            // The name is checked once, when its file is opened.
            std::collections::hash_map::Entry::Vacant(v) => {
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(self.path(name)?)?;
                let end = file.metadata()?.len();
                v.insert(Appender { file, end })
            }
        };
        f(appender)
    }
}

impl ReadDisk for FileDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(name)?)
    }
}

impl Disk for FileDisk {
    fn append(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.with_appender(name, |a| {
            a.file.write_all_at(data, a.end)?;
            a.end += data.len() as u64;
            Ok(())
        })
    }

    fn write(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.forget_appender(name);
        fs::write(self.path(name)?, data)
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.forget_appender(name);
        OpenOptions::new()
            .write(true)
            .open(self.path(name)?)?
            .set_len(len)
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        let appenders = self.appenders.lock().expect("appender lock");
        match appenders.get(name) {
            Some(appender) => appender.file.sync_data(),
            None => File::open(self.path(name)?)?.sync_all(),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.forget_appender(from);
        self.forget_appender(to);
        fs::rename(self.path(from)?, self.path(to)?)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.forget_appender(name);
        match fs::remove_file(self.path(name)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// A sparse extension (`ftruncate`): on ext4 it makes a 300-byte append and
    /// `fdatasync` about a third faster than one that lengthens the file, as
    /// `fallocate` does, with no new dependency and no space taken until written.
    fn reserve(&self, name: &str, len: u64) -> io::Result<bool> {
        self.with_appender(name, |a| {
            if a.file.metadata()?.len() < len {
                a.file.set_len(len)?;
            }
            Ok(true)
        })
    }
}

/// A disk in memory for unit tests: every write is immediately "durable" and
/// nothing survives the process. The simulator's disk, with crash semantics and
/// faults, lives in `sim/`.
#[cfg(test)]
#[derive(Default)]
pub struct MemDisk {
    files: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
}

#[cfg(test)]
impl MemDisk {
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(test)]
fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name:?}"))
}

#[cfg(test)]
impl ReadDisk for MemDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .lock()
            .expect("mem disk")
            .keys()
            .cloned()
            .collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.files
            .lock()
            .expect("mem disk")
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }
}

#[cfg(test)]
impl Disk for MemDisk {
    fn append(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut files = self.files.lock().expect("mem disk");
        files
            .entry(name.to_string())
            .or_default()
            .extend_from_slice(data);
        Ok(())
    }

    fn write(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.files
            .lock()
            .expect("mem disk")
            .insert(name.to_string(), data.to_vec());
        Ok(())
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut files = self.files.lock().expect("mem disk");
        let file = files.get_mut(name).ok_or_else(|| not_found(name))?;
        file.truncate(len as usize);
        Ok(())
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        if self.files.lock().expect("mem disk").contains_key(name) {
            Ok(())
        } else {
            Err(not_found(name))
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files.lock().expect("mem disk");
        let data = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_string(), data);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.files.lock().expect("mem disk").remove(name);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_truncate_rename_remove() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileDisk::open(dir.path()).unwrap();
        disk.append("a", b"hello ").unwrap();
        disk.append("a", b"world").unwrap();
        disk.sync("a").unwrap();
        assert_eq!(disk.read("a").unwrap(), b"hello world");
        disk.truncate("a", 5).unwrap();
        disk.append("a", b"!").unwrap();
        assert_eq!(disk.read("a").unwrap(), b"hello!");
        disk.write("b.tmp", b"x").unwrap();
        disk.rename("b.tmp", "b").unwrap();
        disk.sync_dir().unwrap();
        assert_eq!(disk.list().unwrap(), vec!["a".to_string(), "b".to_string()]);
        disk.remove("a").unwrap();
        disk.remove("a").unwrap();
        assert_eq!(disk.read("a").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(disk.read("../escape").is_err());
    }

    #[test]
    fn appends_to_a_reserved_file_go_after_the_data_until_it_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileDisk::open(dir.path()).unwrap();
        disk.append("a", b"head").unwrap();
        assert!(disk.reserve("a", 64).unwrap());
        disk.append("a", b"+tail").unwrap();
        disk.sync("a").unwrap();
        let mut expected = b"head+tail".to_vec();
        expected.resize(64, 0);
        assert_eq!(disk.read("a").unwrap(), expected);
        // Another process sees the zeros as part of the file, until cut off.
        let reopened = FileDisk::open(dir.path()).unwrap();
        assert_eq!(reopened.read("a").unwrap().len(), 64);
        reopened.truncate("a", 9).unwrap();
        reopened.append("a", b"!").unwrap();
        assert_eq!(reopened.read("a").unwrap(), b"head+tail!");
        // Reserving less than the file holds changes nothing.
        assert!(reopened.reserve("a", 4).unwrap());
        assert_eq!(reopened.read("a").unwrap(), b"head+tail!");
    }
}
