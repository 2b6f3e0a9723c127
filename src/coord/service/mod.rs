//! The etcd v3 gRPC services, one module each, over one shared [`CoordContext`].

pub mod auth;
pub mod cluster;
pub mod forward;
pub mod kv;
pub mod lease;
pub mod lock;

pub mod maintenance;
pub mod watch;

use std::sync::Arc;

use tonic::Request;

use super::auth::Access;
use super::errors::CoordError;
use super::forward::Proposer;
use super::lessor::Lessor;
use super::state::SharedCoordState;
use crate::proto::coord_command::Op;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::CoordCommand;

/// The cluster id every member reports (coordlab clusters are told apart by their
/// member addresses, not by this id).
pub const CLUSTER_ID: u64 = 0x636f_6f72_646c_6162;
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
pub use crate::proto::metadata::{parse_write_id, TOKEN_KEY, WRITE_ID_KEY};

/// What every coordination service of one member shares.
#[derive(Clone)]
pub struct CoordContext {
    pub member_id: u64,
    pub state: SharedCoordState,
    pub proposer: Arc<Proposer>,
    pub lessor: Arc<Lessor>,
}

impl CoordContext {
    /// A response header at the state's current revision.
    pub fn header(&self) -> ResponseHeader {
        let mut h = self.state.lock().header();
        h.cluster_id = CLUSTER_ID;
        h.raft_term = self.proposer.handle().leader().term;
        h
    }

    /// Stamps a header the state machine produced with this member's view.
    pub fn stamp(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let mut h = header.unwrap_or_default();
        h.cluster_id = CLUSTER_ID;
        h.member_id = self.member_id;
        h.raft_term = self.proposer.handle().leader().term;
        Some(h)
    }

    /// A command carrying the request's token, for the apply-time permission check,
    /// and its request id, if the client numbers its requests.
    pub fn command<T>(&self, request: &Request<T>, op: Op) -> Result<CoordCommand, CoordError> {
        let metadata = request.metadata();
        let write_id = match metadata.get(WRITE_ID_KEY) {
            None => None,
            Some(v) => {
                let text = v.to_str().unwrap_or_default();
                Some(parse_write_id(text).ok_or_else(|| CoordError::BadWriteId(text.into()))?)
            }
        };
        Ok(CoordCommand {
            op: Some(op),
            token: metadata
                .get(TOKEN_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            write_id,
        })
    }

    /// The authenticated user (`None` while auth is off).
    pub fn user<T>(&self, request: &Request<T>) -> Result<Option<String>, CoordError> {
        let state = self.state.lock();
        if !state.auth.enabled() {
            return Ok(None);
        }
        let token = request
            .metadata()
            .get(TOKEN_KEY)
            .and_then(|v| v.to_str().ok())
            .ok_or(CoordError::UserEmpty)?;
        state
            .auth
            .user_of_token(token)
            .map(|u| Some(u.to_string()))
            .ok_or(CoordError::InvalidAuthToken)
    }

    /// Fails unless the request's user may do `access` (always allowed with auth off).
    pub fn authorize<T>(&self, request: &Request<T>, access: Access<'_>) -> Result<(), CoordError> {
        let Some(user) = self.user(request)? else {
            return Ok(());
        };
        if self.state.lock().auth.permits(&user, access) {
            Ok(())
        } else {
            Err(CoordError::PermissionDenied)
        }
    }

    /// Waits until this member has applied everything committed when the call
    /// began (ReadIndex), so a read after it is linearizable.
    pub async fn linearizable_barrier(&self) -> Result<(), CoordError> {
        super::forward::with_deadline(
            self.proposer.clock(),
            super::forward::REQUEST_TIMEOUT,
            self.proposer.confirm_leadership(),
        )
        .await
    }
}

/// etcd's request-size limit.
pub fn check_size(message: &impl prost::Message) -> Result<(), CoordError> {
    if message.encoded_len() > MAX_REQUEST_BYTES {
        return Err(CoordError::RequestTooLarge);
    }
    Ok(())
}
