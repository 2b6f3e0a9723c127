//! A leader-following client of the coo's gRPC API (the broker's "smart client"):
//! it finds the leader coo, follows "not leader" hints, refreshes endpoints and
//! retries, on the client core's [`Connection`].

use std::sync::Arc;

use tonic::codec::Streaming;
use tonic::transport::Channel;

use crate::client::{ClientError, Connection, ConnectionConfig};
use crate::proto::coo_client::CooClient as CooGrpc;
use crate::proto::{
    BrokerList, BrokerReport, ConsumerAssignment, CreateTopicRequest, DeleteTopicRequest,
    GroupList, ListRequest, PullRequest, SyncConsumerAssignmentsRequest, TopicInfo, TopicInfos,
};
use crate::seams::mutants;
use crate::seams::observer::{Event, Observer};

pub struct CooClient {
    inner: Connection,
    /// Who the RPCs are sent for (observer events), 0 for admin use.
    broker_id: u64,
    observer: Option<Arc<dyn Observer>>,
    /// Set only by the `external_sticks_to_deposed_leader` mutant (a mutant site,
    /// like every other, compiles to nothing outside simulation builds; the field
    /// stays, since the stack keeps simulation differences out of `cfg`).
    pinned: Option<String>,
}

fn coo(channel: Channel) -> CooGrpc<Channel> {
    CooGrpc::new(channel)
}

impl CooClient {
    pub fn new(config: ConnectionConfig) -> Result<Self, ClientError> {
        Ok(CooClient {
            inner: Connection::new(config)?,
            broker_id: 0,
            observer: None,
            pinned: None,
        })
    }

    /// A client that reports its RPCs as broker `broker_id`'s network traffic.
    pub fn for_broker(
        config: ConnectionConfig,
        broker_id: u64,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, ClientError> {
        let mut client = Self::new(config)?;
        client.broker_id = broker_id;
        client.observer = Some(observer);
        Ok(client)
    }

    fn sent(&self, rpc: &str) {
        if let Some(o) = &self.observer {
            o.observe(self.broker_id, &Event::CooRpcSent { rpc });
        }
    }

    pub async fn report(&mut self, report: BrokerReport) -> Result<u64, ClientError> {
        self.sent("report");
        if let Some(endpoint) = self.pinned.clone() {
            let ack = self
                .inner
                .call_once_at(&endpoint, |ch| async move { coo(ch).report(report).await })
                .await?;
            return Ok(ack.index);
        }
        let ack = self
            .inner
            .call(|ch, _| {
                let report = report.clone();
                async move {
                    coo(ch)
                        .report(report)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        if mutants::active("external_sticks_to_deposed_leader") {
            self.pinned = Some(self.inner.endpoint());
        }
        Ok(ack.index)
    }

    /// Opens the leader's stream of topic infos for `broker_id`.
    pub async fn pull(&mut self, broker_id: u64) -> Result<Streaming<TopicInfos>, ClientError> {
        self.sent("pull");
        if let Some(endpoint) = self.pinned.clone() {
            return self
                .inner
                .call_once_at(&endpoint, |ch| async move {
                    coo(ch).pull(PullRequest { broker_id }).await
                })
                .await;
        }
        self.inner
            .call(|ch, _| async move {
                coo(ch)
                    .pull(PullRequest { broker_id })
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
    }

    pub async fn sync_consumer_assignments(
        &mut self,
        req: SyncConsumerAssignmentsRequest,
    ) -> Result<ConsumerAssignment, ClientError> {
        self.sent("sync_consumer_assignments");
        self.inner
            .call(|ch, _| {
                let req = req.clone();
                async move {
                    coo(ch)
                        .sync_consumer_assignments(req)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await
    }

    pub async fn create_topic(
        &mut self,
        req: CreateTopicRequest,
    ) -> Result<TopicInfo, ClientError> {
        self.inner
            .call(|ch, _| {
                let req = req.clone();
                async move {
                    coo(ch)
                        .create_topic(req)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await
    }

    pub async fn delete_topic(&mut self, name: &str) -> Result<bool, ClientError> {
        let req = DeleteTopicRequest {
            name: name.to_string(),
        };
        let r = self
            .inner
            .call(|ch, _| {
                let req = req.clone();
                async move {
                    coo(ch)
                        .delete_topic(req)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        Ok(r.existed)
    }

    pub async fn list_topics(&mut self) -> Result<TopicInfos, ClientError> {
        self.inner
            .call(|ch, _| async move {
                coo(ch)
                    .list_topics(ListRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
    }

    pub async fn list_brokers(&mut self) -> Result<BrokerList, ClientError> {
        self.inner
            .call(|ch, _| async move {
                coo(ch)
                    .list_brokers(ListRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
    }

    pub async fn list_groups(&mut self) -> Result<GroupList, ClientError> {
        self.inner
            .call(|ch, _| async move {
                coo(ch)
                    .list_groups(ListRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
    }
}
