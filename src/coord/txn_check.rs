//! etcd's structural checks on a Txn, made before it is proposed (etcd v3.4,
//! `etcdserver/api/v3rpc/key.go`): at most [`MAX_TXN_OPS`] operations per level, and
//! within one branch (nested txns included) no key put twice or both put and deleted
//! — `etcdserver: duplicate key given in txn request`. Pure.

use std::collections::BTreeSet;

use super::errors::CoordError;
use crate::proto::etcdserverpb::{request_op, RequestOp, TxnRequest};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Refuses what etcd refuses before a txn reaches the log.
pub fn check_txn(txn: &TxnRequest) -> Result<(), CoordError> {
    check_op_counts(txn, MAX_TXN_OPS)?;
    check_branch_keys(&txn.success)?;
    check_branch_keys(&txn.failure)?;
    Ok(())
}

/// The largest of compares, success and failure counts the level; a nested txn
/// gets what its parent left.
fn check_op_counts(txn: &TxnRequest, max_ops: usize) -> Result<(), CoordError> {
    let ops = txn
        .compare
        .len()
        .max(txn.success.len())
        .max(txn.failure.len());
    if ops > max_ops {
        return Err(CoordError::TooManyOps);
    }
    for op in txn.success.iter().chain(&txn.failure) {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            check_op_counts(inner, max_ops - ops)?;
        }
    }
    Ok(())
}

/// A deleted range as etcd's interval tree holds it: `[begin, end)`, an empty `end`
/// above every key, a single key as `[key, key\0)`.
struct Deleted {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Deleted {
    fn of(key: &[u8], range_end: &[u8]) -> Deleted {
        let end = if range_end.is_empty() {
            [key, &[0]].concat()
        } else {
            range_end.to_vec()
        };
        Deleted {
            begin: key.to_vec(),
            end,
        }
    }

    /// etcd compares `end` as a plain string, so a from-key delete (`end` = "\0")
    /// covers no key here — as in etcd, which accepts such a txn.
    fn covers(&self, key: &[u8]) -> bool {
        !self.begin.is_empty()
            && self.begin.as_slice() <= key
            && (self.end.is_empty() || key < self.end.as_slice())
    }
}

fn deleted(dels: &[Deleted], key: &[u8]) -> bool {
    dels.iter().any(|d| d.covers(key))
}

/// etcd's `checkIntervals`: the keys a branch puts and the ranges it deletes,
/// refusing overlaps. The then and else branches of a nested txn exclude each other,
/// so they may put the same key.
fn check_branch_keys(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Deleted>), CoordError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => {
                Some(Deleted::of(&d.key, &d.range_end))
            }
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(inner)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_branch_keys(&inner.success)?;
        let (puts_else, dels_else) = check_branch_keys(&inner.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&dels, key) {
                return Err(CoordError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || deleted(&dels, &key) {
                return Err(CoordError::DuplicateKey);
            }
            puts.insert(key);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if deleted(&dels, &put.key) || !puts.insert(put.key.clone()) {
            return Err(CoordError::DuplicateKey);
        }
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, range_end: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    range_end: range_end.to_vec(),
                    ..Default::default()
                },
            )),
        }
    }

    fn get(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(txn(success, failure))),
        }
    }

    #[test]
    fn a_key_put_twice_or_put_and_deleted_in_one_branch_is_refused() {
        // `etcdctl txn` with "put a 1 / put a 2", "put a 1 / del a", "put p/a 1 / del --prefix p/".
        let dup = Err(CoordError::DuplicateKey);
        assert_eq!(check_txn(&txn(vec![put("a"), put("a")], vec![])), dup);
        assert_eq!(check_txn(&txn(vec![put("a"), del("a", b"")], vec![])), dup);
        assert_eq!(
            check_txn(&txn(vec![], vec![del("p/", b"p0"), put("p/a")])),
            dup
        );
        assert_eq!(
            check_txn(&txn(vec![put("a"), nested(vec![put("a")], vec![])], vec![])),
            dup
        );
        assert_eq!(
            check_txn(&txn(
                vec![del("a", b""), nested(vec![], vec![put("a")])],
                vec![]
            )),
            dup
        );
    }

    #[test]
    fn what_etcd_accepts_passes() {
        // Different branches, reads, neighbours of a deleted key, then/else of a
        // nested txn putting the same key, and (as in etcd) a from-key delete.
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")])), Ok(()));
        assert_eq!(
            check_txn(&txn(vec![get("a"), get("a"), put("a")], vec![])),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![del("a", b""), put("a0"), put("b")], vec![])),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![nested(vec![put("k")], vec![put("k")])], vec![])),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![del("a", &[0]), put("b")], vec![])),
            Ok(())
        );
    }

    #[test]
    fn more_than_max_txn_ops_at_a_level_is_refused() {
        let puts = |n: usize| (0..n).map(|i| put(&format!("k{i}"))).collect::<Vec<_>>();
        assert_eq!(check_txn(&txn(puts(MAX_TXN_OPS), vec![])), Ok(()));
        assert_eq!(
            check_txn(&txn(vec![], puts(MAX_TXN_OPS + 1))),
            Err(CoordError::TooManyOps)
        );
        // A nested txn gets what its parent left: 100 + 29 > 128.
        let inner = nested(puts(29), vec![]);
        let mut outer = puts(99);
        outer.push(inner);
        assert_eq!(check_txn(&txn(outer, vec![])), Err(CoordError::TooManyOps));
    }
}
