//! The two phases of one run inside its madsim runtime: safety (faults on, the
//! online checkers fail the run at the first violation), then healed (the cluster
//! must converge); then the end-of-run checkers judge the whole history.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};

use super::mq::{start_broker_faults, start_extra_brokers, start_topic_admin, ExtraBrokers};
use crate::sim::bridge::BridgeRun;
use crate::sim::checkers::liveness::LivenessBounds;
use crate::sim::checkers::{self, Violation};
use crate::sim::faults::FaultDriver;
use crate::sim::flow::FlowRun;
use crate::sim::library::LibraryRun;
use crate::sim::nodes::BuildForRun as _;
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::workload::{self, WorkloadControl};
use crate::sim::world::{supervise, SharedWorld, World};

/// How a run ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The stack or the harness panicked.
    Crash,
    /// A safety invariant was broken.
    Correctness,
    /// The healed cluster did not converge in time.
    Liveness,
}

impl FailureClass {
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Crash => "crash",
            FailureClass::Correctness => "correctness",
            FailureClass::Liveness => "liveness",
        }
    }
}

/// What a run produced.
pub struct RunOutcome {
    pub failure: Option<(FailureClass, Violation)>,
    pub sim_ms: u64,
    /// Lines a passing run prints (e.g. what a demonstration showed).
    pub notes: Vec<String>,
}

/// What runs beside the cluster: the clients and the harness's own hosts.
struct Load {
    control: WorkloadControl,
    library: Option<LibraryRun>,
    bridge: Option<BridgeRun>,
    flow: Option<FlowRun>,
    extra_brokers: ExtraBrokers,
    fault_driver: NodeHandle,
}

/// Runs the scenario inside the current madsim runtime, then ends every node it
/// created (see [`crate::sim::nodes`]).
pub async fn run_world(scenario: Scenario, recorder: Arc<Recorder>) -> RunOutcome {
    let outcome = run_phases(scenario, recorder).await;
    crate::sim::nodes::kill_all(&Handle::current());
    // The killed tasks are dropped when the executor next polls them.
    madsim::task::yield_now().await;
    outcome
}

async fn run_phases(scenario: Scenario, recorder: Arc<Recorder>) -> RunOutcome {
    recorder.start();
    for _ in 0..planted_leak_rounds() {
        let _: u64 = madsim::rand::random();
    }
    let handle = Handle::current();
    let world = World::start(&scenario, recorder.clone());
    let load = start_load(&handle, &scenario, &recorder, &world);

    // Phase 1: safety under faults (ends early on the first violation).
    let safety = Duration::from_secs(scenario.duration.safety_secs);
    if wait_or_violation(&recorder, safety).await {
        return finish(&recorder, None);
    }
    // Killing the driver's node also cancels its pending heal timers.
    handle.kill(load.fault_driver.id());
    let healed_at_ms = {
        let mut w = world.lock().unwrap();
        w.heal_everything();
        w.fault("heal everything".into());
        let now = w.recorder.lock().now_ms();
        now
    };
    // Phase 2: healed; the cluster must converge within the bounds.
    let heal = Duration::from_secs(scenario.duration.heal_secs);
    if wait_or_violation(&recorder, heal).await {
        return finish(&recorder, None);
    }
    stop_load(
        &handle,
        &scenario,
        &recorder,
        load.control.clone(),
        load.library,
        load.bridge,
        load.flow,
    )
    .await;
    let bounds = LivenessBounds {
        healed_at_ms,
        leader_within_ms: scenario.liveness.leader_within_secs * 1000,
        ops_within_ms: scenario.liveness.ops_within_secs * 1000,
    };
    judge(
        &scenario,
        &recorder,
        &world,
        bounds,
        &load.extra_brokers.live(),
    )
}

