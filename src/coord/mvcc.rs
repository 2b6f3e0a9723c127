//! A multi-version keyspace with etcd v3's semantics: one global revision, every
//! write transaction takes the next revision; each key has a create revision, a mod
//! revision and a version (number of writes since creation, reset by deletion).
//! Reads can ask for any revision not yet compacted. Pure: no I/O, deterministic.
//!
//! The keyspace is a persistent map ([`imbl::OrdMap`]) of shared per-key histories:
//! a copy costs O(1), so a snapshot captures the store on the Raft loop and encodes
//! it elsewhere, while writes copy only the tree nodes and the one key's history
//! they touch, and only the first time after a copy.

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

/// A key's value at some revision (etcd `mvccpb.KeyValue`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// Errors with etcd's meanings (their gRPC messages are etcd's too).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MvccError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: empty key")]
    EmptyKey,
}

/// How a range sorts its result (etcd `RangeRequest.SortTarget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// What a range read asks for (etcd `RangeRequest`).
#[derive(Debug, Clone, Default)]
pub struct RangeQuery {
    pub key: Vec<u8>,
    /// Empty: just `key`; `[0]`: every key >= `key`; else `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// 0: the current revision.
    pub revision: i64,
    /// 0: no limit.
    pub limit: i64,
    pub keys_only: bool,
    pub count_only: bool,
    /// `None`: key order. `Some((target, descending))` sorts before `limit` applies.
    pub sort: Option<(SortTarget, bool)>,
    /// Keep only keys whose mod / create revision lies in these bounds (0: unbounded).
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl RangeQuery {
    fn admits(&self, kv: &KeyValue) -> bool {
        let within = |v: i64, min: i64, max: i64| (min == 0 || v >= min) && (max == 0 || v <= max);
        within(
            kv.mod_revision,
            self.min_mod_revision,
            self.max_mod_revision,
        ) && within(
            kv.create_revision,
            self.min_create_revision,
            self.max_create_revision,
        )
    }
}

/// What happened to a key at a revision (etcd `mvccpb.Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    /// `false`: a put; `true`: a deletion (then `kv` holds only key and mod revision).
    pub deleted: bool,
    pub kv: KeyValue,
    /// The key's value before this change, if it was live.
    pub prev: Option<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Keys in the range (ignoring `limit`).
    pub count: i64,
    /// More keys than `limit` returned.
    pub more: bool,
    /// The store's revision when read.
    pub revision: i64,
}

/// What a compare looks at (etcd `Compare.CompareTarget`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    /// As in a range: empty for one key; a range compare holds for every key in it.
    pub range_end: Vec<u8>,
    pub result: CompareResult,
    pub target: CompareTarget,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum TxnOp {
    Range(RangeQuery),
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
        prev_kv: bool,
        ignore_value: bool,
        ignore_lease: bool,
    },
    DeleteRange {
        key: Vec<u8>,
        range_end: Vec<u8>,
        prev_kv: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    Range(RangeResult),
    Put {
        prev_kv: Option<KeyValue>,
    },
    DeleteRange {
        deleted: i64,
        prev_kvs: Vec<KeyValue>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    pub responses: Vec<TxnOpResult>,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// What the transaction changed (all at `revision`), for watchers.
    pub changes: Vec<Change>,
}

/// One key's versions in revision order; `None` marks a deletion (tombstone).
pub type Versions = Vec<(i64, Option<KeyValue>)>;

/// Every key's versions: a persistent map, cheap to copy (see the module comment).
pub type History = imbl::OrdMap<Vec<u8>, Arc<Versions>>;

/// The keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MvccStore {
    history: History,
    revision: i64,
    compacted: i64,
}

impl Default for MvccStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MvccStore {
    /// An empty store at revision 1, like a new etcd cluster.
    pub fn new() -> Self {
        MvccStore {
            history: History::new(),
            revision: 1,
            compacted: 0,
        }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.compacted
    }

