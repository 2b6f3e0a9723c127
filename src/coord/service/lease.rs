//! etcd `Lease`: grant and revoke through the log; keep-alives and time-to-live
//! answered by the leader's lessor (a follower forwards them).

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::CoordContext;
use crate::coord::errors::CoordError;
use crate::coord::leases::effective_ttl;
use crate::proto::coord_answer::Answer;
use crate::proto::coord_command::Op;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

pub struct LeaseService {
    ctx: CoordContext,
}

impl LeaseService {
    pub fn new(ctx: CoordContext) -> Self {
        LeaseService { ctx }
    }
}

/// A fresh lease id: positive, chosen by the member that proposes the grant.
fn new_lease_id() -> i64 {
    (madsim::rand::random::<u64>() >> 1).max(1) as i64
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.ctx.user(&request)?;
        let mut g = *request.get_ref();
        g.ttl = effective_ttl(g.ttl).ok_or(CoordError::LeaseTtlTooLarge)?;
        if g.id == 0 {
            g.id = new_lease_id();
        }
        match self
            .ctx
            .proposer
            .propose(self.ctx.command(&request, Op::LeaseGrant(g))?)
            .await?
        {
            Answer::LeaseGrant(mut r) => {
                r.header = self.ctx.stamp(r.header);
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!("unexpected answer {other:?}"))),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.ctx.user(&request)?;
        match self
            .ctx
            .proposer
            .propose(
                self.ctx
                    .command(&request, Op::LeaseRevoke(*request.get_ref()))?,
            )
            .await?
        {
            Answer::LeaseRevoke(mut r) => {
                r.header = self.ctx.stamp(r.header);
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!("unexpected answer {other:?}"))),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        self.ctx.user(&request)?;
        let mut inbound = request.into_inner();
        let ctx = self.ctx.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Result<LeaseKeepAliveResponse, Status>>();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let answer = match ctx.lessor.renew(req.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(ctx.header()),
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = answer.is_err();
                if tx.send(answer).is_err() || failed {
                    break;
                }
            }
        });
        let out = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.ctx.user(&request)?;
        let mut r = self.ctx.lessor.time_to_live(request.into_inner()).await?;
        r.header = self.ctx.stamp(r.header);
        Ok(Response::new(r))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.ctx.user(&request)?;
        self.ctx.linearizable_barrier().await?;
        let leases = self
            .ctx
            .state
            .lock()
            .leases
            .iter()
            .map(|(id, _)| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.ctx.header()),
            leases,
        }))
    }
}
