//! The client-facing `coordlab.Kv` gRPC service.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::kv::{self, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::mq::logic_node::LogicNodeMetrics;
use crate::proto::kv_server::Kv;
use crate::proto::{
    AddMemberRequest, DeleteRequest, DeleteResponse, GetRequest, GetResponse, KvApplied, Member,
    MembershipResponse, PutRequest, PutResponse, RemoveMemberRequest, StatusRequest,
    StatusResponse, TransferLeaderRequest, TransferLeaderResponse,
};
use crate::raft::rpc_status::status_from_raft_error;
use crate::raft::{role_name, MembershipChange, NodeStatus, RaftHandle};
use crate::seams::clock::Clock;

/// Serves KV requests through the node's Raft.
pub struct KvService {
    node: RaftHandle,
    clock: Arc<dyn Clock>,
    /// The node's LogicNode, when it runs a broker.
    logic_node: Option<Arc<LogicNodeMetrics>>,
}

impl KvService {
    pub fn new(
        node: RaftHandle,
        clock: Arc<dyn Clock>,
        logic_node: Option<Arc<LogicNodeMetrics>>,
    ) -> Self {
        KvService {
            node,
            clock,
            logic_node,
        }
    }

    async fn status_now(&self) -> Result<NodeStatus, Status> {
        self.node.status().await.map_err(status_from_raft_error)
    }
}

fn check_key(key: &str) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Status::invalid_argument(format!(
            "request too large: key of {} bytes (limit {MAX_KEY_BYTES})",
            key.len()
        )));
    }
    Ok(())
}

fn decode_applied(answer: &[u8]) -> Result<KvApplied, Status> {
    KvApplied::decode(answer).map_err(|e| Status::internal(format!("state machine answer: {e}")))
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
impl Kv for KvService {
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        check_key(&req.key)?;
        if req.value.len() > MAX_VALUE_BYTES {
            return Err(Status::invalid_argument(format!(
                "request too large: value of {} bytes (limit {MAX_VALUE_BYTES})",
                req.value.len()
            )));
        }
        let (index, answer) = self
            .node
            .propose_and_wait(kv::encode_put(req))
            .await
            .map_err(status_from_raft_error)?;
        let applied = decode_applied(&answer)?;
        Ok(Response::new(PutResponse {
            index,
            prev_value: applied.prev_value,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let req = request.into_inner();
        check_key(&req.key)?;
        let (index, answer) = self
            .node
            .propose_and_wait(kv::encode_delete(req))
            .await
            .map_err(status_from_raft_error)?;
        let applied = decode_applied(&answer)?;
        Ok(Response::new(DeleteResponse {
            index,
            prev_value: applied.prev_value,
        }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let req = request.into_inner();
        check_key(&req.key)?;
        let read = self
            .node
            .read(
                super::replicated::get_query(&req.key, req.serializable),
                !req.serializable,
            )
            .await
            .map_err(status_from_raft_error)?;
        let mut answer = GetResponse::decode(&read.answer[..])
            .map_err(|e| Status::internal(format!("state machine answer: {e}")))?;
        answer.read_index = read.read_index;
        Ok(Response::new(answer))
    }

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

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let to = request.into_inner().to;
        self.node
            .transfer_leader(to)
            .await
            .map_err(status_from_raft_error)?;
        // Leadership moves within an election timeout or the transfer is abandoned.
        for _ in 0..50 {
            let s = self.status_now().await?;
            if s.leader_id == to {
                return Ok(Response::new(TransferLeaderResponse { leader_id: to }));
            }
            self.clock.sleep(Duration::from_millis(100)).await;
        }
        Err(Status::deadline_exceeded(format!(
            "leadership did not move to node {to}"
        )))
    }
}

impl KvService {
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