    /// The live value of `key` at revision `rev`.
    fn at(&self, key: &[u8], rev: i64) -> Option<&KeyValue> {
        let versions = self.history.get(key)?;
        let i = versions.partition_point(|(r, _)| *r <= rev);
        versions[..i].last()?.1.as_ref()
    }

    /// Keys (ever written, not compacted away) in `[start, end)` as etcd reads a
    /// range: empty `end` is the single key, `[0]` is every key from `start`.
    fn keys_in<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> Box<dyn Iterator<Item = &'a Vec<u8>> + 'a> {
        match end {
            [] => Box::new(
                self.history
                    .get_key_value(start)
                    .map(|(k, _)| k)
                    .into_iter(),
            ),
            [0] => Box::new(self.history.range(start.to_vec()..).map(|(k, _)| k)),
            _ if start < end => Box::new(
                self.history
                    .range(start.to_vec()..end.to_vec())
                    .map(|(k, _)| k),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// Reads a range at a revision.
    pub fn range(&self, q: &RangeQuery) -> Result<RangeResult, MvccError> {
        self.range_upto(q, self.revision)
    }

    /// Reads a range as if the store's revision were `head` (a transaction's reads
    /// see its own earlier writes, made at the next revision).
    fn range_upto(&self, q: &RangeQuery, head: i64) -> Result<RangeResult, MvccError> {
        let rev = if q.revision <= 0 { head } else { q.revision };
        if rev > head {
            return Err(MvccError::FutureRevision);
        }
        if rev < self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        let mut out = RangeResult {
            revision: head,
            ..Default::default()
        };
        let mut kvs: Vec<&KeyValue> = Vec::new();
        for key in self.keys_in(&q.key, &q.range_end) {
            let Some(kv) = self.at(key, rev) else {
                continue;
            };
            // etcd counts every live key of the range, filters or not.
            out.count += 1;
            if !q.count_only && q.admits(kv) {
                kvs.push(kv);
            }
        }
        if let Some((target, descending)) = q.sort {
            kvs.sort_by(|a, b| {
                let ord = match target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                };
                if descending {
                    ord.reverse()
                } else {
                    ord
                }
            });
        }
        if q.limit > 0 && kvs.len() as i64 > q.limit {
            out.more = true;
            kvs.truncate(q.limit as usize);
        }
        out.kvs = kvs
            .into_iter()
            .map(|kv| {
                let mut kv = kv.clone();
                if q.keys_only {
                    kv.value.clear();
                }
                kv
            })
            .collect();
        Ok(out)
    }

    /// Every change to keys in `[key, range_end)` at revisions `>= from`, in revision
    /// order (key order within a revision): a watch's history.
    pub fn changes_since(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
    ) -> Result<Vec<Change>, MvccError> {
        if from < self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        let mut out = Vec::new();
        for k in self.keys_in(key, range_end) {
            let versions = &self.history[k];
            let first = versions.partition_point(|(r, _)| *r < from);
            for i in first..versions.len() {
                let prev = i.checked_sub(1).and_then(|j| versions[j].1.clone());
                out.push(change(k, &versions[i], prev));
            }
        }
        out.sort_by_key(|c| c.revision);
        Ok(out)
    }

    /// Whether a compare holds at the current revision.
    pub fn compare_holds(&self, c: &Compare) -> bool {
        let check = |kv: Option<&KeyValue>| -> bool {
            use std::cmp::Ordering;
            let ord: Ordering = match &c.target {
                CompareTarget::Version(v) => kv.map_or(0, |k| k.version).cmp(v),
                CompareTarget::Create(v) => kv.map_or(0, |k| k.create_revision).cmp(v),
                CompareTarget::Mod(v) => kv.map_or(0, |k| k.mod_revision).cmp(v),
                CompareTarget::Lease(v) => kv.map_or(0, |k| k.lease).cmp(v),
                // A value compare on an absent key fails (etcd).
                CompareTarget::Value(v) => match kv {
                    Some(k) => k.value.as_slice().cmp(v.as_slice()),
                    None => return false,
                },
            };
            match c.result {
                CompareResult::Equal => ord == Ordering::Equal,
                CompareResult::Greater => ord == Ordering::Greater,
                CompareResult::Less => ord == Ordering::Less,
                CompareResult::NotEqual => ord != Ordering::Equal,
            }
        };
        if c.range_end.is_empty() {
            return check(self.at(&c.key, self.revision));
        }
        let keys: Vec<&Vec<u8>> = self.keys_in(&c.key, &c.range_end).collect();
        keys.into_iter()
            .filter_map(|k| self.at(k, self.revision))
            .all(|kv| check(Some(kv)))
    }

    /// Runs a transaction: compares at the current revision, then the success or
    /// failure branch. All writes of one transaction share one new revision.
    pub fn txn(
        &mut self,
        compares: &[Compare],
        success: &[TxnOp],
        failure: &[TxnOp],
    ) -> Result<TxnResult, MvccError> {
        let succeeded = compares.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded { success } else { failure };
        for op in ops {
            match op {
                TxnOp::Put { key, .. } | TxnOp::DeleteRange { key, .. } if key.is_empty() => {
                    return Err(MvccError::EmptyKey)
                }
                TxnOp::Put {
                    key,
                    ignore_value: true,
                    ..
                }
                | TxnOp::Put {
                    key,
                    ignore_lease: true,
                    ..
                } if self.at(key, self.revision).is_none() => return Err(MvccError::KeyNotFound),
                _ => {}
            }
        }
        let writes = ops.iter().any(|op| !matches!(op, TxnOp::Range(_)));
        let write_rev = self.revision + 1;
        let mut responses = Vec::with_capacity(ops.len());
        let mut touched: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            responses.push(match op {
                TxnOp::Range(q) => {
                    let head = if writes { write_rev } else { self.revision };
                    TxnOpResult::Range(self.range_upto(q, head)?)
                }
                TxnOp::Put {
                    key,
                    value,
                    lease,
                    prev_kv,
                    ignore_value,
                    ignore_lease,
                } => {
                    let prev = self.at(key, write_rev).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.as_ref().map_or(write_rev, |p| p.create_revision),
                        mod_revision: write_rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: if *ignore_value {
                            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
                        } else {
                            value.clone()
                        },
                        lease: if *ignore_lease {
                            prev.as_ref().map_or(0, |p| p.lease)
                        } else {
                            *lease
                        },
                    };
                    self.record(key, write_rev, Some(kv));
                    touched.push(key.clone());
                    TxnOpResult::Put {
                        prev_kv: if *prev_kv { prev } else { None },
                    }
                }
                TxnOp::DeleteRange {
                    key,
                    range_end,
                    prev_kv,
                } => {
                    let keys: Vec<Vec<u8>> = self.keys_in(key, range_end).cloned().collect();
                    let mut prev_kvs = Vec::new();
                    let mut deleted = 0;
                    for k in keys {
                        if let Some(prev) = self.at(&k, write_rev).cloned() {
                            deleted += 1;
                            self.record(&k, write_rev, None);
                            if *prev_kv {
                                prev_kvs.push(prev);
                            }
                            touched.push(k);
                        }
                    }
                    TxnOpResult::DeleteRange { deleted, prev_kvs }
                }
            });
        }
        let mut changes = Vec::new();
        // As etcd: only a change takes a revision; a delete that matched nothing is none.
        if !touched.is_empty() {
            self.revision = write_rev;
            for (key, versions) in touched.iter().filter_map(|k| self.history.get_key_value(k)) {
                if let Some(i) = versions.iter().rposition(|(r, _)| *r == write_rev) {
                    let prev = i.checked_sub(1).and_then(|j| versions[j].1.clone());
                    changes.push(change(key, &versions[i], prev));
                }
            }
            changes.sort_by(|a, b| a.kv.key.cmp(&b.kv.key));
            changes.dedup_by(|a, b| a.kv.key == b.kv.key);
        }
        Ok(TxnResult {
            succeeded,
            responses,
            revision: self.revision,
            changes,
        })
    }

