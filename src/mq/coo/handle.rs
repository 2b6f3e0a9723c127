//! The in-process coo: proposes coo commands through the node's Raft and reads the
//! replicated metadata. The LogicNode's Local mode uses it directly (no network, no
//! serialization beyond the Raft log); the gRPC service wraps it for everyone else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;

use crate::proto::{
    coo_answer, coo_command, coo_query, BrokerList, BrokerReport, BrokerReportAt,
    ConsumerAssignment, CooAnswer, CreateTopicRequest, DeleteTopicRequest, ExpireBroker, GroupList,
    ListRequest, SyncConsumerAssignmentsRequest, TopicInfo, TopicInfos,
};
use crate::raft::{RaftError, RaftHandle};
use crate::seams::clock::Clock;
use crate::seams::mutants;

use super::state::{coo_command, coo_query, validate_topic, TopicWatch};

#[derive(Clone)]
pub struct Coo {
    node: RaftHandle,
    clock: Arc<dyn Clock>,
    topics: TopicWatch,
}

fn decode_answer(bytes: &[u8]) -> Result<coo_answer::A, RaftError> {
    match CooAnswer::decode(bytes).ok().and_then(|a| a.a) {
        Some(coo_answer::A::Error(e)) => Err(RaftError::InvalidRequest(e)),
        Some(a) => Ok(a),
        None => Err(RaftError::InvalidRequest("empty coo answer".into())),
    }
}

impl Coo {
    pub fn new(node: RaftHandle, clock: Arc<dyn Clock>, topics: TopicWatch) -> Self {
        Coo {
            node,
            clock,
            topics,
        }
    }

    /// Whether this node's coo leads (as of its last role change).
    pub fn is_leader(&self) -> bool {
        self.node.leader().is_self
    }

    pub fn raft(&self) -> &RaftHandle {
        &self.node
    }

    fn not_leader(&self) -> RaftError {
        RaftError::NotLeader {
            leader_id: self.node.leader().leader_id,
            leader_addr: None,
        }
    }

    async fn propose(&self, op: coo_command::Op) -> Result<(u64, coo_answer::A), RaftError> {
        let (index, answer) = self.node.propose_and_wait(coo_command(op)).await?;
        Ok((index, decode_answer(&answer)?))
    }

    /// Records a broker's report (stamped with this leader's clock).
    pub async fn apply_broker_report(&self, report: BrokerReport) -> Result<u64, RaftError> {
        let at = BrokerReportAt {
            report: Some(report),
            at_ms: self.clock.now_ms(),
        };
        Ok(self.propose(coo_command::Op::Report(at)).await?.0)
    }

    /// The committed topic metadata, following every change; only while leading.
    pub fn broker_pull(&self, _broker_id: u64) -> Result<TopicWatch, RaftError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        Ok(self.topics.clone())
    }

    /// The locally applied topic metadata (committed on the leader).
    pub fn topic_watch(&self) -> TopicWatch {
        self.topics.clone()
    }

    pub async fn create_topic(&self, req: CreateTopicRequest) -> Result<TopicInfo, RaftError> {
        validate_topic(&req.name, req.partitions, req.replication)
            .map_err(RaftError::InvalidRequest)?;
        match self.propose(coo_command::Op::CreateTopic(req)).await?.1 {
            coo_answer::A::Topic(t) => Ok(t),
            other => Err(RaftError::InvalidRequest(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    pub async fn delete_topic(&self, name: String) -> Result<bool, RaftError> {
        match self
            .propose(coo_command::Op::DeleteTopic(DeleteTopicRequest { name }))
            .await?
            .1
        {
            coo_answer::A::Deleted(d) => Ok(d.existed),
            other => Err(RaftError::InvalidRequest(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    pub async fn sync_group(
        &self,
        req: SyncConsumerAssignmentsRequest,
    ) -> Result<ConsumerAssignment, RaftError> {
        match self.propose(coo_command::Op::SyncGroup(req)).await?.1 {
            coo_answer::A::Assignment(a) => Ok(a),
            other => Err(RaftError::InvalidRequest(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    async fn read<T: prost::Message + Default>(
        &self,
        q: coo_query::Q,
        linearizable: bool,
    ) -> Result<T, RaftError> {
        let answer = self.node.read(coo_query(q), linearizable).await?;
        T::decode(&answer.answer[..]).map_err(|e| RaftError::Corruption(format!("coo answer: {e}")))
    }

    pub async fn list_topics(&self) -> Result<TopicInfos, RaftError> {
        self.read(coo_query::Q::Topics(ListRequest {}), true).await
    }

    pub async fn list_brokers(&self) -> Result<BrokerList, RaftError> {
        self.read(coo_query::Q::Brokers(ListRequest {}), true).await
    }

    pub async fn list_groups(&self) -> Result<GroupList, RaftError> {
        self.read(coo_query::Q::Groups(ListRequest {}), true).await
    }

    /// While this coo leads, expires brokers whose last accepted report has not
    /// changed for `timeout` on this node's clock. Leadership resets the
    /// bookkeeping, so a new leader gives every broker a full timeout (no expiry from
    /// another node's clock). A report is known by its sequence number and stamp:
    /// a broker expired and registered again between two passes may have counted up
    /// to the same sequence number, and is a new registration all the same.
    pub async fn run_broker_expiry(self, timeout: Duration) {
        let step = Duration::from_secs(1);
        // broker → ((last seq, its stamp), since when this node has seen it)
        let mut seen: BTreeMap<u64, ((u64, u64), u64)> = BTreeMap::new();
        loop {
            self.clock.sleep(step).await;
            if !self.is_leader() {
                seen.clear();
                continue;
            }
            let Ok(brokers) = self
                .read::<BrokerList>(coo_query::Q::Brokers(ListRequest {}), false)
                .await
            else {
                continue;
            };
            let now = self.clock.now_ms();
            let mut stale = Vec::new();
            let mut current = BTreeMap::new();
            for b in brokers.brokers {
                let since = match seen.get(&b.id) {
                    _ if mutants::active("coo_never_expires") => now,
                    // The report's stamp, from the clock of whichever coo accepted it
                    // (a follower since a leader change), against this one's clock.
                    _ if mutants::active("expiry_on_follower_clock") => b.last_report_ms,
                    Some(&(report, since)) if report == (b.last_seq, b.last_report_ms) => since,
                    _ => now,
                };
                if now.saturating_sub(since) >= timeout.as_millis() as u64 {
                    stale.push((b.id, b.last_seq, b.last_report_ms));
                }
                current.insert(b.id, ((b.last_seq, b.last_report_ms), since));
            }
            seen = current;
            for (broker_id, last_seq, last_report_ms) in stale {
                tracing::info!(
                    broker = broker_id,
                    "expiring a broker that stopped reporting"
                );
                let _ = self
                    .propose(coo_command::Op::ExpireBroker(ExpireBroker {
                        broker_id,
                        last_seq,
                        last_report_ms,
                    }))
                    .await;
            }
        }
    }
}
