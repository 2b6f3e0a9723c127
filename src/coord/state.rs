//! The coordination service's replicated state: the MVCC keyspace, the lease table
//! and the auth store, changed only by applying [`CoordCommand`]s from the log. Each
//! applied change is published to this member's watchers before the lock is released.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message as _;

use super::auth::AuthStore;
use super::convert::{self, compares, kv_to_proto, txn_ops};
use super::errors::CoordError;
use super::leases::LeaseTable;
use super::mvcc::{MvccStore, RangeQuery, TxnOp, TxnOpResult, TxnResult};
use super::watch_hub::WatchHub;
use crate::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    ResponseHeader, TxnResponse,
};
use crate::proto::{
    coord_answer::Answer, coord_command::Op, CoordAnswer, CoordCommand, CoordSnapshot, KeyHistory,
    KeyVersion, LeaseRecord,
};
use crate::seams::observer::{Event, Observer};

pub struct CoordState {
    pub mvcc: MvccStore,
    pub leases: LeaseTable,
    pub auth: AuthStore,
    pub hub: WatchHub,
    member_id: u64,
    observer: Arc<dyn Observer>,
}

/// The state shared by the Raft state machine (which applies) and the services
/// (which read and watch).
#[derive(Clone)]
pub struct SharedCoordState(Arc<Mutex<CoordState>>);

impl SharedCoordState {
    pub fn new(member_id: u64, observer: Arc<dyn Observer>) -> Self {
        SharedCoordState(Arc::new(Mutex::new(CoordState {
            mvcc: MvccStore::new(),
            leases: LeaseTable::default(),
            auth: AuthStore::default(),
            hub: WatchHub::new(member_id),
            member_id,
            observer,
        })))
    }

