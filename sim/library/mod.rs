//! The client library (`coordlab::library`, seed 001) driven inside
//! the simulation, under the same faults as the cluster it talks to.
//!
//! Every library client runs on its own madsim host with its own `Coordinator`
//! (madsim's simulated tonic and time underneath):
//!
//! - [`locks`]: lock clients `acquire` / `try_acquire` a short-TTL lock and, while
//!   the guard says `is_held()`, write with their fencing token to a
//!   [`fenced`] resource that refuses tokens below the highest it accepted;
//! - [`registry`]: providers register and deregister (or "crash" and let the lease
//!   expire) instances of one service; consumers hold `get_connection` and a
//!   `registry().watch`, pinned to one member, and sample `next_channel()`;
//! - [`config`]: writers `config().set` unique values to a few shared keys; watchers
//!   (`watch` and `watch_prefix`) record every change they deliver, and every time
//!   the library resumed their watch (some are cut off from the cluster for a while
//!   — [`isolation`] — so that it must);
//! - [`audit`]: at the end of the run, the committed history of the config keys,
//!   each lock guard's key at its fencing token's revision, and the leases left once
//!   the clients stopped.
//!
//! What they see goes into the trace as `EventKind::Library` events (defined in
//! `events.rs`, which `sim/trace.rs` includes), judged by the `library_*` checkers
//! in `sim/checkers/`. The scenario's `[library]` section
//! (`crate::sim::scenario::library`) sets the clients and the library configuration.

#[cfg(madsim)]
mod audit;
#[cfg(madsim)]
mod config;
#[cfg(madsim)]
mod context;
#[cfg(madsim)]
pub mod fenced;
#[cfg(madsim)]
mod isolation;
#[cfg(madsim)]
mod locks;
#[cfg(madsim)]
mod registry;
#[cfg(madsim)]
mod run;

#[cfg(madsim)]
pub use context::Stop;
#[cfg(madsim)]
pub use run::{start, LibraryRun};
