//! What can go wrong in the bridge, by name.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BridgeError {
    /// A `/bridge/` key whose value is not the record its key promises.
    #[error("bridge key `{key}` holds a value that does not decode: {reason}")]
    Decode { key: String, reason: String },
    /// A `/bridge/` key outside the layout of [`crate::bridge::record`].
    #[error("bridge key `{key}` is not a key of the bridge's layout")]
    UnknownKey { key: String },
    /// A name or id that cannot be a key segment.
    #[error("{what} `{value}` is not valid: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A watch event older than the view it is applied to.
    #[error("event at revision {event} is older than the view's revision {view}")]
    StaleEvent { event: i64, view: i64 },
    /// The cluster could not be read or written.
    #[error("bridge: the cluster did not answer: {0}")]
    Cluster(String),
    /// A peer broke the bridge's protocol.
    #[error("bridge protocol: {0}")]
    Protocol(&'static str),
    /// An instance or agent the request names is not in the registry.
    #[error("not in the registry: {0}")]
    NotFound(String),
    /// The registry changed under a command that depended on it.
    #[error("refused: {0}")]
    Conflict(String),
    /// A broker refused an agent's request; its reason.
    #[error("the broker refused: {0}")]
    Refused(String),
    /// The broker configuration file's text.
    #[error("bridge configuration: {reason}")]
    Config { reason: String },
}