    /// Every key's versions, for snapshots: a copy in O(1) that later writes to
    /// the store do not change.
    pub fn history(&self) -> History {
        self.history.clone()
    }

    /// Rebuilds a store from [`MvccStore::history`] and its revisions.
    pub fn from_parts(
        history: BTreeMap<Vec<u8>, Versions>,
        revision: i64,
        compacted: i64,
    ) -> Result<Self, String> {
        for (key, versions) in &history {
            let ordered = versions.windows(2).all(|w| w[0].0 < w[1].0);
            let bounded = versions.iter().all(|(r, _)| *r <= revision);
            if !ordered || !bounded {
                return Err(format!(
                    "key {:?}: versions out of order or beyond revision {revision}",
                    String::from_utf8_lossy(key)
                ));
            }
        }
        if compacted > revision {
            return Err(format!(
                "compact revision {compacted} beyond revision {revision}"
            ));
        }
        Ok(MvccStore {
            history: history.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            revision,
            compacted,
        })
    }

    /// Keys whose latest version is a value, not a deletion.
    pub fn live_keys(&self) -> usize {
        self.history
            .values()
            .filter(|versions| versions.last().is_some_and(|(_, kv)| kv.is_some()))
            .count()
    }

    /// Bytes of keys and values held, history included (etcd's "db size" analogue).
    pub fn size_bytes(&self) -> i64 {
        self.history
            .iter()
            .map(|(k, versions)| {
                let values: usize = versions
                    .iter()
                    .map(|(_, kv)| kv.as_ref().map_or(0, |kv| kv.value.len()) + 8)
                    .sum();
                (k.len() + values) as i64
            })
            .sum()
    }

