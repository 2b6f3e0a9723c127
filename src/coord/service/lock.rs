//! etcd's `Lock` service (v3lockpb), served on the member: the lock is the key
//! `name/<lease hex>` bound to the caller's lease; it is held once no key under
//! `name/` has a lower create revision, so waiters are served in the order they
//! queued. The key's create revision is the fencing token. A holder whose lease
//! dies loses its key, which is what lets the next waiter in.

use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::CoordContext;
use crate::coord::auth::Access;
use crate::coord::errors::CoordError;
use crate::coord::mvcc::{RangeQuery, SortTarget};
use crate::coord::watch_hub::WatchSpec;
use crate::proto::coord_answer::Answer;
use crate::proto::coord_command::Op;
use crate::proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest, TxnResponse,
};
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::seams::mutants;
use crate::seams::observer::Event;

/// A waiter re-reads the queue at least this often, even without a watch event.
const RECHECK: Duration = Duration::from_secs(1);

/// A queued locker: its key and lease.
type Waiter = (Vec<u8>, i64);

pub struct LockService {
    ctx: CoordContext,
}

impl LockService {
    pub fn new(ctx: CoordContext) -> Self {
        LockService { ctx }
    }

    /// Puts `key` bound to `lease` unless it exists; answers its create revision.
    async fn enqueue<T>(
        &self,
        request: &Request<T>,
        key: &[u8],
        lease: i64,
    ) -> Result<i64, CoordError> {
        let cmd = self
            .ctx
            .command(request, Op::Txn(enqueue_txn(key, lease)))?;
        let answer = self.ctx.proposer.propose(cmd).await?;
        let Answer::Txn(r) = answer else {
            return Err(CoordError::Other {
                code: tonic::Code::Internal as i32,
                message: "etcdserver: lock: unexpected answer".into(),
            });
        };
        enqueued_revision(&r).ok_or(CoordError::LeaseNotFound)
    }

    /// The waiter just ahead of `my_rev` (highest create revision below it), and the
    /// revision read at; `Err(LeaseNotFound)` once our own key is gone.
    fn predecessor(
        &self,
        prefix: &[u8],
        key: &[u8],
        my_rev: i64,
    ) -> Result<(Option<Waiter>, i64), CoordError> {
        let state = self.ctx.state.lock();
        let mine = state.mvcc.range(&RangeQuery {
            key: key.to_vec(),
            ..Default::default()
        })?;
        if mine.kvs.first().map(|kv| kv.create_revision) != Some(my_rev) {
            return Err(CoordError::LeaseNotFound);
        }
        let before = state.mvcc.range(&RangeQuery {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            max_create_revision: my_rev - 1,
            sort: Some((SortTarget::Create, true)),
            limit: 1,
            ..Default::default()
        })?;
        Ok((
            before.kvs.into_iter().next().map(|kv| (kv.key, kv.lease)),
            before.revision,
        ))
    }

    /// Records and answers a grant decided at store revision `rev`.
    fn granted(&self, name: &[u8], key: Vec<u8>, my_rev: i64, rev: i64) -> LockResponse {
        let observer = self.ctx.state.lock().observer();
        observer.observe(
            self.ctx.member_id,
            &Event::LockGranted {
                name,
                key: &key,
                create_revision: my_rev,
                revision: rev,
            },
        );
        let mut header = self.ctx.header();
        header.revision = rev;
        LockResponse {
            header: Some(header),
            key,
        }
    }

    /// Waits until the predecessor's key is deleted (or `RECHECK` passes).
    async fn wait_for_delete(&self, pred: &[u8], after: i64) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hub_id = {
            let mut state = self.ctx.state.lock();
            let spec = WatchSpec {
                key: pred.to_vec(),
                no_put: true,
                ..Default::default()
            };
            state.hub.add(spec, 0, tx, after + 1, &[])
        };
        tokio::select! {
            biased;
            _ = rx.recv() => {}
            _ = self.ctx.proposer.clock().sleep(RECHECK) => {}
        }
        self.ctx.state.lock().hub.remove(hub_id);
    }
}

/// The transaction that queues a locker: put `key` on `lease` unless it exists
/// (so a retry keeps its place), then read it back in either branch.
pub fn enqueue_txn(key: &[u8], lease: i64) -> TxnRequest {
    let get = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    };
    TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: key.to_vec(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        }],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.to_vec(),
                    lease,
                    ..Default::default()
                })),
            },
            get.clone(),
        ],
        failure: vec![get],
    }
}

/// The queued key's create revision, from [`enqueue_txn`]'s answer.
pub fn enqueued_revision(r: &TxnResponse) -> Option<i64> {
    r.responses.iter().find_map(|op| match &op.response {
        Some(response_op::Response::ResponseRange(rr)) => {
            rr.kvs.first().map(|kv| kv.create_revision)
        }
        _ => None,
    })
}

/// The end of the range of keys starting with `prefix` (etcd's prefix rule).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let LockRequest { name, lease } = request.get_ref().clone();
        if name.is_empty() {
            return Err(CoordError::EmptyKey.into());
        }
        let mut prefix = name.clone();
        prefix.push(b'/');
        let key = [prefix.as_slice(), format!("{lease:x}").as_bytes()].concat();
        self.ctx.authorize(
            &request,
            Access::Write {
                key: &prefix,
                range_end: &prefix_end(&prefix),
            },
        )?;
        if lease == 0 {
            return Err(CoordError::LeaseNotFound.into());
        }
        let my_rev = self.enqueue(&request, &key, lease).await?;
        let clock = self.ctx.proposer.clock();
        let waited_since = clock.now_ms();
        loop {
            self.ctx.linearizable_barrier().await?;
            let (pred, rev) = self.predecessor(&prefix, &key, my_rev)?;
            let Some((pred_key, pred_lease)) = pred else {
                return Ok(Response::new(self.granted(&name, key, my_rev, rev)));
            };
            if mutants::active("lock_ignores_holder") {
                // The bug: assume the holder is gone once its TTL passed on our clock.
                let ttl = self.ctx.state.lock().leases.get(pred_lease).map(|l| l.ttl);
                if ttl.is_some_and(|ttl| clock.now_ms() >= waited_since + ttl as u64 * 1000) {
                    return Ok(Response::new(self.granted(&name, key, my_rev, rev)));
                }
            }
            self.wait_for_delete(&pred_key, rev).await;
        }
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let key = request.get_ref().key.clone();
        self.ctx.authorize(
            &request,
            Access::Write {
                key: &key,
                range_end: &[],
            },
        )?;
        let answer = self
            .ctx
            .proposer
            .propose(self.ctx.command(
                &request,
                Op::DeleteRange(DeleteRangeRequest {
                    key,
                    ..Default::default()
                }),
            )?)
            .await?;
        let header = match answer {
            Answer::DeleteRange(r) => r.header,
            _ => None,
        };
        Ok(Response::new(UnlockResponse {
            header: self.ctx.stamp(header),
        }))
    }
}
