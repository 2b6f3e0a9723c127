//! The coordination service's errors, each with the gRPC code and message etcd
//! returns for it (clients such as etcdctl and clientv3 match on them).

use thiserror::Error;
use tonic::{Code, Status};

use super::mvcc::MvccError;
use crate::proto;
use crate::raft::{MembershipError, RaftError};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoordError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimedOut,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// etcd's "given member URLs are invalid", saying what is wrong with them.
    #[error("etcdserver: given member URLs are invalid: {0}")]
    MemberBadUrls(String),
    /// `MemberUpdate`: a member's address is its Raft transport's and its clients'
    /// at once, fixed when it starts (see `coord::membership`).
    #[error(
        "etcdserver: coordd does not support changing a member's peer URLs; \
         remove the member and add one at the new address"
    )]
    PeerUrlUpdateUnsupported,
    /// coordlab's own: the `coordlab-write-id` metadata is not `CLIENT-SEQ`.
    #[error("coordlab: malformed coordlab-write-id {0:?}: want CLIENT-SEQ, both numbers above 0")]
    BadWriteId(String),
    /// coordlab's own: a numbered write older than its client's latest applied one.
    #[error("coordlab: request overtaken by the same client's request {latest}")]
    WriteOvertaken { latest: u64 },
    /// Anything else; the message says what.
    #[error("{message}")]
    Other { code: i32, message: String },
}

impl CoordError {
    pub fn code(&self) -> Code {
        use CoordError::*;
        match self {
            EmptyKey | KeyNotFound | DuplicateKey | TooManyOps | RequestTooLarge | UserEmpty
            | RoleEmpty | AuthFailed | PermissionNotGiven | MemberBadUrls(_) | BadWriteId(_) => {
                Code::InvalidArgument
            }
            Compacted { .. } | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | NotLeader
            | RootUserNotExist
            | RootRoleNotExist
            | UserAlreadyExist
            | UserNotFound
            | RoleAlreadyExist
            | RoleNotFound
            | RoleNotGranted
            | PermissionNotGranted
            | AuthNotEnabled
            | InvalidAuthMgmt
            | BadLeaderTransferee
            | MemberExist
            | PeerUrlExist
            | MemberNotLearner
            | LearnerNotReady
            | WriteOvertaken { .. } => Code::FailedPrecondition,
            PeerUrlUpdateUnsupported => Code::Unimplemented,
            LeaderTransferTimedOut => Code::DeadlineExceeded,
            NoLeader | LeaderChanged | Timeout => Code::Unavailable,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            Other { code, .. } => Code::from_i32(*code),
        }
    }

    /// The form carried in a replicated answer.
    pub fn to_proto(&self) -> proto::CoordError {
        proto::CoordError {
            code: self.code() as i32,
            message: self.to_string(),
            compact_revision: match self {
                CoordError::Compacted { compact_revision } => *compact_revision,
                _ => 0,
            },
        }
    }

    /// Back from a replicated answer (the message identifies etcd's errors).
    pub fn from_proto(e: &proto::CoordError) -> CoordError {
        if e.message
            == (CoordError::Compacted {
                compact_revision: 0,
            })
            .to_string()
        {
            return CoordError::Compacted {
                compact_revision: e.compact_revision,
            };
        }
        KNOWN
            .iter()
            .find(|k| k.to_string() == e.message)
            .cloned()
            .unwrap_or(CoordError::Other {
                code: e.code,
                message: e.message.clone(),
            })
    }
}

/// Errors recognised by message when they come back from a replicated answer.
const KNOWN: &[CoordError] = &[
    CoordError::EmptyKey,
    CoordError::KeyNotFound,
    CoordError::DuplicateKey,
    CoordError::TooManyOps,
    CoordError::RequestTooLarge,
    CoordError::FutureRevision,
    CoordError::LeaseNotFound,
    CoordError::LeaseExist,
    CoordError::LeaseTtlTooLarge,
    CoordError::NotLeader,
    CoordError::NoLeader,
    CoordError::LeaderChanged,
    CoordError::Timeout,
    CoordError::RootUserNotExist,
    CoordError::RootRoleNotExist,
    CoordError::UserAlreadyExist,
    CoordError::UserEmpty,
    CoordError::UserNotFound,
    CoordError::RoleAlreadyExist,
    CoordError::RoleNotFound,
    CoordError::RoleEmpty,
    CoordError::RoleNotGranted,
    CoordError::PermissionNotGranted,
    CoordError::PermissionNotGiven,
    CoordError::AuthFailed,
    CoordError::PermissionDenied,
    CoordError::AuthNotEnabled,
    CoordError::InvalidAuthToken,
    CoordError::InvalidAuthMgmt,
    CoordError::MemberNotFound,
    CoordError::BadLeaderTransferee,
    CoordError::LeaderTransferTimedOut,
    CoordError::MemberExist,
    CoordError::PeerUrlExist,
    CoordError::MemberNotLearner,
    CoordError::LearnerNotReady,
    CoordError::PeerUrlUpdateUnsupported,
];

