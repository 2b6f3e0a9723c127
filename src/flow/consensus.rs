//! The consensus layer: changes are proposed, decided and then committed.

use serde::{Deserialize, Serialize};

use super::error::FlowResult;
use super::types::{NodeId, ProposalId, StateChange};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vote {
    Approve,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalStatus {
    /// Proposed, not decided yet.
    Pending,
    /// Decided and durable: it will be applied everywhere, once, in one order.
    Committed,
    Rejected {
        reason: String,
    },
}

/// A consensus engine (the seed's NoOp, Raft, later others).
///
/// Contract, for every implementation:
/// - `propose` returns an id no other proposal in the cluster has;
/// - `status` of an id `propose` returned is `Pending` until decided, then
///   `Committed` or `Rejected` for good; an id never returned by `propose` is
///   `NotFound`;
/// - once `status` says `Committed`, every member applies the change, once, in the
///   same order as every other committed change;
/// - `vote` and `commit` on a decided proposal change nothing and succeed;
/// - `get_leader` names a member, or `None` while there is no leader.
#[tonic::async_trait]
pub trait ConsensusEngine: Send + Sync {
    async fn propose(&self, change: StateChange) -> FlowResult<ProposalId>;

    /// This node's vote on a proposal.
    async fn vote(&self, proposal_id: ProposalId, vote: Vote) -> FlowResult<()>;

    /// Asks for a decided proposal to be committed.
    async fn commit(&self, proposal_id: ProposalId) -> FlowResult<()>;

    async fn status(&self, proposal_id: ProposalId) -> FlowResult<ProposalStatus>;

    async fn get_leader(&self) -> FlowResult<Option<NodeId>>;

    /// Asks for a new leader election; returns once it was started, not decided.
    async fn trigger_election(&self) -> FlowResult<()>;
}
