//! The coordination service (seed 001): coordlab's own Raft serving etcd's v3 API.
//!
//! - [`mvcc`]: the multi-version keyspace with etcd's revision rules (pure).
//! - [`leases`], [`auth`]: the replicated lease table and auth store (pure).
//! - [`state`]: the replicated state they form, applied from the log; [`watch_hub`]
//!   fans its changes out to this member's watchers.
//! - [`txn_check`]: etcd's checks on a txn's shape (op count, duplicate keys).
//! - [`lessor`]: leader-local lease expiry and keep-alives.
//! - [`compactor`]: leader-local auto-compaction of the history (etcd's flags).
//! - [`forward`]: proposing from any member (a follower forwards to the leader).
//! - [`membership`]: etcd's membership calls (MemberAdd, ...) on the leader's Raft.
//! - [`service`]: the etcd v3 gRPC services (KV, Watch, Lease, Lock, Cluster,
//!   Maintenance, Auth).

pub mod applied_writes;
pub mod auth;
pub mod compactor;
pub mod convert;
pub mod errors;
pub mod forward;
pub mod leases;
pub mod lessor;
pub mod membership;
pub mod mvcc;
pub mod service;
pub mod state;
pub mod txn_check;
pub mod watch_hub;
