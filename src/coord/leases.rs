//! The replicated lease table: which leases exist, their granted TTLs, and which
//! keys are attached to each. Pure and deterministic. When a lease *expires* is not
//! decided here: only the leader's [`super::lessor::Lessor`] decides that, and its
//! decision reaches every replica as a log entry.

use std::collections::{BTreeMap, BTreeSet};

use super::mvcc::Change;

/// etcd's minimum TTL for this cluster's election timeout (1 s): 1.5 × election
/// timeout, rounded up, so a leader change cannot expire a fresh lease.
pub const MIN_TTL_SECS: i64 = 2;
/// etcd's upper bound on a TTL (9,000,000,000 s).
pub const MAX_TTL_SECS: i64 = 9_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
}

impl LeaseTable {
    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Leases granted and not yet removed.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Leases by id, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Lease)> {
        self.leases.iter().map(|(id, l)| (*id, l))
    }

    /// Adds a lease; `false` if `id` is taken.
    pub fn grant(&mut self, id: i64, ttl: i64) -> bool {
        if self.leases.contains_key(&id) {
            return false;
        }
        self.leases.insert(
            id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        true
    }

    /// Removes a lease, returning its keys.
    pub fn remove(&mut self, id: i64) -> Option<BTreeSet<Vec<u8>>> {
        self.leases.remove(&id).map(|l| l.keys)
    }

    /// Moves keys between leases as a write changed them.
    pub fn follow(&mut self, changes: &[Change]) {
        for c in changes {
            if let Some(prev) = c.prev.as_ref().filter(|p| p.lease != 0) {
                if let Some(l) = self.leases.get_mut(&prev.lease) {
                    l.keys.remove(&c.kv.key);
                }
            }
            if !c.deleted && c.kv.lease != 0 {
                if let Some(l) = self.leases.get_mut(&c.kv.lease) {
                    l.keys.insert(c.kv.key.clone());
                }
            }
        }
    }
}

/// The TTL a grant asks for, clamped as etcd does (too large is an error).
pub fn effective_ttl(requested: i64) -> Option<i64> {
    if requested > MAX_TTL_SECS {
        return None;
    }
    Some(requested.max(MIN_TTL_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::mvcc::KeyValue;

    fn put(key: &str, lease: i64, prev_lease: Option<i64>) -> Change {
        Change {
            revision: 2,
            deleted: false,
            kv: KeyValue {
                key: key.into(),
                lease,
                ..Default::default()
            },
            prev: prev_lease.map(|l| KeyValue {
                key: key.into(),
                lease: l,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn keys_follow_their_lease() {
        let mut t = LeaseTable::default();
        assert!(t.grant(7, 10));
        assert!(t.grant(8, 10));
        assert!(!t.grant(7, 5), "ids are unique");
        t.follow(&[put("a", 7, None), put("b", 7, None)]);
        t.follow(&[put("a", 8, Some(7))]);
        assert_eq!(t.get(7).unwrap().keys.len(), 1);
        assert!(t.get(8).unwrap().keys.contains(b"a".as_slice()));
        let mut del = put("b", 0, Some(7));
        del.deleted = true;
        t.follow(&[del]);
        assert!(t.get(7).unwrap().keys.is_empty());
        assert_eq!(t.remove(8).unwrap().len(), 1);
        assert!(!t.contains(8));
    }

    #[test]
    fn ttl_is_clamped_like_etcd() {
        assert_eq!(effective_ttl(0), Some(MIN_TTL_SECS));
        assert_eq!(effective_ttl(60), Some(60));
        assert_eq!(effective_ttl(MAX_TTL_SECS + 1), None);
    }
}
