//! What a call through the client core fails with.

use thiserror::Error;
use tonic::Code;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ClientError {
    #[error("no endpoints configured")]
    NoEndpoints,
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The cluster refused the request; retrying cannot help.
    #[error("{endpoint}: {code:?}: {message}")]
    Rejected {
        endpoint: String,
        code: Code,
        message: String,
    },
    /// Every attempt failed with a retryable error, or the call's deadline passed.
    #[error("gave up after {attempts} attempts; last error: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("the connection is closed")]
    Closed,
}

impl ClientError {
    /// The gRPC code of a rejection.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}
