//! Workloads on coordd's etcd v3 API, each on its own madsim client nodes, each
//! recording what it asked and what it was told in the trace (`[coord]` in a
//! scenario file):
//!
//! - [`register`]: linearizable reads, puts and compare-and-set transactions on a few
//!   integer registers (judged by the linearizability checker);
//! - [`lock`]: lease + keep-alive, `Lock`, read the fencing token, write a fenced
//!   resource, hold (sometimes past the TTL), `Unlock` (judged by `lock_single_holder`, `lock_token_order`,
//!   `lock_client_tokens`, `fenced_resource_order`);
//! - [`ttl_only`]: the demonstration that a lock trusted on its TTL alone, without
//!   fencing, loses exclusivity when its holder is paused (`ttl_only_demo`);
//! - [`lease`]: leases with keys attached, kept alive, left to lapse or revoked
//!   (`lease_not_early`, `lease_lapses`, `lease_keys_removed`);
//! - [`watch`]: prefix watchers that resume every broken stream, and a compactor
//!   (`watch_order`);
//! - [`audit`]: the end-of-run reads the checkers need (historical reads of the lock
//!   prefixes at every grant, the keys of every removed lease).
//!
//! Any member serves any request, so clients pick endpoints at random and move to
//! another one after a failure. Writes are sent once: etcd has no write sessions, so
//! a retried put could apply twice; a write without an answer is recorded as unknown.

pub mod audit;
pub mod conn;
pub mod lease;
pub mod lock;
pub mod pauser;
pub mod register;
pub mod resource;
pub mod ttl_only;
pub mod watch;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use madsim::runtime::Handle;
use madsim::task::NodeId;

use super::observer::Recorder;
use super::scenario::Scenario;
use super::workload::WorkloadControl;
use crate::sim::nodes::BuildForRun as _;

/// Trace ids of the coordination clients, by workload.
pub const REGISTER_CLIENT_BASE: u64 = 200;
pub const LOCK_CLIENT_BASE: u64 = 300;
pub const LEASE_CLIENT_BASE: u64 = 400;
pub const WATCHER_BASE: u64 = 500;
pub const TTL_ONLY_CLIENT_BASE: u64 = 600;
pub const COMPACTOR_ID: u64 = 700;
pub const AUDITOR_ID: u64 = 800;

/// Simulated milliseconds since the run started.
pub fn now_ms(recorder: &Recorder) -> u64 {
    recorder.lock().now_ms()
}

/// Creates a client node at 10.0.`net`.`host`.
fn client_node(handle: &Handle, name: String, net: u8, host: u64) -> madsim::runtime::NodeHandle {
    handle
        .create_node()
        .name(name)
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, net, host as u8)))
        .build_for_run()
}

/// Starts every coordination workload the scenario asks for.
pub fn start(
    handle: &Handle,
    scenario: &Scenario,
    recorder: &Arc<Recorder>,
    control: &WorkloadControl,
) {
    let spec = &scenario.coord;
    for c in 1..=spec.register_clients {
        let node = client_node(handle, format!("etcd-register-{c}"), 7, c);
        node.spawn(register::run(
            REGISTER_CLIENT_BASE + c,
            scenario.clone(),
            recorder.clone(),
            control.clone(),
        ));
    }
    let pauses = spec.ttl_only_clients > 0 || spec.lock_pause_ms > 0;
    let pauser = pauses.then(|| {
        let resumer = client_node(handle, "client-resumer".into(), 12, 3);
        pauser::Pauser::start(handle.clone(), &resumer, recorder.clone())
    });
    let fenced = resource::Resources::fenced(recorder.clone());
    for c in 1..=spec.lock_clients {
        let node = client_node(handle, format!("etcd-lock-{c}"), 8, c);
        let pausable = pauser
            .clone()
            .filter(|_| spec.lock_pause_ms > 0)
            .map(|pauser| lock::Pausable {
                node: node.id(),
                pauser,
            });
        node.spawn(lock::run(
            LOCK_CLIENT_BASE + c,
            scenario.clone(),
            recorder.clone(),
            control.clone(),
            fenced.clone(),
            pausable,
        ));
    }
    for c in 1..=spec.lease_clients {
        let node = client_node(handle, format!("etcd-lease-{c}"), 9, c);
        node.spawn(lease::run(
            LEASE_CLIENT_BASE + c,
            scenario.clone(),
            recorder.clone(),
            control.clone(),
        ));
    }
    for w in 1..=spec.watchers {
        let node = client_node(handle, format!("etcd-watch-{w}"), 10, w);
        node.spawn(watch::run_watcher(
            WATCHER_BASE + w,
            scenario.clone(),
            recorder.clone(),
            control.clone(),
        ));
    }
    if spec.compact_every_ms > 0 {
        let node = client_node(handle, "etcd-compactor".into(), 12, 1);
        node.spawn(watch::run_compactor(
            COMPACTOR_ID,
            scenario.clone(),
            recorder.clone(),
            control.clone(),
        ));
    }
    if let Some(pauser) = pauser.filter(|_| spec.ttl_only_clients > 0) {
        let unfenced = resource::Resources::unfenced(recorder.clone());
        let plan = ttl_only::PausePlan::new();
        for c in 1..=spec.ttl_only_clients {
            let node = client_node(handle, format!("ttl-only-{c}"), 11, c);
            let own: NodeId = node.id();
            node.spawn(ttl_only::run(
                TTL_ONLY_CLIENT_BASE + c,
                own,
                scenario.clone(),
                recorder.clone(),
                control.clone(),
                unfenced.clone(),
                pauser.clone(),
                plan.clone(),
            ));
        }
    }
}

/// Runs the end-of-run audit on its own node and waits for it.
pub async fn run_audit(handle: &Handle, scenario: &Scenario, recorder: &Arc<Recorder>) {
    let node = client_node(handle, "etcd-auditor".into(), 12, 2);
    let _ = node
        .spawn(audit::run(AUDITOR_ID, scenario.clone(), recorder.clone()))
        .await;
}
