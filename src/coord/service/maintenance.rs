//! etcd `Maintenance`: Status (leader, term, indexes, store size) and MoveLeader,
//! which answers once the transferee leads, as etcd's does.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::CoordContext;
use crate::coord::auth::Access;
use crate::coord::errors::CoordError;
use crate::coord::forward::REQUEST_TIMEOUT;
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

    /// Waits, on the member's clock, until this member sees `target` lead: Raft
    /// abandons a transfer that does not finish within an election timeout.
    async fn wait_for_leader(&self, target: u64) -> Result<(), CoordError> {
        const STEP: Duration = Duration::from_millis(50);
        let handle = self.ctx.proposer.handle();
        let clock = self.ctx.proposer.clock();
        let deadline = clock.now_ms() + REQUEST_TIMEOUT.as_millis() as u64;
        while handle.leader().leader_id != target {
            if clock.now_ms() >= deadline {
                return Err(CoordError::LeaderTransferTimedOut);
            }
            clock.sleep(STEP).await;
        }
        Ok(())
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
        let target = request.get_ref().target_id;
        handle.transfer_leader(target).await.map_err(|e| match e {
            // The only request Raft refuses: a target that is not a voter.
            RaftError::InvalidRequest(_) => CoordError::BadLeaderTransferee,
            other => CoordError::from(other),
        })?;
        self.wait_for_leader(target).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.ctx.header()),
        }))
    }
}
