//! The coordination service's replicated state: the MVCC keyspace, the lease table
//! and the auth store, changed only by applying [`CoordCommand`]s from the log. Each
//! applied change is published to this member's watchers before the lock is released.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message as _;

use super::applied_writes::{AppliedWrites, Seen};
use super::auth::{Access, AuthStore};
use super::convert::{self, compares, kv_to_proto, txn_ops};
use super::errors::CoordError;
use super::leases::LeaseTable;
use super::mvcc::{MvccStore, RangeQuery, TxnOp, TxnOpResult, TxnResult};
use super::watch_hub::WatchHub;
use crate::proto::etcdserverpb::{
    self as pb, request_op, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
};
use crate::proto::{
    auth_command::Op as AuthOp, coord_answer::Answer, coord_command::Op, AuthCommand, CoordAnswer,
    CoordCommand, CoordSnapshot, KeyHistory, KeyVersion, LeaseRecord,
};
use crate::seams::observer::{Event, Observer};

pub struct CoordState {
    pub mvcc: MvccStore,
    pub leases: LeaseTable,
    pub auth: AuthStore,
    pub hub: WatchHub,
    pub applied_writes: AppliedWrites,
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
            applied_writes: AppliedWrites::default(),
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

    /// Applies one command from the log at `index`; a client's request applied
    /// already is answered as the first time, not applied again.
    pub fn apply(&mut self, index: u64, cmd: CoordCommand) -> CoordAnswer {
        let write_id = cmd.write_id.filter(|id| id.client != 0);
        let answer = match write_id.as_ref().map(|id| self.applied_writes.seen(id)) {
            Some(Seen::Retry(answer)) => answer,
            Some(Seen::Overtaken { latest }) => CoordAnswer {
                answer: Some(Answer::Error(
                    CoordError::WriteOvertaken { latest }.to_proto(),
                )),
            },
            Some(Seen::Fresh) | None => {
                let answer = CoordAnswer {
                    answer: Some(self.apply_command(cmd)),
                };
                if let Some(id) = &write_id {
                    self.applied_writes.remember(id, index, &answer);
                }
                answer
            }
        };
        self.observer.observe(
            self.member_id,
            &Event::CoordApplied {
                index,
                revision: self.mvcc.revision(),
            },
        );
        answer
    }

    fn apply_command(&mut self, cmd: CoordCommand) -> Answer {
        match cmd.op {
            Some(op) => match self
                .authorize(&op, &cmd.token)
                .and_then(|()| self.apply_op(op))
            {
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

    /// Whether the token's user may do `op` (auth off: anyone). Judged at apply
    /// time, so every replica decides alike, on the auth state of this log position.
    fn authorize(&self, op: &Op, token: &str) -> Result<(), CoordError> {
        if !self.auth.enabled() {
            return Ok(());
        }
        if matches!(
            op,
            Op::LeaseExpired(_)
                | Op::Auth(AuthCommand {
                    op: Some(AuthOp::IssueToken(_))
                })
        ) {
            // Decided by the cluster itself, not a client.
            return Ok(());
        }
        if token.is_empty() {
            return Err(CoordError::UserEmpty);
        }
        let user = self
            .auth
            .user_of_token(token)
            .ok_or(CoordError::InvalidAuthToken)?;
        let allowed = match op {
            Op::Put(p) => self.auth.permits(
                user,
                Access::Write {
                    key: &p.key,
                    range_end: &[],
                },
            ),
            Op::DeleteRange(d) => self.auth.permits(
                user,
                Access::Write {
                    key: &d.key,
                    range_end: &d.range_end,
                },
            ),
            Op::Txn(t) => txn_accesses(t).iter().all(|a| self.auth.permits(user, *a)),
            Op::LeaseGrant(_) | Op::LeaseRevoke(_) => true,
            Op::Compaction(_) | Op::Auth(_) => self.auth.permits(user, Access::Admin),
            Op::LeaseExpired(_) => true,
        };
        if allowed {
            Ok(())
        } else {
            Err(CoordError::PermissionDenied)
        }
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
        self.snapshot_later()()
    }

    /// Captures the state for a snapshot and returns the encoding of it, to run
    /// off the Raft loop: the keyspace is a persistent map copied in O(1), the
    /// rest (leases, auth, the clients' last answers) is small and copied now.
    pub fn snapshot_later(&self) -> impl FnOnce() -> Vec<u8> + Send + 'static {
        let mut snapshot = CoordSnapshot {
            revision: self.mvcc.revision(),
            compact_revision: self.mvcc.compact_revision(),
            keys: Vec::new(),
            leases: self
                .leases
                .iter()
                .map(|(id, l)| LeaseRecord { id, ttl: l.ttl })
                .collect(),
            auth: Some(self.auth.snapshot()),
            applied_writes: self.applied_writes.snapshot(),
        };
        let history = self.mvcc.history();
        move || {
            snapshot.keys = history
                .iter()
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
                .collect();
            snapshot.encode_to_vec()
        }
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
        self.applied_writes = AppliedWrites::restore(snap.applied_writes);
        self.hub.catch_up(&self.mvcc);
        Ok(())
    }
}

/// Every key range a transaction reads or writes.
fn txn_accesses(t: &pb::TxnRequest) -> Vec<Access<'_>> {
    let mut out: Vec<Access<'_>> = t
        .compare
        .iter()
        .map(|c| Access::Read {
            key: &c.key,
            range_end: &c.range_end,
        })
        .collect();
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => out.push(Access::Read {
                key: &r.key,
                range_end: &r.range_end,
            }),
            Some(request_op::Request::RequestPut(p)) => out.push(Access::Write {
                key: &p.key,
                range_end: &[],
            }),
            Some(request_op::Request::RequestDeleteRange(d)) => out.push(Access::Write {
                key: &d.key,
                range_end: &d.range_end,
            }),
            Some(request_op::Request::RequestTxn(inner)) => out.extend(txn_accesses(inner)),
            None => {}
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::watch_hub::WatchSpec;
    use crate::proto::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest, PutRequest};
    use crate::seams::observer::NoopObserver;

