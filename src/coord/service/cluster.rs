//! etcd `Cluster.MemberList` and `Maintenance`'s Status / MoveLeader read the Raft
//! node's own view.

use tonic::{Request, Response, Status};

use super::CoordContext;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{Member, MemberListRequest, MemberListResponse};

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
            .map_err(crate::coord::errors::CoordError::from)?;
        let members = status
            .members
            .iter()
            .map(|(id, addr)| Member {
                id: *id,
                name: format!("node-{id}"),
                peer_ur_ls: vec![format!("http://{addr}")],
                client_ur_ls: vec![format!("http://{addr}")],
                is_learner: false,
            })
            .collect();
        Ok(Response::new(MemberListResponse {
            header: Some(self.ctx.header()),
            members,
        }))
    }
}
