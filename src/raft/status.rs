//! A snapshot of a node's Raft state, for `coordctl status` and tests.

use std::collections::{BTreeMap, BTreeSet};

use raft::StateRole;

use super::pending::ProposalCounts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    pub role: StateRole,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_log_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
    /// Members of the applied configuration with their addresses.
    pub members: BTreeMap<u64, String>,
    /// Which of `members` are learners (non-voting).
    pub learners: BTreeSet<u64>,
    /// Proposals this node appended as leader since it started.
    pub proposals: ProposalCounts,
}

/// The lower-case name of a role, as printed by `coordctl status`.
pub fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::Leader => "leader",
        StateRole::PreCandidate => "pre-candidate",
    }
}

/// Who leads, as this node last saw it (published on every role change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaderInfo {
    pub leader_id: u64,
    pub term: u64,
    /// This node is the leader.
    pub is_self: bool,
}
