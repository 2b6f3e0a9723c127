//! FlowBuilder (`coordlab::flow`, seed 002) driven inside the simulation: flow
//! hosts (`flow-1` …), each a madsim host with its own Raft service container
//! (`ServiceContainer::new_cluster`, a client of the cluster over the etcd v3
//! API), under the cluster's faults.
//!
//! - [`host`]: each host proposes state changes and follows them to a decision;
//!   takes the shared lock (a short TTL), writes to a fenced store with its
//!   token (the library's [`FencedResources`](crate::sim::library::fenced)),
//!   renews — sometimes only after sleeping past the TTL; publishes numbered
//!   cluster and local events, and (the first `subscribers` hosts) records every
//!   envelope it receives; broadcasts workflow and task changes;
//! - [`run`]: at the end (after healing, every host stopped) each host calls
//!   `force_sync` and `check_consistency`, the subscribers get a few seconds to
//!   catch up, and [`audit`] reads each member's own copy of `/flow/proposals/`
//!   and `/flow/changes/` at one revision.
//!
//! What they see goes into the trace as `EventKind::Flow` events (defined in
//! `events.rs`, which `sim/trace.rs` includes), judged by the `flow_*` checkers.
//! The scenario's `[flow]` section (`crate::sim::scenario::flow`) sets them up.

#[cfg(madsim)]
mod audit;
#[cfg(madsim)]
mod context;
#[cfg(madsim)]
mod host;
#[cfg(madsim)]
mod run;

#[cfg(madsim)]
pub use run::{start, FlowRun};
