//! One (scenario, seed) run, as the suite, the sweeps, the benchmarks and the
//! shrinker all run it: a fresh thread with its own madsim runtime, the online
//! checkers, and what came out (trace, hash, failure).

mod mq;
pub mod phases;

use std::path::Path;
use std::time::Duration;

use super::checkers::{self, Violation};
use super::observer::Recorder;
use super::report;
use super::scenario::Scenario;
use super::trace::TraceEvent;
use phases::run_world;
pub use phases::FailureClass;

/// What one run produced.
pub struct RunResult {
    pub trace_hash: u64,
    /// Lines a passing run prints.
    pub notes: Vec<String>,
    pub sim_ms: u64,
    pub wall_ms: u64,
    pub events: Vec<TraceEvent>,
    pub failure: Option<(FailureClass, Violation)>,
    /// References to the run's recorder still held once its runtime is gone: tasks
    /// the runtime never dropped (see [`crate::sim::nodes`]). A clean run leaves none.
    pub leaked_recorder_refs: usize,
}

impl RunResult {
    /// What a run that passed but leaked left behind; `None` for a clean run.
    pub fn leak(&self) -> Option<String> {
        (self.leaked_recorder_refs > 0).then(|| {
            format!(
                "the run passed but leaked: {} references to its recorder outlived its runtime (tasks madsim never dropped; see sim/nodes.rs)",
                self.leaked_recorder_refs
            )
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".into())
}

/// Simulated time of the last event (the runtime is gone after a panic, so its
/// clock cannot be read any more).
fn last_event_ms(events: &[TraceEvent]) -> u64 {
    events.last().map_or(0, |e| e.time_ms)
}

/// Runs `scenario` with `seed` on a fresh thread (no thread-local state carries
/// over from another run).
pub fn run_once(scenario: &Scenario, seed: u64) -> RunResult {
    let recorder = Recorder::new(checkers::online_checkers(&scenario.checkers.disabled));
    let for_sim = recorder.clone();
    let sc = scenario.clone();
    let limit = Duration::from_secs(sc.duration.safety_secs + sc.duration.heal_secs + 120);
    let wall = std::time::Instant::now();
    let joined = std::thread::Builder::new()
        .name(format!("sim-{}-{seed}", scenario.name))
        .spawn(move || {
            let mut rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.set_time_limit(limit);
            rt.block_on(run_world(sc, for_sim))
        })
        .expect("spawn simulation thread")
        .join();
    let wall_ms = wall.elapsed().as_millis() as u64;
    let leaked_recorder_refs = std::sync::Arc::strong_count(&recorder) - 1;
    let mut state = recorder.lock();
    let mut notes = Vec::new();
    let (failure, sim_ms) = match joined {
        Ok(outcome) => {
            notes = outcome.notes;
            (outcome.failure, outcome.sim_ms)
        }
        // An invariant broken before the panic is the root cause; report it.
        Err(_) if state.violation.is_some() => {
            let violation = state.violation.clone().expect("checked");
            (
                Some((FailureClass::Correctness, violation)),
                last_event_ms(&state.trace.events),
            )
        }
        Err(panic) => {
            let violation = Violation {
                invariant: "no_panic",
                event_seq: state.trace.events.len().saturating_sub(1) as u64,
                message: panic_message(panic.as_ref()),
                related: Vec::new(),
            };
            (
                Some((FailureClass::Crash, violation)),
                last_event_ms(&state.trace.events),
            )
        }
    };
    let result = RunResult {
        trace_hash: state.trace.hash(),
        notes,
        sim_ms,
        wall_ms,
        events: std::mem::take(&mut state.trace.events),
        failure,
        leaked_recorder_refs,
    };
    if let Ok(dir) = std::env::var("SIM_TRACE_DIR") {
        let path = Path::new(&dir).join(trace_file_name(&scenario.name, seed));
        if let Err(e) = report::write_trace(&path, &result.events) {
            eprintln!("SIM_TRACE_DIR: writing {}: {e}", path.display());
        }
    }
    result
}

/// The file `SIM_TRACE_DIR` gets a run's trace in.
pub fn trace_file_name(scenario: &str, seed: u64) -> String {
    format!("{scenario}-{seed}.jsonl")
}

/// The one-line command that replays exactly this run.
pub fn replay_command(scenario: &Scenario, seed: u64) -> String {
    let mut env = format!("SIM_SEEDS={seed}..{} ", seed + 1);
    if let Ok(file) = std::env::var("SIM_SCENARIO_FILE") {
        env.push_str(&format!("SIM_SCENARIO_FILE={file} "));
    }
    if let Ok(mutant) = std::env::var("SIM_MUTANT") {
        if !mutant.is_empty() {
            env.push_str(&format!("SIM_MUTANT={mutant} "));
        }
    }
    format!(
        "{env}cargo test --features sim --test sim -- --exact {}::seed_{seed}",
        scenario.name
    )
}

/// The one-line summary every run prints; the determinism check reads its hash.
pub fn summary_line(scenario: &str, seed: u64, r: &RunResult) -> String {
    format!(
        "scenario={scenario} seed={seed} trace_hash={:016x} sim_secs={:.3} wall_ms={} events={}",
        r.trace_hash,
        r.sim_ms as f64 / 1000.0,
        r.wall_ms,
        r.events.len()
    )
}

/// The hash in the last [`summary_line`] for `scenario` and `seed` in `text`.
pub fn hash_in_output(text: &str, scenario: &str, seed: u64) -> Option<u64> {
    let marker = format!("scenario={scenario} seed={seed} ");
    text.lines()
        .rev()
        .find_map(|l| l.find(&marker).map(|at| &l[at..]))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("trace_hash="))
        })
        .and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// The first line where two traces (as JSON lines) differ.
pub fn first_divergence<'a>(
    a: impl IntoIterator<Item = &'a str>,
    b: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    let mut line = 0usize;
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => line += 1,
            (Some(x), Some(y)) => {
                return Some(format!("event #{line}:\n  first:  {x}\n  second: {y}"))
            }
            (None, None) => return None,
            (x, y) => {
                return Some(format!(
                    "event #{line}: one trace ends, the other goes on with {}",
                    x.or(y).unwrap_or_default()
                ))
            }
        }
    }
}

/// Writes a failing run's artifacts (or a passing run's, for `SIM_ARTIFACTS=always`);
/// returns the line saying where they are.
pub fn write_run_artifacts(scenario: &Scenario, seed: u64, result: &RunResult) -> String {
    let replay = replay_command(scenario, seed);
    let (dir, class, violation) = match &result.failure {
        Some((class, violation)) => (
            report::artifact_dir(&scenario.name, seed),
            class.name(),
            violation.clone(),
        ),
        None => (
            report::artifact_dir(&scenario.name, seed).with_extension("pass"),
            "pass",
            Violation {
                invariant: "none",
                event_seq: u64::MAX,
                message: "the run passed".into(),
                related: Vec::new(),
            },
        ),
    };
    match report::write_artifacts(&dir, &result.events, class, &violation, &replay) {
        Ok(()) => format!("artifacts: {}", dir.display()),
        Err(e) => format!("artifacts not written to {}: {e}", dir.display()),
    }
}