impl From<CoordError> for Status {
    fn from(e: CoordError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<MvccError> for CoordError {
    fn from(e: MvccError) -> CoordError {
        match e {
            MvccError::Compacted { compact_revision } => CoordError::Compacted { compact_revision },
            MvccError::FutureRevision => CoordError::FutureRevision,
            MvccError::KeyNotFound => CoordError::KeyNotFound,
            MvccError::EmptyKey => CoordError::EmptyKey,
        }
    }
}

impl From<RaftError> for CoordError {
    fn from(e: RaftError) -> CoordError {
        match e {
            RaftError::NotLeader { leader_id: 0, .. } => CoordError::NoLeader,
            RaftError::NotLeader { .. } => CoordError::NotLeader,
            RaftError::ProposalDropped(_) => CoordError::LeaderChanged,
            RaftError::Timeout(_) => CoordError::Timeout,
            RaftError::Membership(e) => CoordError::from(e),
            RaftError::InvalidRequest(why) => CoordError::Other {
                code: Code::InvalidArgument as i32,
                message: why,
            },
            other => CoordError::Other {
                code: Code::Unavailable as i32,
                message: format!("etcdserver: {other}"),
            },
        }
    }
}

/// etcd's answers to the membership changes Raft refuses (etcd's v3rpc error map:
/// an unknown or removed id is "member not found", a taken URL "Peer URLs already
/// exists", a promotion of a voter or of a learner behind the leader its own two).
impl From<MembershipError> for CoordError {
    fn from(e: MembershipError) -> CoordError {
        use MembershipError::*;
        match e {
            ReservedId | NotAMember(_) => CoordError::MemberNotFound,
            AlreadyVoter(_) => CoordError::MemberExist,
            AddressInUse { .. } => CoordError::PeerUrlExist,
            NotALearner(_) => CoordError::MemberNotLearner,
            LearnerNotInSync { .. } => CoordError::LearnerNotReady,
            NoAddress(_) => CoordError::MemberBadUrls(e.to_string()),
            IdUsedBefore(_) => CoordError::Other {
                code: Code::FailedPrecondition as i32,
                message: format!("etcdserver: {e}"),
            },
            ChangeInProgress => CoordError::Other {
                code: Code::Unavailable as i32,
                message: format!("etcdserver: {e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicated_errors_keep_their_identity() {
        for e in KNOWN.iter().cloned().chain([CoordError::Compacted {
            compact_revision: 7,
        }]) {
            assert_eq!(CoordError::from_proto(&e.to_proto()), e);
        }
        let s = Status::from(CoordError::LeaseNotFound);
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        assert_eq!(
            Status::from(CoordError::InvalidAuthToken).code(),
            Code::Unauthenticated
        );
    }

    /// etcd 3.4's codes and messages for refused membership changes
    /// (api/v3rpc/rpctypes/error.go), which etcdctl prints as they are.
    #[test]
    fn membership_refusals_answer_as_etcd() {
        let status = |e: MembershipError| Status::from(CoordError::from(RaftError::from(e)));
        let cases = [
            (
                MembershipError::NotAMember(9),
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                MembershipError::AddressInUse {
                    addr: "h:1".into(),
                    id: 1,
                },
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                MembershipError::NotALearner(2),
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                MembershipError::LearnerNotInSync {
                    id: 4,
                    matched: 1,
                    last_index: 100,
                },
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                MembershipError::AlreadyVoter(2),
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
        ];
        for (refusal, code, message) in cases {
            let s = status(refusal.clone());
            assert_eq!((s.code(), s.message()), (code, message), "{refusal:?}");
        }
        let s = status(MembershipError::ChangeInProgress);
        assert_eq!(s.code(), Code::Unavailable);
        let s = Status::from(CoordError::PeerUrlUpdateUnsupported);
        assert_eq!(s.code(), Code::Unimplemented);
        assert!(s.message().contains("does not support changing"), "{s:?}");
    }
}
