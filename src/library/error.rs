//! What the coordinator's calls fail with.

use thiserror::Error;
use tonic::Code;

use crate::client::ClientError;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoordinatorError {
    /// The call through the client core failed (no endpoints, refused, or out of
    /// attempts).
    #[error(transparent)]
    Client(ClientError),
    /// `try_acquire` found the lock held.
    #[error("lock {key:?} is held by another owner")]
    LockHeld { key: String },
    /// The lease behind a lock or registration is gone (expired or revoked).
    #[error("lease {lease:x} is gone")]
    LeaseLost { lease: i64 },
    #[error("waiting for {what} timed out")]
    Timeout { what: String },
    /// A stored value does not deserialize into the requested type.
    #[error("key {key:?}: cannot decode value: {reason}")]
    Decode { key: String, reason: String },
    #[error("key {key:?}: cannot encode value: {reason}")]
    Encode { key: String, reason: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// A watch's start revision was compacted away; resume from a fresh read.
    #[error("watch on {key:?}: history before revision {compact_revision} was compacted")]
    Compacted { key: String, compact_revision: i64 },
    #[error("service {name:?} has no instances")]
    NoInstances { name: String },
    #[error("the coordinator is closed")]
    Closed,
}

impl From<ClientError> for CoordinatorError {
    fn from(e: ClientError) -> Self {
        match e {
            // One closed state: the coordinator closes its connection.
            ClientError::Closed => CoordinatorError::Closed,
            e => CoordinatorError::Client(e),
        }
    }
}

impl CoordinatorError {
    /// The gRPC code of a rejection.
    pub fn code(&self) -> Option<Code> {
        match self {
            CoordinatorError::Client(e) => e.code(),
            _ => None,
        }
    }
}