    /// Locks the state (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, CoordState> {
        // A panic while applying already stops the node; the data is still coherent
        // for readers that outlive it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CoordState {
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.observer.clone()
    }

    pub fn header(&self) -> ResponseHeader {
        ResponseHeader {
            member_id: self.member_id,
            revision: self.mvcc.revision(),
            ..Default::default()
        }
    }

    /// Applies one command from the log at `index`.
    pub fn apply(&mut self, index: u64, cmd: CoordCommand) -> CoordAnswer {
        let answer = match cmd.op {
            Some(op) => match self.apply_op(op) {
                Ok(a) => a,
                Err(e) => Answer::Error(e.to_proto()),
            },
            None => Answer::Error(
                CoordError::Other {
                    code: tonic::Code::InvalidArgument as i32,
                    message: "etcdserver: empty coordination command".into(),
                }
                .to_proto(),
            ),
        };
        self.observer.observe(
            self.member_id,
            &Event::CoordApplied {
                index,
                revision: self.mvcc.revision(),
            },
        );
        CoordAnswer {
            answer: Some(answer),
        }
    }

    fn apply_op(&mut self, op: Op) -> Result<Answer, CoordError> {
        Ok(match op {
            Op::Put(p) => {
                let op = TxnOp::Put {
                    key: p.key,
                    value: p.value,
                    lease: p.lease,
                    prev_kv: p.prev_kv,
                    ignore_value: p.ignore_value,
                    ignore_lease: p.ignore_lease,
                };
                let r = self.write(vec![op])?;
                let prev_kv = match r.responses.into_iter().next() {
                    Some(TxnOpResult::Put { prev_kv }) => prev_kv.map(kv_to_proto),
                    _ => None,
                };
                Answer::Put(PutResponse {
                    header: Some(self.header()),
                    prev_kv,
                })
            }
            Op::DeleteRange(d) => {
                let op = TxnOp::DeleteRange {
                    key: d.key,
                    range_end: d.range_end,
                    prev_kv: d.prev_kv,
                };
                let r = self.write(vec![op])?;
                let (deleted, prev_kvs) = match r.responses.into_iter().next() {
                    Some(TxnOpResult::DeleteRange { deleted, prev_kvs }) => (deleted, prev_kvs),
                    _ => (0, Vec::new()),
                };
                Answer::DeleteRange(DeleteRangeResponse {
                    header: Some(self.header()),
                    deleted,
                    prev_kvs: prev_kvs.into_iter().map(kv_to_proto).collect(),
                })
            }
            Op::Txn(t) => {
                let cs = compares(&t.compare);
                let succeeded = cs.iter().all(|c| self.mvcc.compare_holds(c));
                let success = txn_ops(&t.success)?;
                let failure = txn_ops(&t.failure)?;
                self.check_leases(if succeeded { &success } else { &failure })?;
                let r = self.mvcc.txn(&cs, &success, &failure)?;
                self.settle(&r);
                let header = self.header();
                Answer::Txn(TxnResponse {
                    succeeded: r.succeeded,
                    responses: convert::txn_responses(r.responses, &header),
                    header: Some(header),
                })
            }
            Op::Compaction(c) => {
                self.mvcc.compact(c.revision)?;
                Answer::Compaction(CompactionResponse {
                    header: Some(self.header()),
                })
            }
            Op::LeaseGrant(g) => {
                if g.id <= 0 {
                    return Err(CoordError::Other {
                        code: tonic::Code::InvalidArgument as i32,
                        message: "etcdserver: lease id must be chosen before proposing".into(),
                    });
                }
                if !self.leases.grant(g.id, g.ttl) {
                    return Err(CoordError::LeaseExist);
                }
                Answer::LeaseGrant(LeaseGrantResponse {
                    header: Some(self.header()),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                })
            }
            Op::LeaseRevoke(r) => {
                self.remove_lease(r.id, false)?;
                Answer::LeaseRevoke(LeaseRevokeResponse {
                    header: Some(self.header()),
                })
            }
            Op::LeaseExpired(e) => {
                self.remove_lease(e.id, true)?;
                Answer::Done(self.header())
            }
            Op::Auth(a) => {
                let op = a.op.ok_or(CoordError::Other {
                    code: tonic::Code::InvalidArgument as i32,
                    message: "etcdserver: empty auth command".into(),
                })?;
                self.auth.apply(op)?;
                Answer::Done(self.header())
            }
        })
    }

    /// Puts must name a live lease (or none).
    fn check_leases(&self, ops: &[TxnOp]) -> Result<(), CoordError> {
        for op in ops {
            if let TxnOp::Put {
                lease,
                ignore_lease: false,
                ..
            } = op
            {
                if *lease != 0 && !self.leases.contains(*lease) {
                    return Err(CoordError::LeaseNotFound);
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, ops: Vec<TxnOp>) -> Result<TxnResult, CoordError> {
        self.check_leases(&ops)?;
        let r = self.mvcc.txn(&[], &ops, &[])?;
        self.settle(&r);
        Ok(r)
    }

    /// Keeps lease attachments and watchers in step with a write.
    fn settle(&mut self, r: &TxnResult) {
        self.leases.follow(&r.changes);
        self.hub.publish(&r.changes);
    }

    /// Deletes a lease's keys in one revision, then the lease.
    fn remove_lease(&mut self, id: i64, expired: bool) -> Result<(), CoordError> {
        let keys = self.leases.remove(id).ok_or(CoordError::LeaseNotFound)?;
        let ops: Vec<TxnOp> = keys
            .into_iter()
            .map(|key| TxnOp::DeleteRange {
                key,
                range_end: Vec::new(),
                prev_kv: false,
            })
            .collect();
        if !ops.is_empty() {
            let r = self.mvcc.txn(&[], &ops, &[])?;
            self.settle(&r);
        }
        self.observer.observe(
            self.member_id,
            &Event::LeaseRemoved {
                lease: id,
                expired,
                revision: self.mvcc.revision(),
            },
        );
        Ok(())
    }

    pub fn snapshot(&self) -> Vec<u8> {
        CoordSnapshot {
            revision: self.mvcc.revision(),
            compact_revision: self.mvcc.compact_revision(),
            keys: self
                .mvcc
                .history()
                .map(|(key, versions)| KeyHistory {
                    key: key.clone(),
                    versions: versions
                        .iter()
                        .map(|(rev, kv)| KeyVersion {
                            revision: *rev,
                            kv: kv.clone().map(kv_to_proto),
                        })
                        .collect(),
                })
                .collect(),
            leases: self
                .leases
                .iter()
                .map(|(id, l)| LeaseRecord { id, ttl: l.ttl })
                .collect(),
            auth: Some(self.auth.snapshot()),
        }
        .encode_to_vec()
    }

    /// Replaces the state with a snapshot (an empty one is the initial state);
    /// watchers catch up from it.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap = if bytes.is_empty() {
            CoordSnapshot {
                revision: 1,
                ..Default::default()
            }
        } else {
            CoordSnapshot::decode(bytes).map_err(|e| format!("coordination snapshot: {e}"))?
        };
        let history: BTreeMap<_, _> = snap
            .keys
            .into_iter()
            .map(|k| {
                let versions = k
                    .versions
                    .into_iter()
                    .map(|v| (v.revision, v.kv.map(convert::kv_from_proto)))
                    .collect();
                (k.key, versions)
            })
            .collect();
        let mvcc = MvccStore::from_parts(history, snap.revision, snap.compact_revision)
            .map_err(|e| format!("coordination snapshot: {e}"))?;
        let mut leases = LeaseTable::default();
        for l in &snap.leases {
            leases.grant(l.id, l.ttl);
        }
        let live = mvcc
            .range(&RangeQuery {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .map_err(|e| format!("coordination snapshot: {e}"))?;
        let attach: Vec<_> = live
            .kvs
            .into_iter()
            .map(|kv| super::mvcc::Change {
                revision: kv.mod_revision,
                deleted: false,
                kv,
                prev: None,
            })
            .collect();
        leases.follow(&attach);
        self.mvcc = mvcc;
        self.leases = leases;
        self.auth = AuthStore::restore(snap.auth.unwrap_or_default());
        self.hub.catch_up(&self.mvcc);
        Ok(())
    }
}

/// Decodes a replicated answer into the response it carries, or its error.
pub fn answer_result(bytes: &[u8]) -> Result<Answer, CoordError> {
    let answer = CoordAnswer::decode(bytes)
        .ok()
        .and_then(|a| a.answer)
        .ok_or_else(|| CoordError::Other {
            code: tonic::Code::Internal as i32,
            message: "etcdserver: malformed answer from the state machine".into(),
        })?;
    match answer {
        Answer::Error(e) => Err(CoordError::from_proto(&e)),
        other => Ok(other),
    }
}
