//! The Transport seam: Raft messages between nodes.
//!
//! [`Transport`] is what the Raft core sends through. The real implementation is
//! [`GrpcTransport`] (madsim-tonic: real gRPC normally, madsim's simulated network
//! under `--cfg madsim`); the harness wraps it with its fault hooks (drop, duplicate,
//! delay per link), which exist only in simulation builds.
//!
//! On the wire (proto/coordlab.proto, `RaftTransport`): one long-lived stream per
//! peer, batches pipelined into it (`peer.rs` sends, `window.rs` keeps the sender's
//! account of unanswered batches, `server.rs` receives).

mod grpc;
mod peer;
mod server;
mod window;

#[cfg(test)]
mod tests;

use raft::eraftpb::Message;

pub use grpc::GrpcTransport;
pub use peer::MAX_GRPC_MESSAGE_BYTES;
pub use server::{RaftTransportService, ReceiveError};

/// Sends Raft messages to peers.
///
/// Contract: `send_raft_messages` never blocks and never waits for the network; a
/// message that cannot be delivered is dropped (Raft retransmits) and the failure is
/// reported to the node as an unreachable peer.
pub trait Transport: Send + Sync + 'static {
    fn send_raft_messages(&self, messages: Vec<Message>);
    /// Adds `id` at `addr`, or moves it there.
    fn set_peer(&self, id: u64, addr: &str);
    /// Adds `id` at `addr` only if `id` is unknown: a peer that contacted us before
    /// we applied the change that added it (otherwise we could never answer it, and
    /// never receive the snapshot that carries that change).
    fn learn_peer(&self, id: u64, addr: &str);
    fn remove_peer(&self, id: u64);
}
