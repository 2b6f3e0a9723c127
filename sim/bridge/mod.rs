//! Link Bridge (`coordlab::bridge`, seed 003) driven inside the simulation, beside
//! the cluster and under its faults plus the bridge's own:
//!
//! - [`broker`]: brokers, each on its own host with a connection to every member
//!   (as `coordd --bridge-config` runs one), whose registry views are recorded as
//!   they publish; the harness crashes and restarts them;
//! - [`agent`]: agents, each fronting one instance of the service at a time (an
//!   [`instance`] server that records who calls it), retiring it with a shutdown
//!   notice or a plain deregistration; the harness crashes agents and cuts them
//!   off from some or all brokers ([`control`]);
//! - [`client`]: discovery clients subscribed to the service, calling it through
//!   the subscription's balanced channel and recording what their view shows;
//! - [`audit`]: at the end of the run, the committed history of `/bridge/` and
//!   every bridge write held by each member's log and snapshot.
//!
//! What they see goes into the trace as `EventKind::Bridge` events (defined in
//! `events.rs`, which `sim/trace.rs` includes), judged by the `bridge_*` checkers.
//! The scenario's `[bridge]` section (`crate::sim::scenario::bridge`) sets them up.

#[cfg(madsim)]
mod agent;
#[cfg(madsim)]
mod audit;
#[cfg(madsim)]
mod broker;
#[cfg(madsim)]
mod client;
#[cfg(madsim)]
mod context;
#[cfg(madsim)]
mod control;
#[cfg(madsim)]
mod instance;
#[cfg(madsim)]
mod run;

#[cfg(madsim)]
pub use run::{start, BridgeRun};
