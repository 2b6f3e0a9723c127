//! Raft consensus: a proposal is an entry in the Raft log (the put of its key),
//! `Committed` once the cluster acknowledged that entry — committed by a majority
//! and applied by the leader — and `Rejected` if a later entry decided it was not
//! made in time. Either decision is itself a log entry (whichever of the two
//! writes comes first in the log wins), so every member agrees on it for good.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys;
use super::kv::{decode, encode, Created, Kv};
use super::members;
use crate::flow::consensus::{ConsensusEngine, ProposalStatus, Vote};
use crate::flow::error::{FlowError, FlowResult};
use crate::flow::types::{NodeId, ProposalId, StateChange};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::seams::mutants;

/// What a proposal's key holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalRecord {
    /// Absent in a rejection written in place of a proposal that never arrived.
    pub change: Option<StateChange>,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Committed,
    Rejected { reason: String },
}

impl Decision {
    fn status(&self) -> ProposalStatus {
        match self {
            Decision::Committed => ProposalStatus::Committed,
            Decision::Rejected { reason } => ProposalStatus::Rejected {
                reason: reason.clone(),
            },
        }
    }
}

/// How often an undecided proposal's decision is retried while the cluster is away.
const DECIDE_RETRY: Duration = Duration::from_millis(500);

pub struct RaftConsensus {
    kv: Kv,
    node: NodeId,
    /// How long a proposal may take before it is decided against.
    timeout: Duration,
    last_sequence: AtomicU64,
    /// This process's proposals: pending ones, and decisions it saw.
    decided: Arc<Mutex<BTreeMap<u64, ProposalStatus>>>,
}

impl RaftConsensus {
    /// Continues `node`'s proposal numbering from the highest it has in the log.
    pub async fn connect(kv: Kv, node: NodeId, timeout: Duration) -> FlowResult<Self> {
        let (last, _) = kv
            .list_with(
                "propose",
                &keys::proposals_of(&node),
                SortTarget::Key,
                SortOrder::Descend,
                1,
            )
            .await?;
        let last_sequence = last
            .first()
            .and_then(|kv| keys::number_at_end(&kv.key))
            .unwrap_or(0);
        Ok(RaftConsensus {
            kv,
            node,
            timeout,
            last_sequence: AtomicU64::new(last_sequence),
            decided: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    fn decided(&self) -> MutexGuard<'_, BTreeMap<u64, ProposalStatus>> {
        self.decided.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The proposal's status, or `NotFound` for an id nobody issued.
    async fn read_status(&self, id: &ProposalId) -> FlowResult<ProposalStatus> {
        if id.origin == self.node {
            if let Some(status) = self.decided().get(&id.sequence) {
                return Ok(status.clone());
            }
        }
        let key = keys::proposal(&id.origin, id.sequence);
        match self.kv.get("status", &key).await? {
            Some(kv) => Ok(decode::<ProposalRecord>("proposal", &kv)?.decision.status()),
            None => Err(FlowError::not_found("proposal", id)),
        }
    }
}

/// Writes the proposal; if the cluster does not take it within `timeout`, writes a
/// rejection in its place until one of the two is in the log. Returns the decision.
async fn decide(kv: Kv, key: String, change: StateChange, timeout: Duration) -> ProposalStatus {
    let record = ProposalRecord {
        change: Some(change),
        decision: Decision::Committed,
    };
    let proposed = kv.put_if_absent("propose", &key, encode(&record));
    if let Ok(Ok(created)) = tokio::time::timeout(timeout, proposed).await {
        return judge(created, &record, true);
    }
    let rejection = ProposalRecord {
        change: None,
        decision: Decision::Rejected {
            reason: format!("not committed within {timeout:?}"),
        },
    };
    loop {
        match kv.put_if_absent("propose", &key, encode(&rejection)).await {
            Ok(created) => return judge(created, &record, false),
            Err(e) => {
                tracing::debug!(%key, error = %e, "deciding a proposal: the cluster is away");
                tokio::time::sleep(DECIDE_RETRY).await;
            }
        }
    }
}

/// The decision a write of the proposal (`wrote_proposal`) or of its rejection
/// found in the log.
fn judge(created: Created, record: &ProposalRecord, wrote_proposal: bool) -> ProposalStatus {
    match created {
        Created::At(_) if wrote_proposal => ProposalStatus::Committed,
        Created::At(_) => ProposalStatus::Rejected {
            reason: "not committed in time".into(),
        },
        Created::Existing(existing) => match decode::<ProposalRecord>("proposal", &existing) {
            // Our own proposal, written by an attempt whose answer was lost.
            Ok(found) if &found == record => ProposalStatus::Committed,
            Ok(found) if found.change.is_none() => found.decision.status(),
            Ok(_) => ProposalStatus::Rejected {
                reason: "another process with this node id used the proposal's number".into(),
            },
            Err(e) => ProposalStatus::Rejected {
                reason: e.to_string(),
            },
        },
    }
}

#[tonic::async_trait]
impl ConsensusEngine for RaftConsensus {
    /// Returns at once with the proposal's id; the write runs in the background
    /// and `status` follows it.
    async fn propose(&self, change: StateChange) -> FlowResult<ProposalId> {
        let sequence = self.last_sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let id = ProposalId {
            origin: self.node.clone(),
            sequence,
        };
        // The mutant reports the proposal committed before the cluster has it.
        let early = mutants::active("flow_commit_before_apply");
        let status = if early {
            ProposalStatus::Committed
        } else {
            ProposalStatus::Pending
        };
        self.decided().insert(sequence, status);
        let (kv, decided, timeout) = (self.kv.clone(), self.decided.clone(), self.timeout);
        let key = keys::proposal(&self.node, sequence);
        tokio::spawn(async move {
            let status = decide(kv, key, change, timeout).await;
            tracing::debug!(sequence, ?status, "flow: proposal decided");
            if !early {
                let mut decided = decided.lock().unwrap_or_else(|e| e.into_inner());
                decided.insert(sequence, status);
            }
        });
        Ok(id)
    }

    /// Raft decides by replication, not ballots: a member's vote is its
    /// acceptance of the entry. A vote on a known proposal changes nothing.
    async fn vote(&self, proposal_id: ProposalId, _vote: Vote) -> FlowResult<()> {
        self.read_status(&proposal_id).await.map(|_| ())
    }

    /// Waits (up to the consensus timeout) for the proposal to be decided.
    async fn commit(&self, proposal_id: ProposalId) -> FlowResult<()> {
        let waited = tokio::time::timeout(self.timeout * 2, async {
            loop {
                if self.read_status(&proposal_id).await? != ProposalStatus::Pending {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(FlowError::Unavailable {
                call: "commit",
                reason: format!("{proposal_id} still undecided"),
            })
        })
    }

    /// The proposing process follows its proposal from `Pending`; any other
    /// process sees it once decided (`NotFound` before: it is not in the log yet).
    async fn status(&self, proposal_id: ProposalId) -> FlowResult<ProposalStatus> {
        self.read_status(&proposal_id).await
    }

    /// The Raft leader's client address.
    async fn get_leader(&self) -> FlowResult<Option<NodeId>> {
        Ok(members::leader(self.kv.connection()).await)
    }

    /// Moves leadership to another member (etcd's `MoveLeader`): an election the
    /// transferee wins at once.
    async fn trigger_election(&self) -> FlowResult<()> {
        members::transfer_leadership(self.kv.connection()).await
    }
}
