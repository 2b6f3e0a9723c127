//! Raft messages between nodes over gRPC: [`GrpcTransport`], the real implementation
//! of the [`Transport`](crate::seams::transport::Transport) seam (madsim-tonic: real
//! gRPC normally, madsim's simulated network under `--cfg madsim`); the harness wraps
//! it with its link faults (drop, duplicate, delay), which exist only in simulation
//! builds.
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

pub use grpc::GrpcTransport;
pub use peer::MAX_GRPC_MESSAGE_BYTES;
pub use server::{RaftTransportService, ReceiveError};
