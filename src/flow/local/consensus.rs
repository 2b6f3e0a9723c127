//! NoOp consensus: one member, so every proposal is committed as it is made.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::flow::consensus::{ConsensusEngine, ProposalStatus, Vote};
use crate::flow::error::{FlowError, FlowResult};
use crate::flow::types::{NodeId, ProposalId, StateChange};

/// Commits each proposal at once. It keeps no proposals: the ids it handed out are
/// exactly this node's sequences 1..=last, so their status needs no memory.
pub struct NoOpConsensus {
    node: NodeId,
    last_sequence: AtomicU64,
}

impl NoOpConsensus {
    pub fn new(node: NodeId) -> Self {
        NoOpConsensus {
            node,
            last_sequence: AtomicU64::new(0),
        }
    }

    fn known(&self, id: &ProposalId) -> FlowResult<()> {
        let issued = id.origin == self.node
            && (1..=self.last_sequence.load(Ordering::SeqCst)).contains(&id.sequence);
        if !issued {
            return Err(FlowError::not_found("proposal", id));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ConsensusEngine for NoOpConsensus {
    async fn propose(&self, change: StateChange) -> FlowResult<ProposalId> {
        let sequence = self.last_sequence.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::trace!(sequence, ?change, "proposal committed at once (NoOp)");
        Ok(ProposalId {
            origin: self.node.clone(),
            sequence,
        })
    }

    /// Every proposal is decided when made: the vote changes nothing.
    async fn vote(&self, proposal_id: ProposalId, _vote: Vote) -> FlowResult<()> {
        self.known(&proposal_id)
    }

    async fn commit(&self, proposal_id: ProposalId) -> FlowResult<()> {
        self.known(&proposal_id)
    }

    async fn status(&self, proposal_id: ProposalId) -> FlowResult<ProposalStatus> {
        self.known(&proposal_id)?;
        Ok(ProposalStatus::Committed)
    }

    async fn get_leader(&self) -> FlowResult<Option<NodeId>> {
        Ok(Some(self.node.clone()))
    }

    /// The only member wins every election.
    async fn trigger_election(&self) -> FlowResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::types::WorkflowDef;

    fn change() -> StateChange {
        StateChange::WorkflowCreated {
            workflow_id: "w".into(),
            definition: WorkflowDef::default(),
        }
    }

    #[tokio::test]
    async fn proposals_are_committed_and_unknown_ids_are_not_found() {
        let c = NoOpConsensus::new("n1".into());
        let first = c.propose(change()).await.unwrap();
        let second = c.propose(change()).await.unwrap();
        assert_eq!((first.sequence, second.sequence), (1, 2));
        assert_eq!(
            c.status(second.clone()).await.unwrap(),
            ProposalStatus::Committed
        );
        let never = ProposalId {
            origin: "n1".into(),
            sequence: 3,
        };
        assert!(matches!(
            c.status(never).await,
            Err(FlowError::NotFound { .. })
        ));
        let foreign = ProposalId {
            origin: "n2".into(),
            sequence: 1,
        };
        assert!(c.vote(foreign, Vote::Approve).await.is_err());
        assert_eq!(c.get_leader().await.unwrap(), Some("n1".into()));
    }
}
