//! The coo's gRPC service: `Report`, `Pull` (server stream of topic infos),
//! `SyncConsumerAssignments`, and the topic/broker/group admin calls.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::handle::Coo;
use crate::proto::coo_server;
use crate::proto::{
    BrokerList, BrokerReport, ConsumerAssignment, CreateTopicRequest, DeleteTopicRequest,
    DeleteTopicResponse, GroupList, ListRequest, PullRequest, ReportAck,
    SyncConsumerAssignmentsRequest, TopicInfo, TopicInfos,
};
use crate::raft::rpc_status::status_from_raft_error;
use crate::raft::RaftError;

pub struct CooService {
    coo: Coo,
}

impl CooService {
    pub fn new(coo: Coo) -> Self {
        CooService { coo }
    }

    fn not_leader(&self) -> Status {
        status_from_raft_error(RaftError::NotLeader {
            leader_id: self.coo.raft().leader().leader_id,
            leader_addr: None,
        })
    }
}

type PullStream = Pin<Box<dyn Stream<Item = Result<TopicInfos, Status>> + Send>>;

#[tonic::async_trait]
impl coo_server::Coo for CooService {
    async fn report(&self, request: Request<BrokerReport>) -> Result<Response<ReportAck>, Status> {
        let index = self
            .coo
            .apply_broker_report(request.into_inner())
            .await
            .map_err(status_from_raft_error)?;
        Ok(Response::new(ReportAck { index }))
    }

    type PullStream = PullStream;

    /// Streams the topic metadata on every change while this coo leads; ends with
    /// "not leader" once it does not, so the broker goes to the new leader.
    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullStream>, Status> {
        let topics = self
            .coo
            .broker_pull(request.into_inner().broker_id)
            .map_err(status_from_raft_error)?;
        let leader = self.coo.raft().leader_watch();
        let not_leader = self.not_leader();
        let state = (topics, leader, true, Some(not_leader));
        let stream = futures::stream::unfold(
            state,
            |(mut topics, mut leader, first, mut end)| async move {
                if !first {
                    loop {
                        tokio::select! {
                            biased;
                            changed = leader.changed() => {
                                if changed.is_err() || !leader.borrow().is_self {
                                    let status = end.take()?;
                                    return Some((Err(status), (topics, leader, false, None)));
                                }
                            }
                            changed = topics.changed() => {
                                if changed.is_err() {
                                    return None;
                                }
                                break;
                            }
                        }
                    }
                }
                let infos = (**topics.borrow_and_update()).clone();
                Some((Ok(infos), (topics, leader, false, end)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn sync_consumer_assignments(
        &self,
        request: Request<SyncConsumerAssignmentsRequest>,
    ) -> Result<Response<ConsumerAssignment>, Status> {
        let a = self
            .coo
            .sync_group(request.into_inner())
            .await
            .map_err(status_from_raft_error)?;
        Ok(Response::new(a))
    }

    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        let t = self
            .coo
            .create_topic(request.into_inner())
            .await
            .map_err(status_from_raft_error)?;
        Ok(Response::new(t))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let existed = self
            .coo
            .delete_topic(request.into_inner().name)
            .await
            .map_err(status_from_raft_error)?;
        Ok(Response::new(DeleteTopicResponse { existed }))
    }

    async fn list_topics(&self, _: Request<ListRequest>) -> Result<Response<TopicInfos>, Status> {
        Ok(Response::new(
            self.coo
                .list_topics()
                .await
                .map_err(status_from_raft_error)?,
        ))
    }

    async fn list_brokers(&self, _: Request<ListRequest>) -> Result<Response<BrokerList>, Status> {
        Ok(Response::new(
            self.coo
                .list_brokers()
                .await
                .map_err(status_from_raft_error)?,
        ))
    }

    async fn list_groups(&self, _: Request<ListRequest>) -> Result<Response<GroupList>, Status> {
        Ok(Response::new(
            self.coo
                .list_groups()
                .await
                .map_err(status_from_raft_error)?,
        ))
    }
}

/// How long a broker may stay silent before the leader coo expires it.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(6);
