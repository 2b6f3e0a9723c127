//! coordlab: a Raft coordination stack that runs for real, and compiles unchanged
//! against madsim's simulated network, clock and disk (`--cfg madsim`).
//!
//! The folders follow the architecture, bottom to top; sibling modules never use
//! each other both ways (`tests/tidy_layers.rs` fails on any cycle):
//!
//! - [`seams`]: the only places where the real and the simulated world differ —
//!   Disk, Clock, Observer and Transport — and the catalog of injected bugs;
//! - [`sync`]: a watch channel whose waiters wake in a fixed order;
//! - [`proto`]: the protobuf/gRPC types (coordlab's own and etcd's v3 API);
//! - [`raft`]: the Raft core on raft-rs's `RawNode`, its storage engine, and how a
//!   Raft error reaches a gRPC client;
//! - [`transport`]: Raft messages between nodes over gRPC (the real Transport);
//! - [`client`]: a leader-following client of coordlab's own services (admin, coo);
//! - [`coord`]: the coordination service — etcd's v3 API (KV, watch, lease, lock,
//!   auth, cluster membership, maintenance) on coordlab's Raft, the one keyspace,
//!   with numbered writes applied once;
//! - [`library`]: the client library over the etcd API (seed 001): locks, a
//!   service registry with balanced connections, a config center;
//! - [`bridge`]: Link Bridge (seed 003) — a service and agent registry in the
//!   keyspace, kept by brokers for agents and clients;
//! - [`flow`]: FlowBuilder's distributed interfaces (seed 002) — consensus, nodes,
//!   state sync, locks and an event bus behind traits, chosen by configuration;
//! - [`mq`]: the MQ control plane — the coo, brokers and the LogicNode (seed 000);
//! - [`server`]: a whole `coordd` node, wiring all of the above to the seams it is
//!   given;
//! - [`metrics`]: a node's Prometheus series, fed by an Observer and read from the
//!   running node at scrape time (`coordd --metrics-listen`).

pub mod bridge;
pub mod client;
pub mod coord;
pub mod flow;
pub mod library;
pub mod logs;
pub mod metrics;
pub mod mq;
pub mod proto;
pub mod raft;
pub mod seams;
pub mod server;
pub mod sync;
pub mod transport;
