//! The Raft core on raft-rs 0.7, split by job (seed 004):
//!
//! - [`router`]: the MessageRouter — every input enters one inbox; [`RaftHandle`]
//!   is the node's public API;
//! - [`core`]: RaftCore — owns the `RawNode`, steps inputs, tracks requests;
//! - [`membership`]: which membership change may be proposed (pure);
//! - [`output`]: the OutputProcessor — one Ready's I/O, in the documented order;
//! - [`node`]: the async loop driving them on the node's clock;
//! - [`storage`]: the WAL + snapshot storage engine;
//! - [`rpc_status`]: a Raft error as the gRPC status a client sees, and back;
//! - [`seen_proposals`]: a leader appends a forwarded proposal once, however often
//!   it arrives;
//! - [`pending`], [`status`], [`config`], [`error`], [`state_machine`]: what they say.

pub mod config;
pub mod core;
pub mod error;
pub mod membership;
pub mod node;
pub mod output;
pub mod pending;
pub mod router;
pub mod rpc_status;
pub mod seen_proposals;
pub mod snapshot_writer;
pub mod state_machine;
pub mod status;
pub mod storage;

pub use config::RaftConfig;
pub use core::{Bootstrap, NodeEnv, RaftCore};
pub use error::RaftError;
pub use membership::{MembershipError, LEARNER_IN_SYNC_MAX_LAG_ENTRIES};
pub use node::{inbox, run_raft_node, Inbox};
pub use pending::ProposalCounts;
pub use router::{
    Input, MembershipApplied, MembershipChange, MembershipTicket, ProposalTicket, RaftHandle,
};
pub use state_machine::{SnapshotEncoder, StateMachine};
pub use status::{role_name, LeaderInfo, NodeStatus};

#[cfg(test)]
mod tests;