/// Starts the workloads, the client library, the MQ hosts, the supervisor and the
/// fault driver.
fn start_load(
    handle: &Handle,
    scenario: &Scenario,
    recorder: &Arc<Recorder>,
    world: &SharedWorld,
) -> Load {
    let control = WorkloadControl::new();
    workload::start_clients(handle, scenario, recorder.clone(), control.clone());
    crate::sim::coord::start(handle, scenario, recorder, &control);
    let library = crate::sim::library::start(handle, scenario, recorder.clone());
    let bridge = crate::sim::bridge::start(handle, scenario, recorder.clone());
    let flow = crate::sim::flow::start(handle, scenario, recorder.clone());
    let extra_brokers = start_extra_brokers(handle, scenario, recorder);
    start_broker_faults(handle, scenario, world, &extra_brokers);
    start_topic_admin(handle, scenario, recorder);
    let supervisor = handle
        .create_node()
        .name("supervisor")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)))
        .build_for_run();
    supervisor.spawn(supervise(world.clone(), Duration::from_secs(2)));
    let driver = FaultDriver::plan(scenario, world.clone());
    let fault_driver = handle
        .create_node()
        .name("fault-driver")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)))
        .build_for_run();
    fault_driver.spawn(driver.run());
    Load {
        control,
        library,
        bridge,
        flow,
        extra_brokers,
        fault_driver,
    }
}

/// Stops the clients, lets the library finish, and runs the end-of-run audit (it
/// covers the grants of the client library's locks too).
async fn stop_load(
    handle: &Handle,
    scenario: &Scenario,
    recorder: &Arc<Recorder>,
    control: WorkloadControl,
    library: Option<LibraryRun>,
    bridge: Option<BridgeRun>,
    flow: Option<FlowRun>,
) {
    control.stop();
    if let Some(library) = library {
        library.finish().await;
    }
    if let Some(bridge) = bridge {
        bridge.finish().await;
    }
    if let Some(flow) = flow {
        flow.finish().await;
    }
    // The lock grants of the library's and the flow hosts' locks are audited too.
    if scenario.coord.any() || scenario.library.lock_clients > 0 || scenario.flow.any() {
        crate::sim::coord::run_audit(handle, scenario, recorder).await;
    }
}

/// Judges the finished run: liveness first, then — only once the run converged —
/// linearizability, locks, leases and watches on the whole history.
fn judge(
    scenario: &Scenario,
    recorder: &Recorder,
    world: &SharedWorld,
    bounds: LivenessBounds,
    extra_brokers: &[u64],
) -> RunOutcome {
    let members = world.lock().unwrap().live_members();
    let brokers: Vec<u64> = if scenario.mq.brokers {
        members.iter().chain(extra_brokers).copied().collect()
    } else {
        Vec::new()
    };
    let disabled = &scenario.checkers.disabled;
    let state = recorder.lock();
    let end = checkers::RunEnd {
        events: &state.trace.events,
        bounds,
        members: &members,
        brokers: &brokers,
        auto_compaction_period: scenario.coord.auto_compaction_period(),
    };
    let live = checkers::judge_liveness(&end, disabled).err();
    let judged = live
        .is_none()
        .then(|| checkers::judge_end_of_run(&end, disabled));
    drop(state);
    match judged {
        Some(Ok(notes)) => RunOutcome {
            notes,
            ..finish(recorder, None)
        },
        Some(Err(v)) => RunOutcome {
            sim_ms: recorder.lock().now_ms(),
            failure: Some((FailureClass::Correctness, v)),
            notes: Vec::new(),
        },
        None => finish(recorder, live),
    }
}

async fn wait_or_violation(recorder: &Recorder, duration: Duration) -> bool {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < duration {
        tokio::time::sleep(step).await;
        waited += step;
        if recorder.violation().is_some() {
            return true;
        }
    }
    false
}

fn finish(recorder: &Recorder, liveness: Option<Violation>) -> RunOutcome {
    let state = recorder.lock();
    let failure = match (&state.violation, liveness) {
        (Some(v), _) => Some((FailureClass::Correctness, v.clone())),
        (None, Some(v)) => Some((FailureClass::Liveness, v)),
        (None, None) => None,
    };
    RunOutcome {
        failure,
        sim_ms: state.now_ms(),
        notes: Vec::new(),
    }
}

/// `SIM_PLANTED_LEAK=1` plants the kind of leak the determinism check exists for:
/// a process-wide counter of runs that decides how many random numbers a run draws
/// before it starts (so everything after differs). Returns that number.
pub fn planted_leak_rounds() -> u64 {
    static RUNS_IN_THIS_PROCESS: AtomicU64 = AtomicU64::new(0);
    if std::env::var("SIM_PLANTED_LEAK").is_ok_and(|v| v == "1") {
        RUNS_IN_THIS_PROCESS.fetch_add(1, Ordering::SeqCst)
    } else {
        0
    }
}