    fn record(&mut self, key: &[u8], rev: i64, kv: Option<KeyValue>) {
        let versions = Arc::make_mut(self.history.entry(key.to_vec()).or_default());
        match versions.last_mut() {
            // A second write to the same key in one transaction replaces the first.
            Some((r, slot)) if *r == rev => *slot = kv,
            _ => versions.push((rev, kv)),
        }
    }

    /// Put outside a transaction.
    pub fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<(i64, Option<KeyValue>), MvccError> {
        let op = TxnOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            prev_kv: true,
            ignore_value: false,
            ignore_lease: false,
        };
        let r = self.txn(&[], &[op], &[])?;
        match r.responses.into_iter().next() {
            Some(TxnOpResult::Put { prev_kv }) => Ok((r.revision, prev_kv)),
            _ => unreachable!("a put answers a put"),
        }
    }

    /// Forgets versions older than `rev` that no read at or after `rev` can see.
    pub fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted,
            });
        }
        if rev > self.revision {
            return Err(MvccError::FutureRevision);
        }
        // Find what each key loses first, then copy only those histories (see
        // `History`).
        let mut losses = Vec::new();
        for (key, versions) in self.history.iter() {
            let visible = versions.partition_point(|(r, _)| *r <= rev);
            // Keep the version visible at `rev` (unless it is a tombstone older than
            // `rev`: a watch may start at `rev` itself and must see that deletion).
            let keep_from = visible.saturating_sub(1);
            let drop_visible = versions
                .get(keep_from)
                .is_some_and(|(r, kv)| *r < rev && kv.is_none());
            let dropped = keep_from + usize::from(drop_visible);
            if dropped > 0 {
                losses.push((key.clone(), dropped));
            }
        }
        for (key, dropped) in losses {
            let Some(versions) = self.history.get_mut(&key) else {
                continue;
            };
            if dropped == versions.len() {
                self.history.remove(&key);
            } else {
                Arc::make_mut(versions).drain(..dropped);
            }
        }
        self.compacted = rev;
        Ok(())
    }
}

