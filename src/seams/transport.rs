//! The Transport seam: what the Raft core sends its messages through. The real
//! implementation is `crate::transport::GrpcTransport`; the harness wraps it with
//! its link faults.

use raft::eraftpb::Message;

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
