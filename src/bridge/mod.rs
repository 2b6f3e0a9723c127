//! Link Bridge (seed 003): service discovery and a gRPC proxy on coordlab.
//!
//! The seed's replicated `ClusterState` (services, their instances, agents) lives in
//! the one keyspace under `/bridge/` ([`record`]) and changes only by the
//! transactions of [`command`], which go through the Raft log like any etcd write
//! and so are in every snapshot. Whether an agent is up is decided in one place: its
//! `/bridge/alive/` key is bound to the agent's lease, which heartbeats relayed by
//! any broker keep alive and only the leader expires. A broker's view of the
//! registry ([`state::ClusterState`]) is built from a range read and the watch
//! events after it, so it is always the registry as of one committed revision.
//! Broker-local state (clients, subscriptions) is never written to the keyspace.
//!
//! [`config`] reads the seed's YAML broker configuration.

pub mod agent;
pub mod broker;
pub mod channel;
pub mod client;
pub mod command;
pub mod config;
pub mod error;
pub mod record;
pub mod state;
pub mod view;

pub use agent::{Agent, AgentConfig, AgentState};
pub use broker::{Broker, BrokerOptions};
pub use channel::ServiceChannel;
pub use client::{ClientConfig, ClientView, DiscoveryClient, FailoverConfig, Subscription};
pub use command::Command;
pub use config::BridgeConfig;
pub use error::BridgeError;
pub use record::{AgentRecord, InstanceRecord, InstanceStatus};
pub use state::{ClusterState, Instance, Status};
pub use view::RegistryView;

#[cfg(test)]
mod tests;
