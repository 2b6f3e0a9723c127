//! What the flow interfaces fail with: one typed enum for every implementation, so
//! a caller's error handling does not change when configuration swaps the local
//! implementations for the Raft ones.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// A mode or algorithm this build does not implement (P2P, Byzantine, PoS, …).
    #[error("unsupported: {what}")]
    Unsupported { what: String },
    /// The configuration is wrong; `field` is its path (`consensus.batch_size`).
    #[error("configuration field `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// The configuration file could not be read.
    #[error("configuration file {file:?}: {reason}")]
    ConfigRead { file: String, reason: String },
    /// `kind` names what was looked up (`workflow`, `task`, `proposal`, `node`, …).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// A state change that does not follow from the current state (completing a
    /// task that is not running).
    #[error("{subject}: {reason}")]
    InvalidTransition { subject: String, reason: String },
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },
    /// The lock behind a guard is no longer this holder's: its TTL ran out (and
    /// maybe someone else holds it now) or it was released.
    #[error("lock {resource:?} with fencing token {token} is lost")]
    LockLost { resource: String, token: u64 },
    /// A routing rule refuses events on this topic.
    #[error("topic {topic:?} is refused by the routing rule for prefix {prefix:?}")]
    Rejected { topic: String, prefix: String },
    /// The subscriber's queue was full and `missed` items were dropped here; they
    /// are counted as dropped in the publisher's statistics. Items after the gap
    /// follow.
    #[error("subscriber lagged: {missed} item(s) dropped")]
    Lagged { missed: u64 },
    /// The cluster did not answer `call` (no member reachable, no leader within
    /// the deadline, or a rejection the call cannot recover from). Whether a write
    /// took effect is unknown unless the call says otherwise.
    #[error("{call}: the cluster did not answer: {reason}")]
    Unavailable { call: &'static str, reason: String },
    /// Data the cluster holds does not decode (written by something else).
    #[error("corrupt {what} at {key:?}: {reason}")]
    Corrupt {
        what: &'static str,
        key: String,
        reason: String,
    },
    /// The other end of a subscription is gone.
    #[error("closed")]
    Closed,
}

impl FlowError {
    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        FlowError::Unsupported { what: what.into() }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Self {
        FlowError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        FlowError::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }
}

pub type FlowResult<T> = Result<T, FlowError>;
