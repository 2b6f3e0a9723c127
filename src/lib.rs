//! coordlab: a Raft coordination stack that runs for real, and compiles unchanged
//! against madsim's simulated network, clock and disk (`--cfg madsim`).
//!
//! The folders follow the architecture:
//!
//! - [`seams`]: the only places where the real and the simulated world differ —
//!   Disk, Clock and Observer (the Transport seam is [`transport`]).
//! - [`raft`]: the Raft core on raft-rs's `RawNode` and its storage engine.
//! - [`transport`]: Raft messages between nodes over gRPC.
//! - [`kv`]: the replicated key-value state machine.
//! - [`mq`]: the MQ control plane — the coo, brokers and the LogicNode (seed 000).
//! - [`server`]: a whole `coordd` node: Raft core, transport and client API.
//! - [`client`]: a client that finds and follows the leader (`coordctl` uses it).
//! - [`sync`]: a watch channel whose waiters wake in a fixed order.

pub mod client;
pub mod coord;
pub mod coordinator;
pub mod kv;
pub mod mq;
pub mod proto;
pub mod raft;
pub mod seams;
pub mod server;
pub mod sync;
pub mod transport;
