//! etcd `KV`: Range (linearizable through ReadIndex unless serializable), and Put,
//! DeleteRange, Txn and Compact through the log.

use tonic::{Request, Response, Status};

use super::{check_size, CoordContext};
use crate::coord::auth::Access;
use crate::coord::convert;
use crate::coord::errors::CoordError;
use crate::coord::txn_check;
use crate::proto::coord_answer::Answer;
use crate::proto::coord_command::Op;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

pub struct KvService {
    ctx: CoordContext,
}

impl KvService {
    pub fn new(ctx: CoordContext) -> Self {
        KvService { ctx }
    }

    async fn propose<T>(&self, request: &Request<T>, op: Op) -> Result<Answer, CoordError> {
        self.ctx
            .proposer
            .propose(self.ctx.command(request, op)?)
            .await
    }
}

fn unexpected(answer: Answer) -> CoordError {
    CoordError::Other {
        code: tonic::Code::Internal as i32,
        message: format!("etcdserver: unexpected answer {answer:?}"),
    }
}

/// What a txn branch touches, checked against the user's permissions.
fn check_branch(
    ctx: &CoordContext,
    request: &Request<TxnRequest>,
    ops: &[RequestOp],
) -> Result<(), CoordError> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => ctx.authorize(
                request,
                Access::Read {
                    key: &r.key,
                    range_end: &r.range_end,
                },
            )?,
            Some(request_op::Request::RequestPut(p)) => ctx.authorize(
                request,
                Access::Write {
                    key: &p.key,
                    range_end: &[],
                },
            )?,
            Some(request_op::Request::RequestDeleteRange(d)) => ctx.authorize(
                request,
                Access::Write {
                    key: &d.key,
                    range_end: &d.range_end,
                },
            )?,
            Some(request_op::Request::RequestTxn(t)) => {
                check_branch(ctx, request, &t.success)?;
                check_branch(ctx, request, &t.failure)?;
            }
            None => {}
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let r = request.get_ref();
        if r.key.is_empty() {
            return Err(CoordError::EmptyKey.into());
        }
        // Auth is judged after the barrier, on state at least as new as the request.
        if !r.serializable {
            self.ctx.linearizable_barrier().await?;
        }
        self.ctx.authorize(
            &request,
            Access::Read {
                key: &r.key,
                range_end: &r.range_end,
            },
        )?;
        let header = self.ctx.header();
        let result = self
            .ctx
            .state
            .lock()
            .mvcc
            .range(&convert::range_query(r))
            .map_err(CoordError::from)?;
        let mut header = header;
        header.revision = result.revision;
        Ok(Response::new(convert::range_response(result, header)))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        check_size(request.get_ref())?;
        let p = request.get_ref();
        if p.key.is_empty() {
            return Err(CoordError::EmptyKey.into());
        }
        self.ctx.authorize(
            &request,
            Access::Write {
                key: &p.key,
                range_end: &[],
            },
        )?;
        match self
            .propose(&request, Op::Put(request.get_ref().clone()))
            .await?
        {
            Answer::Put(mut r) => {
                r.header = self.ctx.stamp(r.header);
                Ok(Response::new(r))
            }
            other => Err(unexpected(other).into()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let d = request.get_ref();
        if d.key.is_empty() {
            return Err(CoordError::EmptyKey.into());
        }
        self.ctx.authorize(
            &request,
            Access::Write {
                key: &d.key,
                range_end: &d.range_end,
            },
        )?;
        match self
            .propose(&request, Op::DeleteRange(request.get_ref().clone()))
            .await?
        {
            Answer::DeleteRange(mut r) => {
                r.header = self.ctx.stamp(r.header);
                Ok(Response::new(r))
            }
            other => Err(unexpected(other).into()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        // As etcd: the txn's shape is judged before its size and permissions.
        txn_check::check_txn(request.get_ref())?;
        check_size(request.get_ref())?;
        let t = request.get_ref();
        for c in &t.compare {
            self.ctx.authorize(
                &request,
                Access::Read {
                    key: &c.key,
                    range_end: &c.range_end,
                },
            )?;
        }
        check_branch(&self.ctx, &request, &t.success)?;
        check_branch(&self.ctx, &request, &t.failure)?;
        match self
            .propose(&request, Op::Txn(request.get_ref().clone()))
            .await?
        {
            Answer::Txn(mut r) => {
                r.header = self.ctx.stamp(r.header);
                Ok(Response::new(r))
            }
            other => Err(unexpected(other).into()),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.ctx.authorize(&request, Access::Admin)?;
        match self
            .propose(&request, Op::Compaction(*request.get_ref()))
            .await?
        {
            Answer::Compaction(mut r) => {
                r.header = self.ctx.stamp(r.header);
                Ok(Response::new(r))
            }
            other => Err(unexpected(other).into()),
        }
    }
}
