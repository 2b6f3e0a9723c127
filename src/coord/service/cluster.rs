//! etcd `Cluster`: MemberList from this member's Raft view; MemberAdd, MemberRemove
//! and MemberPromote through Raft on the leader (`coord::membership`); MemberUpdate
//! refused, as that module explains.

use tonic::{Request, Response, Status};

use super::CoordContext;
use crate::coord::auth::Access;
use crate::coord::errors::CoordError;
use crate::coord::membership;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

pub struct ClusterService {
    ctx: CoordContext,
}

impl ClusterService {
    pub fn new(ctx: CoordContext) -> Self {
        ClusterService { ctx }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    /// Changing membership takes the root role once auth is on, as in etcd.
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.ctx.authorize(&request, Access::Admin)?;
        let mut response = membership::add(&self.ctx.proposer, request.into_inner()).await?;
        // This member's header: etcdctl compares it with the MemberList it sends next.
        response.header = Some(self.ctx.header());
        Ok(Response::new(response))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.ctx.authorize(&request, Access::Admin)?;
        let mut response = membership::remove(&self.ctx.proposer, request.into_inner()).await?;
        response.header = Some(self.ctx.header());
        Ok(Response::new(response))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.ctx.authorize(&request, Access::Admin)?;
        Err(CoordError::PeerUrlUpdateUnsupported.into())
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.ctx.linearizable_barrier().await?;
        }
        let status = self
            .ctx
            .proposer
            .handle()
            .status()
            .await
            .map_err(CoordError::from)?;
        Ok(Response::new(MemberListResponse {
            header: Some(self.ctx.header()),
            members: membership::etcd_members(&status, None),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.ctx.authorize(&request, Access::Admin)?;
        let mut response = membership::promote(&self.ctx.proposer, request.into_inner()).await?;
        response.header = Some(self.ctx.header());
        Ok(Response::new(response))
    }
}