fn change(key: &[u8], (revision, kv): &(i64, Option<KeyValue>), prev: Option<KeyValue>) -> Change {
    match kv {
        Some(kv) => Change {
            revision: *revision,
            deleted: false,
            kv: kv.clone(),
            prev,
        },
        None => Change {
            revision: *revision,
            deleted: true,
            kv: KeyValue {
                key: key.to_vec(),
                mod_revision: *revision,
                ..Default::default()
            },
            prev,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(s: &MvccStore, key: &str, rev: i64) -> Result<Option<KeyValue>, MvccError> {
        let q = RangeQuery {
            key: key.as_bytes().to_vec(),
            revision: rev,
            ..Default::default()
        };
        Ok(s.range(&q)?.kvs.into_iter().next())
    }

    fn range(s: &MvccStore, start: &str, end: &[u8]) -> RangeResult {
        s.range(&RangeQuery {
            key: start.as_bytes().to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        })
        .unwrap()
    }

    /// Every key's versions, copied out of the persistent map.
    fn deep_copy(history: &History) -> BTreeMap<Vec<u8>, Versions> {
        history
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().clone()))
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Step {
        Put(u8, u8),
        Delete(u8),
        Compact,
        Capture,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
            2 => (0u8..6).prop_map(Step::Delete),
            1 => Just(Step::Compact),
            2 => Just(Step::Capture),
        ]
    }

    fn run(s: &mut MvccStore, step: &Step) {
        match step {
            Step::Put(k, v) => {
                s.put(&[b'k', *k], &[*v], 0).unwrap();
            }
            Step::Delete(k) => {
                let del = TxnOp::DeleteRange {
                    key: vec![b'k', *k],
                    range_end: vec![],
                    prev_kv: false,
                };
                s.txn(&[], &[del], &[]).unwrap();
            }
            Step::Compact => {
                let _ = s.compact(s.revision());
            }
            Step::Capture => {}
        }
    }

    proptest::proptest! {
        /// A captured history (a snapshot being encoded) keeps the versions it had
        /// however the store changes after, and capturing changes nothing in the
        /// store: it equals one that ran the same steps with no capture.
        #[test]
        fn a_captured_history_is_unchanged_by_later_writes(
            steps in proptest::collection::vec(step(), 1..80)
        ) {
            let mut store = MvccStore::new();
            let mut uncaptured = MvccStore::new();
            let mut captures = Vec::new();
            for step in &steps {
                run(&mut store, step);
                run(&mut uncaptured, step);
                if matches!(step, Step::Capture) {
                    let history = store.history();
                    captures.push((deep_copy(&history), history));
                }
            }
            for (copied, captured) in &captures {
                proptest::prop_assert_eq!(copied, &deep_copy(captured));
            }
            proptest::prop_assert_eq!(deep_copy(&store.history), deep_copy(&uncaptured.history));
            proptest::prop_assert_eq!(store.revision(), uncaptured.revision());
        }
    }

    #[test]
    fn revisions_versions_and_history_follow_etcd() {
        let mut s = MvccStore::new();
        assert_eq!(s.revision(), 1);
        let (rev, prev) = s.put(b"a", b"1", 0).unwrap();
        assert_eq!((rev, prev), (2, None));
        s.put(b"a", b"2", 0).unwrap();
        let kv = get(&s, "a", 0).unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        assert_eq!(get(&s, "a", 2).unwrap().unwrap().value, b"1");
        let del = TxnOp::DeleteRange {
            key: b"a".to_vec(),
            range_end: vec![],
            prev_kv: true,
        };
        let r = s.txn(&[], &[del], &[]).unwrap();
        assert_eq!(r.revision, 4);
        assert!(get(&s, "a", 0).unwrap().is_none());
        // Re-created: version restarts, new create revision.
        s.put(b"a", b"3", 0).unwrap();
        let kv = get(&s, "a", 0).unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.version), (5, 1));
        assert_eq!(get(&s, "a", 99), Err(MvccError::FutureRevision));
    }

    #[test]
    fn a_delete_that_matches_nothing_takes_no_revision() {
        // `etcdctl del nothing` (and a txn whose only write is such a delete) leaves
        // etcd's revision where it was.
        let mut s = MvccStore::new();
        s.put(b"a", b"1", 0).unwrap();
        let del = |k: &str| TxnOp::DeleteRange {
            key: k.as_bytes().to_vec(),
            range_end: vec![],
            prev_kv: false,
        };
        let r = s.txn(&[], &[del("nothing")], &[]).unwrap();
        assert_eq!((r.revision, s.revision()), (2, 2));
        assert!(r.changes.is_empty());
        let r = s.txn(&[], &[del("nothing"), del("a")], &[]).unwrap();
        assert_eq!(r.revision, 3, "a real delete still takes one");
    }

    #[test]
    fn ranges_prefixes_limits_and_counts() {
        let mut s = MvccStore::new();
        for k in ["a", "b/1", "b/2", "b/3", "c"] {
            s.put(k.as_bytes(), b"v", 0).unwrap();
        }
        assert_eq!(range(&s, "b/", b"b0").count, 3);
        assert_eq!(range(&s, "b", &[0]).count, 4);
        let limited = s
            .range(&RangeQuery {
                key: b"a".to_vec(),
                range_end: vec![0],
                limit: 2,
                keys_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            (limited.kvs.len(), limited.count, limited.more),
            (2, 5, true)
        );
        assert!(limited.kvs[0].value.is_empty());
    }

    #[test]
    fn txn_compares_choose_the_branch_and_share_one_revision() {
        let mut s = MvccStore::new();
        s.put(b"k", b"v1", 0).unwrap();
        let cmp = |target| Compare {
            key: b"k".to_vec(),
            range_end: vec![],
            result: CompareResult::Equal,
            target,
        };
        let put = |k: &str| TxnOp::Put {
            key: k.as_bytes().to_vec(),
            value: b"x".to_vec(),
            lease: 0,
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
        };
        let r = s
            .txn(
                &[cmp(CompareTarget::Value(b"v1".to_vec()))],
                &[put("x"), put("y")],
                &[],
            )
            .unwrap();
        assert!(r.succeeded);
        assert_eq!(r.revision, 3);
        assert_eq!(get(&s, "x", 0).unwrap().unwrap().mod_revision, 3);
        assert_eq!(get(&s, "y", 0).unwrap().unwrap().mod_revision, 3);
        let r = s
            .txn(&[cmp(CompareTarget::Version(5))], &[put("z")], &[])
            .unwrap();
        assert!(!r.succeeded);
        assert_eq!(
            r.revision, 3,
            "a failed branch without writes takes no revision"
        );
        // A compare on an absent key: create revision 0.
        let absent = Compare {
            key: b"nope".to_vec(),
            range_end: vec![],
            result: CompareResult::Equal,
            target: CompareTarget::Create(0),
        };
        assert!(s.txn(&[absent], &[], &[]).unwrap().succeeded);
    }

    #[test]
    fn reads_in_a_txn_see_its_earlier_writes_and_range_compares_cover_every_key() {
        let mut s = MvccStore::new();
        s.put(b"p/1", b"1", 0).unwrap();
        s.put(b"p/2", b"1", 0).unwrap();
        let all_v1 = Compare {
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
            result: CompareResult::Equal,
            target: CompareTarget::Version(1),
        };
        let ops = [
            TxnOp::Put {
                key: b"p/3".to_vec(),
                value: b"new".to_vec(),
                lease: 0,
                prev_kv: false,
                ignore_value: false,
                ignore_lease: false,
            },
            TxnOp::Range(RangeQuery {
                key: b"p/".to_vec(),
                range_end: b"p0".to_vec(),
                ..Default::default()
            }),
        ];
        let r = s.txn(std::slice::from_ref(&all_v1), &ops, &[]).unwrap();
        assert!(r.succeeded);
        match &r.responses[1] {
            TxnOpResult::Range(range) => {
                assert_eq!(range.count, 3, "the range saw the put before it")
            }
            other => panic!("unexpected {other:?}"),
        }
        s.put(b"p/1", b"2", 0).unwrap();
        assert!(
            !s.txn(&[all_v1], &[], &[]).unwrap().succeeded,
            "p/1 is at version 2 now"
        );
    }

    #[test]
    fn compaction_keeps_what_later_reads_need() {
        let mut s = MvccStore::new();
        s.put(b"a", b"1", 0).unwrap(); // 2
        s.put(b"a", b"2", 0).unwrap(); // 3
        s.put(b"b", b"1", 0).unwrap(); // 4
        s.compact(3).unwrap();
        assert_eq!(
            get(&s, "a", 2),
            Err(MvccError::Compacted {
                compact_revision: 3
            })
        );
        assert_eq!(get(&s, "a", 3).unwrap().unwrap().value, b"2");
        assert_eq!(get(&s, "b", 0).unwrap().unwrap().value, b"1");
        assert_eq!(
            s.compact(2),
            Err(MvccError::Compacted {
                compact_revision: 3
            })
        );
        assert_eq!(s.compact(10), Err(MvccError::FutureRevision));
    }

    #[test]
    fn ignore_value_needs_an_existing_key() {
        let mut s = MvccStore::new();
        let op = TxnOp::Put {
            key: b"k".to_vec(),
            value: vec![],
            lease: 7,
            prev_kv: false,
            ignore_value: true,
            ignore_lease: false,
        };
        assert_eq!(
            s.txn(&[], std::slice::from_ref(&op), &[]),
            Err(MvccError::KeyNotFound)
        );
        s.put(b"k", b"keep", 0).unwrap();
        s.txn(&[], &[op], &[]).unwrap();
        let kv = get(&s, "k", 0).unwrap().unwrap();
        assert_eq!((kv.value.as_slice(), kv.lease), (&b"keep"[..], 7));
    }

    #[test]
    fn sorting_filters_and_changes_since() {
        let mut s = MvccStore::new();
        for k in ["l/a", "l/b", "l/c"] {
            s.put(k.as_bytes(), b"v", 0).unwrap();
        }
        // The lock queue read: highest create revision below 4, one result.
        let q = RangeQuery {
            key: b"l/".to_vec(),
            range_end: b"l0".to_vec(),
            max_create_revision: 3,
            sort: Some((SortTarget::Create, true)),
            limit: 1,
            ..Default::default()
        };
        let r = s.range(&q).unwrap();
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].key, b"l/b");
        assert!(r.more);
        assert_eq!(r.count, 3, "count ignores filters, as etcd's does");
        let del = TxnOp::DeleteRange {
            key: b"l/a".to_vec(),
            range_end: vec![],
            prev_kv: false,
        };
        let t = s.txn(&[], &[del], &[]).unwrap();
        assert_eq!(t.changes.len(), 1);
        assert!(t.changes[0].deleted);
        assert_eq!(t.changes[0].prev.as_ref().unwrap().value, b"v");
        let changes = s.changes_since(b"l/", b"l0", 3).unwrap();
        let revs: Vec<(i64, bool)> = changes.iter().map(|c| (c.revision, c.deleted)).collect();
        assert_eq!(revs, vec![(3, false), (4, false), (5, true)]);
        s.compact(5).unwrap();
        assert!(s.changes_since(b"l/", b"l0", 4).is_err());
        // The deletion at the compact revision itself is still visible to a watch.
        assert_eq!(s.changes_since(b"l/", b"l0", 5).unwrap().len(), 1);
    }
}
