//! etcd `Maintenance`: Status (leader, term, indexes, store size) and MoveLeader.

use tonic::{Request, Response, Status};

use super::CoordContext;
use crate::coord::auth::Access;
use crate::coord::errors::CoordError;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    MoveLeaderRequest, MoveLeaderResponse, StatusRequest, StatusResponse,
};
use crate::raft::RaftError;

/// The etcd API version coordlab speaks (clients gate features on it).
pub const API_VERSION: &str = "3.4.0";

pub struct MaintenanceService {
    ctx: CoordContext,
}

impl MaintenanceService {
    pub fn new(ctx: CoordContext) -> Self {
        MaintenanceService { ctx }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let raft = self
            .ctx
            .proposer
            .handle()
            .status()
            .await
            .map_err(CoordError::from)?;
        let db_size = self.ctx.state.lock().mvcc.size_bytes();
        let mut header = self.ctx.header();
        header.raft_term = raft.term;
        Ok(Response::new(StatusResponse {
            header: Some(header),
            version: API_VERSION.to_string(),
            db_size,
            leader: raft.leader_id,
            raft_index: raft.commit_index,
            raft_term: raft.term,
            raft_applied_index: raft.applied_index,
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: raft.learners.contains(&raft.id),
        }))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.ctx.authorize(&request, Access::Admin)?;
        let handle = self.ctx.proposer.handle();
        if !handle.leader().is_self {
            return Err(CoordError::NotLeader.into());
        }
        handle
            .transfer_leader(request.get_ref().target_id)
            .await
            .map_err(|e| match e {
                // The only request Raft refuses: a target that is not a voter.
                RaftError::InvalidRequest(_) => CoordError::BadLeaderTransferee,
                other => CoordError::from(other),
            })?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.ctx.header()),
        }))
    }
}
