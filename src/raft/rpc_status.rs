//! Mapping Raft errors to gRPC statuses, and back on the client side.
//!
//! A write on a follower fails with `FAILED_PRECONDITION` and the message
//! "not leader", plus metadata naming the leader so a client can go there directly.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::{MembershipError, RaftError};

pub const LEADER_ID_KEY: &str = "x-leader-id";
pub const LEADER_ADDR_KEY: &str = "x-leader-addr";

/// The gRPC status a client sees for `err`.
pub fn status_from_raft_error(err: RaftError) -> Status {
    match err {
        RaftError::NotLeader {
            leader_id,
            leader_addr,
        } => {
            let mut status = Status::failed_precondition("not leader");
            let meta = status.metadata_mut();
            meta.insert(LEADER_ID_KEY, MetadataValue::from(leader_id));
            if let Some(addr) = leader_addr.and_then(|a| a.parse().ok()) {
                meta.insert(LEADER_ADDR_KEY, addr);
            }
            status
        }
        RaftError::ProposalDropped(why) => Status::aborted(format!("proposal dropped: {why}")),
        RaftError::Timeout(ms) => {
            Status::deadline_exceeded(format!("request timed out after {ms} ms"))
        }
        RaftError::InvalidRequest(why) => Status::invalid_argument(why),
        // Answered as when raft-rs dropped the second of two pending changes,
        // before this check existed: clients retry it.
        RaftError::Membership(MembershipError::ChangeInProgress) => Status::aborted(format!(
            "proposal dropped: {}",
            MembershipError::ChangeInProgress
        )),
        RaftError::Membership(e) => Status::invalid_argument(e.to_string()),
        RaftError::Corruption(why) => Status::data_loss(why),
        RaftError::Unsupported(why) => Status::failed_precondition(why),
        e @ (RaftError::Storage(_) | RaftError::Transport(_) | RaftError::Stopped(_)) => {
            Status::unavailable(e.to_string())
        }
    }
}

/// The leader a "not leader" status points to: (id, address if known).
pub fn leader_hint(status: &Status) -> Option<(u64, Option<String>)> {
    if status.code() != Code::FailedPrecondition || status.message() != "not leader" {
        return None;
    }
    let meta = status.metadata();
    let id = meta.get(LEADER_ID_KEY)?.to_str().ok()?.parse().ok()?;
    let addr = meta
        .get(LEADER_ADDR_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Some((id, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_round_trips_through_status() {
        let status = status_from_raft_error(RaftError::NotLeader {
            leader_id: 3,
            leader_addr: Some("127.0.0.1:7103".into()),
        });
        assert_eq!(
            leader_hint(&status),
            Some((3, Some("127.0.0.1:7103".into())))
        );
        assert_eq!(leader_hint(&Status::unavailable("x")), None);
    }
}
