//! Typed errors of the Raft layer.

use thiserror::Error;

use super::storage::StorageError;

/// Why a request to the Raft node failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RaftError {
    /// This node is not the leader; `leader_id` 0 means no leader is known.
    #[error("not leader (leader is {leader_id} at {leader_addr:?})")]
    NotLeader {
        leader_id: u64,
        leader_addr: Option<String>,
    },
    /// The proposal was dropped (leader change, leader transfer in progress, or its
    /// log position was taken by another leader's entry).
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// The request did not complete before its deadline.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// Persisting failed; the node has stopped.
    #[error("storage: {0}")]
    Storage(String),
    /// A message could not be delivered.
    #[error("transport: {0}")]
    Transport(String),
    /// Persistent data failed its checksum or is inconsistent.
    #[error("corruption: {0}")]
    Corruption(String),
    /// The request itself is invalid (e.g. a membership change that makes no sense).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The membership change was refused before it was proposed.
    #[error("{0}")]
    Membership(#[from] super::membership::MembershipError),
    /// The data holds what this version no longer reads (it names the version).
    #[error("unsupported data: {0}")]
    Unsupported(String),
    /// The node has stopped (shut down, removed from the cluster, or failed).
    #[error("node stopped: {0}")]
    Stopped(String),
}

impl From<StorageError> for RaftError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Corruption { .. } => RaftError::Corruption(e.to_string()),
            other => RaftError::Storage(other.to_string()),
        }
    }
}