    fn state() -> SharedCoordState {
        SharedCoordState::new(1, Arc::new(NoopObserver))
    }

    fn cmd(op: Op) -> CoordCommand {
        CoordCommand {
            op: Some(op),
            ..Default::default()
        }
    }

    fn put(key: &str, lease: i64) -> CoordCommand {
        cmd(Op::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        }))
    }

    fn apply(s: &SharedCoordState, c: CoordCommand) -> Result<Answer, CoordError> {
        let bytes = s.lock().apply(0, c).encode_to_vec();
        answer_result(&bytes)
    }

    #[test]
    fn a_numbered_write_applies_once_and_its_retry_gets_the_first_answer() {
        let s = state();
        let numbered = |seq| CoordCommand {
            write_id: Some(crate::proto::WriteId { client: 7, seq }),
            ..put("k", 0)
        };
        let first = s.lock().apply(1, numbered(1));
        let revision = s.lock().mvcc.revision();
        assert_eq!(s.lock().apply(2, numbered(1)), first, "the retry's answer");
        assert_eq!(
            s.lock().mvcc.revision(),
            revision,
            "the retry applied nothing"
        );
        apply(&s, numbered(2)).unwrap();
        assert_eq!(s.lock().mvcc.revision(), revision + 1);
        // A delayed retry of request 1, after request 2: refused, not applied.
        let err = apply(&s, numbered(1)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.lock().mvcc.revision(), revision + 1);
        // The table travels in snapshots.
        let copy = state();
        copy.lock().restore(&s.lock().snapshot()).unwrap();
        assert_eq!(
            copy.lock().apply(9, numbered(2)),
            s.lock().apply(9, numbered(2))
        );
        assert_eq!(copy.lock().mvcc.revision(), revision + 1);
    }

    #[test]
    fn revoking_a_lease_deletes_its_keys_in_one_revision() {
        let s = state();
        assert_eq!(apply(&s, put("a", 9)), Err(CoordError::LeaseNotFound));
        apply(&s, cmd(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 9 }))).unwrap();
        assert_eq!(
            apply(&s, cmd(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 9 }))),
            Err(CoordError::LeaseExist)
        );
        apply(&s, put("a", 9)).unwrap();
        apply(&s, put("b", 9)).unwrap();
        apply(&s, put("c", 0)).unwrap();
        let before = s.lock().mvcc.revision();
        apply(&s, cmd(Op::LeaseRevoke(LeaseRevokeRequest { id: 9 }))).unwrap();
        let st = s.lock();
        assert_eq!(st.mvcc.revision(), before + 1, "one revision for both keys");
        let all = st
            .mvcc
            .range(&RangeQuery {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.kvs.len(), 1);
        assert_eq!(all.kvs[0].key, b"c");
        assert!(!st.leases.contains(9));
    }

    #[test]
    fn a_snapshot_captured_before_later_writes_encodes_the_state_it_captured() {
        let s = state();
        apply(&s, cmd(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 3 }))).unwrap();
        apply(&s, put("k", 3)).unwrap();
        apply(&s, put("other", 0)).unwrap();
        let now = s.lock().snapshot();
        let later = s.lock().snapshot_later();
        apply(&s, put("k", 0)).unwrap();
        apply(&s, put("new", 0)).unwrap();
        apply(&s, cmd(Op::LeaseGrant(LeaseGrantRequest { ttl: 9, id: 4 }))).unwrap();
        let revision = s.lock().mvcc.revision();
        s.lock().mvcc.compact(revision).unwrap();
        assert_ne!(s.lock().snapshot(), now, "the writes changed the state");
        assert_eq!(later(), now);
    }

    #[test]
    fn snapshots_restore_history_leases_and_catch_watchers_up() {
        let s = state();
        apply(&s, cmd(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 3 }))).unwrap();
        apply(&s, put("k", 3)).unwrap();
        let snap_early = s.lock().snapshot();
        apply(&s, put("k", 0)).unwrap();
        apply(&s, put("other", 0)).unwrap();
        let snap = s.lock().snapshot();

        let copy = state();
        copy.lock().restore(&snap).unwrap();
        assert_eq!(copy.lock().snapshot(), snap);
        // The key moved off the lease; the restored table knows it.
        assert!(copy.lock().leases.get(3).unwrap().keys.is_empty());

        // A watcher on a member that was behind catches up on restore: no gap.
        let behind = state();
        behind.lock().restore(&snap_early).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let next = behind.lock().mvcc.revision() + 1;
        behind.lock().hub.add(
            WatchSpec {
                key: b"k".to_vec(),
                ..Default::default()
            },
            7,
            tx,
            next,
            &[],
        );
        behind.lock().restore(&snap).unwrap();
        let resp = rx.try_recv().expect("the missed put is delivered");
        assert_eq!(resp.watch_id, 7);
        assert_eq!(resp.events.len(), 1);
        assert_eq!(resp.events[0].kv.as_ref().unwrap().mod_revision, next);
        assert!(
            rx.try_recv().is_err(),
            "nothing twice, nothing outside the key"
        );
    }

    #[test]
    fn watchers_get_history_then_live_events_in_order() {
        let s = state();
        for k in ["a", "b", "a"] {
            apply(&s, put(k, 0)).unwrap();
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let mut st = s.lock();
            let history = st.mvcc.changes_since(b"a", &[], 2).unwrap();
            st.hub.add(
                WatchSpec {
                    key: b"a".to_vec(),
                    ..Default::default()
                },
                1,
                tx,
                2,
                &history,
            );
        }
        apply(&s, put("a", 0)).unwrap();
        let revs: Vec<i64> = std::iter::from_fn(|| rx.try_recv().ok())
            .flat_map(|r| r.events)
            .map(|e| e.kv.unwrap().mod_revision)
            .collect();
        assert_eq!(revs, vec![2, 4, 5]);
    }

    #[test]
    fn permissions_are_judged_when_applied() {
        use crate::coord::auth::hash_password;
        use crate::proto::authpb::{permission, Permission};
        use crate::proto::{IssuedToken, StoredUser};
        let s = state();
        let auth = |op: AuthOp| cmd(Op::Auth(AuthCommand { op: Some(op) }));
        let user = |name: &str| {
            auth(AuthOp::UserAdd(StoredUser {
                name: name.into(),
                password_hash: hash_password("pw", "s"),
                salt: "s".into(),
                ..Default::default()
            }))
        };
        apply(&s, user("root")).unwrap();
        apply(&s, user("reader")).unwrap();
        apply(
            &s,
            auth(AuthOp::RoleAdd(pb::AuthRoleAddRequest {
                name: "root".into(),
            })),
        )
        .unwrap();
        apply(
            &s,
            auth(AuthOp::RoleAdd(pb::AuthRoleAddRequest {
                name: "ro".into(),
            })),
        )
        .unwrap();
        apply(
            &s,
            auth(AuthOp::GrantPermission(
                pb::AuthRoleGrantPermissionRequest {
                    name: "ro".into(),
                    perm: Some(Permission {
                        perm_type: permission::Type::Read as i32,
                        key: b"a".to_vec(),
                        range_end: vec![0],
                    }),
                },
            )),
        )
        .unwrap();
        for (u, r) in [("root", "root"), ("reader", "ro")] {
            apply(
                &s,
                auth(AuthOp::GrantRole(pb::AuthUserGrantRoleRequest {
                    user: u.into(),
                    role: r.into(),
                })),
            )
            .unwrap();
            apply(
                &s,
                auth(AuthOp::IssueToken(IssuedToken {
                    token: format!("t-{u}"),
                    user: u.into(),
                    auth_revision: 0,
                })),
            )
            .unwrap();
        }
        apply(&s, auth(AuthOp::Enable(pb::AuthEnableRequest {}))).unwrap();
        // A member that had not seen the enable proposed without a token: refused.
        assert_eq!(apply(&s, put("a", 0)), Err(CoordError::UserEmpty));
        let with = |token: &str, mut c: CoordCommand| {
            c.token = token.into();
            c
        };
        assert_eq!(
            apply(&s, with("bogus", put("a", 0))),
            Err(CoordError::InvalidAuthToken)
        );
        assert_eq!(
            apply(&s, with("t-reader", put("a", 0))),
            Err(CoordError::PermissionDenied)
        );
        apply(&s, with("t-root", put("a", 0))).unwrap();
        // The cluster's own decisions need no token.
        apply(&s, cmd(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 4 })))
            .expect_err("a client grant needs a token");
        apply(
            &s,
            with(
                "t-reader",
                cmd(Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 4 })),
            ),
        )
        .unwrap();
        apply(
            &s,
            cmd(Op::LeaseExpired(crate::proto::LeaseExpired {
                id: 4,
                decided_by: 1,
            })),
        )
        .unwrap();
    }
}
