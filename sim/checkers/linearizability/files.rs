//! Deciding a history file, as `lincheck` does: detect the format (Porcupine's
//! key/value lines or a Jepsen etcd log), split it into per-key partitions and
//! decide each — sequentially and deterministically ([`decide`]), or on worker
//! threads that stop at the first partition that fails ([`decide_parallel`]).
//!
//! Only the verdict is computed here: no shrinking, which is for reports.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::histories::{self, CasOp, KvOp};
use super::models::{CasRegister, KvModel};
use super::wgl::search;

/// One independent object of a history (P-compositionality): a key's operations.
pub enum Partition {
    Kv(String, Vec<KvOp>),
    Register(String, Vec<CasOp>),
}

impl Partition {
    pub fn len(&self) -> usize {
        match self {
            Partition::Kv(_, ops) => ops.len(),
            Partition::Register(_, ops) => ops.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this key's history is linearizable; `None` when `max_steps` ran
    /// out or `cancel` was raised first.
    pub fn decide(&self, max_steps: u64, cancel: Option<&AtomicBool>) -> Option<bool> {
        match self {
            Partition::Kv(_, ops) => search(&KvModel, ops, max_steps, cancel),
            Partition::Register(_, ops) => search(&CasRegister, ops, max_steps, cancel),
        }
    }
}

/// Parses a history file into per-key partitions, smallest first (a cheap key
/// that fails ends the check early). An empty file is an empty history.
pub fn partitions(text: &str) -> Result<Vec<Partition>, String> {
    let mut parts: Vec<Partition> = if text.contains("jepsen.util") {
        let ops = histories::parse_etcd_log(text)?;
        vec![Partition::Register(String::new(), ops)]
    } else if text.trim_start().starts_with('{') {
        histories::parse_kv(text)?
            .into_iter()
            .map(|(key, ops)| Partition::Kv(key, ops))
            .collect()
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        return Err(
            "neither a key/value history ({:process …} lines) nor a Jepsen etcd log".into(),
        );
    };
    parts.sort_by_key(Partition::len);
    Ok(parts)
}

/// Decides a history file on this thread, partition by partition, stopping at
/// the first that is not linearizable. `Ok(None)`: a partition needed more than
/// `max_steps` search steps.
pub fn decide(text: &str, max_steps: u64) -> Result<Option<bool>, String> {
    let mut undecided = false;
    for part in partitions(text)? {
        match part.decide(max_steps, None) {
            Some(true) => {}
            Some(false) => return Ok(Some(false)),
            None => undecided = true,
        }
    }
    Ok((!undecided).then_some(true))
}

/// Decides a history file on `threads` worker threads (std threads: for tools
/// outside the simulator only). Workers take partitions smallest first; the first
/// that fails raises `stop`, which ends the others' searches. The caller may raise
/// `stop` too (a timeout): `Ok(None)` then, unless a failure was already found.
pub fn decide_parallel(
    text: &str,
    threads: usize,
    stop: &AtomicBool,
) -> Result<Option<bool>, String> {
    let parts = partitions(text)?;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, parts.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= parts.len() || stop.load(Ordering::Relaxed) {
                    return;
                }
                // A stopped search returns None; `failed` tells the two apart.
                if parts[i].decide(u64::MAX, Some(stop)) == Some(false) {
                    failed.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
    });
    if failed.load(Ordering::Relaxed) {
        Ok(Some(false))
    } else if stop.load(Ordering::Relaxed) {
        Ok(None)
    } else {
        Ok(Some(true))
    }
}
