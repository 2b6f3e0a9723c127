//! `coordlab.Admin`: what etcd's API has no call for — a node's Raft and LogicNode
//! detail, and membership changes that name the new member's id.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::mq::logic_node::LogicNodeMetrics;
use crate::proto::admin_server::Admin;
use crate::proto::{
    AddMemberRequest, Member, MembershipResponse, RemoveMemberRequest, StatusRequest,
    StatusResponse,
};
use crate::raft::rpc_status::status_from_raft_error;
use crate::raft::{role_name, MembershipChange, NodeStatus, RaftHandle};

/// Answers from the node's Raft.
pub struct AdminService {
    node: RaftHandle,
    /// The node's LogicNode, when it runs a broker.
    logic_node: Option<Arc<LogicNodeMetrics>>,
}

impl AdminService {
    pub fn new(node: RaftHandle, logic_node: Option<Arc<LogicNodeMetrics>>) -> Self {
        AdminService { node, logic_node }
    }

    async fn status_now(&self) -> Result<NodeStatus, Status> {
        self.node.status().await.map_err(status_from_raft_error)
    }
}

fn members_of(status: &NodeStatus) -> Vec<Member> {
    status
        .members
        .iter()
        .map(|(&id, addr)| Member {
            id,
            addr: addr.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let s = self.status_now().await?;
        Ok(Response::new(StatusResponse {
            id: s.id,
            role: role_name(s.role).to_string(),
            leader_id: s.leader_id,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            members: members_of(&s),
            first_log_index: s.first_log_index,
            last_log_index: s.last_log_index,
            snapshot_index: s.snapshot_index,
            logic_node_mode: self
                .logic_node
                .as_ref()
                .and_then(|m| m.mode())
                .map_or(String::new(), |m| m.name().to_string()),
            mode_switches: self.logic_node.as_ref().map_or(0, |m| m.switches()),
        }))
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let req = request.into_inner();
        if req.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "address {:?} is not host:port",
                req.addr
            )));
        }
        let change = MembershipChange::AddVoter {
            id: req.id,
            addr: req.addr,
        };
        self.change(change).await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let change = MembershipChange::Remove {
            id: request.into_inner().id,
        };
        self.change(change).await
    }
}

impl AdminService {
    async fn change(
        &self,
        change: MembershipChange,
    ) -> Result<Response<MembershipResponse>, Status> {
        let index = self
            .node
            .change_membership(change)
            .await
            .map_err(status_from_raft_error)?
            .index;
        let s = self.status_now().await?;
        Ok(Response::new(MembershipResponse {
            index,
            members: members_of(&s),
        }))
    }
}
