//! coordlab's deterministic simulation harness.
//!
//! The pure parts — the trace, the invariant checkers and scenario files — build
//! everywhere (their unit tests run in `cargo test` through `tests/harness.rs`). Everything that
//! drives madsim builds only under `--cfg madsim` (through `tests/sim.rs`):
//!
//! - [`disk`] (builds everywhere: its recovery property test runs in `cargo test`),
//!   [`clock`], [`net`]: the simulated implementations of the seams, with
//!   their fault models;
//! - [`scenario`]: scenario files (TOML) and their validation (the `[library]`
//!   section in `scenario::library`);
//! - [`budget`]: which nodes a run may lose for good (pure);
//! - [`faults`]: the fault plan — swarm-drawn and timeline events — and its driver;
//! - [`workload`]: client workloads that record invoke/complete history;
//! - [`coord`]: workloads on the etcd v3 API (registers, locks, leases, watches,
//!   the TTL-only demo) and the end-of-run audit;
//! - [`library`]: the client library (`coordlab::library`) driven as clients —
//!   locks with a fenced resource, registry routing, config watches — and its
//!   end-of-run audits (its `[library]` scenario section builds everywhere);
//! - [`bridge`]: Link Bridge (seed 003) brokers, agents and clients beside the
//!   cluster, the bridge's own faults, and its end-of-run audits (its `[bridge]`
//!   section in `scenario::bridge`);
//! - [`timeline`] (pure): `timeline.html`, a failing run drawn as a
//!   self-contained page (lanes per node and client, faults, the violation);
//! - [`flow`]: FlowBuilder (seed 002) hosts, each with a Raft service container,
//!   proposing, locking, publishing and broadcasting under the cluster's faults,
//!   and the end-of-run audit of the members' copies (its `[flow]` section in
//!   `scenario::flow`);
//! - [`nodes`]: the madsim nodes a run created, which it kills when it ends;
//! - [`world`]: the simulated cluster of a run — its nodes, addresses, membership
//!   and the operations faults apply to them;
//! - [`run`]: one (scenario, seed) run on a fresh thread, its replay line and
//!   artifacts; its two phases (`run::phases`: safety under faults, then healed)
//!   and the end-of-run judgement;
//! - [`runner`]: the libtest-mimic entry point;
//! - [`determinism`]: the same run alone, in the suite and in a sweep must agree;
//! - [`sweep`], [`bench`], [`bridge_times`], [`shrink`]: fuzzing sweeps (one process per run), mutant
//!   hunts, benchmarks and schedule shrinking, selected by `SIM_SWEEP`.

pub mod bridge;
pub mod budget;
pub mod checkers;
pub mod disk;
pub mod flow;
pub mod library;
pub mod scenario;
pub mod timeline;
pub mod trace;

#[cfg(madsim)]
pub mod bench;
#[cfg(madsim)]
pub mod bridge_times;
#[cfg(madsim)]
pub mod clock;
#[cfg(madsim)]
pub mod coord;
#[cfg(madsim)]
pub mod determinism;
#[cfg(madsim)]
pub mod faults;
#[cfg(madsim)]
pub mod membership;
pub mod net;
#[cfg(madsim)]
pub mod nodes;
#[cfg(madsim)]
pub mod observer;
#[cfg(madsim)]
pub mod report;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod shrink;
#[cfg(madsim)]
pub mod sweep;
#[cfg(madsim)]
pub mod workload;
#[cfg(madsim)]
pub mod world;
