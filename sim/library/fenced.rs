//! The fenced resource guarded by a library lock: a harness object (no network),
//! one per lock name, that accepts a write only if its fencing token is at least the
//! highest it has accepted — the storage-side half of fencing (Kleppmann, "How to do
//! distributed locking").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct FencedResources {
    highest: Arc<Mutex<BTreeMap<String, i64>>>,
}

impl FencedResources {
    /// Writes to `lock`'s resource with `token`: whether it was accepted, and the
    /// highest token accepted before.
    pub fn write(&self, lock: &str, token: i64) -> (bool, i64) {
        let mut highest = self.highest.lock().unwrap_or_else(|p| p.into_inner());
        let top = highest.entry(lock.to_string()).or_insert(0);
        let before = *top;
        if token < before {
            return (false, before);
        }
        *top = token;
        (true, before)
    }
}
