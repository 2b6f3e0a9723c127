//! `CoordForward`, the leader's side of forwarding: proposals, lease keep-alives and
//! TTL reads, and membership changes that a follower passed on (see
//! `crate::coord::forward` for the follower's side).

use std::sync::Arc;

use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::coord::errors::CoordError;
use crate::coord::forward::{with_deadline, Proposer, REQUEST_TIMEOUT};
use crate::coord::lessor::Lessor;
use crate::coord::membership;
use crate::proto::coord_forward_server::CoordForward;
use crate::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    MemberAddRequest, MemberAddResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse,
};
use crate::proto::{command, Command, ForwardedAnswer, ForwardedCommand};

/// The leader-side of forwarding.
pub struct CoordForwardService {
    proposer: Arc<Proposer>,
    lessor: Arc<Lessor>,
}

impl CoordForwardService {
    pub fn new(proposer: Arc<Proposer>, lessor: Arc<Lessor>) -> Self {
        CoordForwardService { proposer, lessor }
    }
}

#[tonic::async_trait]
impl CoordForward for CoordForwardService {
    async fn propose(
        &self,
        request: Request<ForwardedCommand>,
    ) -> Result<Response<ForwardedAnswer>, Status> {
        let command = request.into_inner().command;
        // Only coordination commands travel this way.
        match Command::decode(&command[..]).map(|c| c.op) {
            Ok(Some(command::Op::Coord(_))) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "etcdserver: forwarded bytes are not a coordination command",
                ))
            }
        }
        let handle = self.proposer.handle();
        let answer = with_deadline(self.proposer.clock(), REQUEST_TIMEOUT, async {
            handle
                .propose_and_wait(command)
                .await
                .map(|(_, a)| a)
                .map_err(CoordError::from)
        })
        .await?;
        Ok(Response::new(ForwardedAnswer { answer }))
    }

    async fn keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl = self.lessor.renew_here(id).await?;
        Ok(Response::new(LeaseKeepAliveResponse {
            header: Some(self.lessor.header()),
            id,
            ttl,
        }))
    }

    async fn time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(
            self.lessor.time_to_live_here(request.into_inner()).await?,
        ))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let answer = membership::add_here(&self.proposer, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let answer = membership::remove_here(&self.proposer, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let answer = membership::promote_here(&self.proposer, request.into_inner()).await?;
        Ok(Response::new(answer))
    }
}
