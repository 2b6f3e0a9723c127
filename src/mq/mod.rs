//! The MQ control plane (seed 000): the coo — a Raft-replicated metadata controller
//! — its brokers, and the LogicNode that runs a broker and a coo in one process and
//! talks in-process (Local mode) while its own coo leads, over gRPC otherwise.

pub mod broker;
pub mod client;
pub mod coo;
pub mod logic_node;
