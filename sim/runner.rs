//! The simulation suite's entry point (libtest-mimic): one trial per
//! `<scenario>::seed_<N>`, plus the cross-process determinism check.
//!
//! Environment:
//! - `SIM_SEEDS`: a count (`20`: seeds 1..=20) or a range (`100..200`) replacing
//!   every scenario's default seeds;
//! - `SIM_SCENARIO_FILE`: run this one scenario file instead of `scenarios/`;
//! - `SIM_CHECK_DETERMINISM=1`: run every trial twice in-process and report the
//!   first diverging event;
//! - `SIM_ARTIFACTS=always`: write the trace and timelines of passing runs too (to
//!   `target/sim-failures/<scenario>-<seed>.pass/`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

use super::checkers::{self, Violation};
use super::observer::Recorder;
use super::report;
use super::scenario::{self, parse_seeds, Scenario};
use super::trace::TraceEvent;
use super::world::{run_world, FailureClass};

/// What one run produced.
pub struct RunResult {
    pub trace_hash: u64,
    /// Lines a passing run prints.
    pub notes: Vec<String>,
    pub sim_ms: u64,
    pub wall_ms: u64,
    pub events: Vec<TraceEvent>,
    pub failure: Option<(FailureClass, Violation)>,
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
            };
            (
                Some((FailureClass::Crash, violation)),
                last_event_ms(&state.trace.events),
            )
        }
    };
    RunResult {
        trace_hash: state.trace.hash(),
        notes,
        sim_ms,
        wall_ms,
        events: std::mem::take(&mut state.trace.events),
        failure,
    }
}

/// The one-line command that replays exactly this run.
pub fn replay_command(scenario: &Scenario, seed: u64) -> String {
    let mut env = format!("SIM_SEEDS={seed}..{} ", seed + 1);
    if let Ok(file) = std::env::var("SIM_SCENARIO_FILE") {
        env.push_str(&format!("SIM_SCENARIO_FILE={file} "));
    }
    format!(
        "{env}cargo test --features sim --test sim -- --exact {}::seed_{seed}",
        scenario.name
    )
}

fn summary_line(scenario: &Scenario, seed: u64, r: &RunResult) -> String {
    format!(
        "scenario={} seed={seed} trace_hash={:016x} sim_secs={:.3} wall_ms={} events={}",
        scenario.name,
        r.trace_hash,
        r.sim_ms as f64 / 1000.0,
        r.wall_ms,
        r.events.len()
    )
}

/// The first event where two runs of the same seed differ.
pub fn first_divergence(a: &[TraceEvent], b: &[TraceEvent]) -> Option<String> {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return Some(format!(
                "event #{}:\n  first:  {}\n  second: {}",
                x.seq,
                x.to_json(),
                y.to_json()
            ));
        }
    }
    (a.len() != b.len()).then(|| format!("one run has {} events, the other {}", a.len(), b.len()))
}

fn run_trial(scenario: &Scenario, seed: u64) -> Result<(), Failed> {
    let result = run_once(scenario, seed);
    println!("{}", summary_line(scenario, seed, &result));
    for note in &result.notes {
        println!("{note}");
    }
    if std::env::var("SIM_CHECK_DETERMINISM").is_ok_and(|v| v == "1") {
        let again = run_once(scenario, seed);
        if again.trace_hash != result.trace_hash {
            let at = first_divergence(&result.events, &again.events).unwrap_or_default();
            return Err(format!(
                "nondeterminism: trace hashes {:016x} and {:016x}; first divergence at {at}",
                result.trace_hash, again.trace_hash
            )
            .into());
        }
    }
    let Some((class, violation)) = result.failure else {
        if std::env::var("SIM_ARTIFACTS").is_ok_and(|v| v == "always") {
            let dir = report::artifact_dir(&scenario.name, seed).with_extension("pass");
            let none = Violation {
                invariant: "none",
                event_seq: u64::MAX,
                message: "the run passed".into(),
            };
            report::write_artifacts(
                &dir,
                &result.events,
                "pass",
                &none,
                &replay_command(scenario, seed),
            )
            .map_err(|e| format!("artifacts: {e}"))?;
        }
        return Ok(());
    };
    let replay = replay_command(scenario, seed);
    let dir = report::artifact_dir(&scenario.name, seed);
    let written = report::write_artifacts(&dir, &result.events, class.name(), &violation, &replay);
    let culprit = result
        .events
        .iter()
        .find(|e| e.seq == violation.event_seq)
        .map(report::line)
        .unwrap_or_default();
    let artifacts = match written {
        Ok(()) => format!("artifacts: {}", dir.display()),
        Err(e) => format!("artifacts not written: {e}"),
    };
    Err(format!(
        "{} failure: {violation}\nevent: {culprit}\n{artifacts}\nreplay: {replay}",
        class.name()
    )
    .into())
}

/// Runs a sample of trials in two child processes each and compares trace hashes.
fn cross_process_check(sample: &[(String, u64)]) -> Result<(), Failed> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for (name, seed) in sample {
        let trial = format!("{name}::seed_{seed}");
        let mut hashes = Vec::new();
        for _ in 0..2 {
            let out = std::process::Command::new(&exe)
                .args(["--exact", &trial, "--nocapture", "--test-threads", "1"])
                .env("SIM_SEEDS", format!("{seed}..{}", seed + 1))
                .env_remove("SIM_CHECK_DETERMINISM")
                .output()
                .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let marker = format!("scenario={name} seed={seed} ");
            let hash = stdout
                .lines()
                .find_map(|l| l.find(&marker).map(|at| &l[at..]))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("trace_hash="))
                })
                .map(str::to_string)
                .ok_or_else(|| format!("{trial}: no trace_hash in child output:\n{stdout}"))?;
            hashes.push(hash);
        }
        if hashes[0] != hashes[1] {
            return Err(format!(
                "{trial}: trace hash {} in one process, {} in another; rerun with SIM_CHECK_DETERMINISM=1 to find the first diverging event",
                hashes[0], hashes[1]
            )
            .into());
        }
        println!(
            "determinism: {trial} trace_hash={} in two processes",
            hashes[0]
        );
    }
    Ok(())
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// The test binary's `main` under `--cfg madsim`.
pub fn main() {
    let args = Arguments::from_args();
    let loaded = match std::env::var("SIM_SCENARIO_FILE") {
        Ok(file) => scenario::load_file(Path::new(&file)).map(|s| vec![s]),
        Err(_) => scenario::load_dir(&scenarios_dir()),
    };
    let scenarios = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: bad scenario: {e}");
            std::process::exit(2);
        }
    };
    if let Ok(mutant) = std::env::var("SIM_MUTANT") {
        if !mutant.is_empty() && coordlab::seams::mutants::expected_invariant(&mutant).is_none() {
            let known: Vec<&str> = coordlab::seams::mutants::CATALOG
                .iter()
                .map(|m| m.0)
                .collect();
            eprintln!(
                "error: unknown SIM_MUTANT {mutant:?}; known: {}",
                known.join(", ")
            );
            std::process::exit(2);
        }
    }
    if let Ok(mode) = std::env::var("SIM_SWEEP") {
        std::process::exit(super::sweep::main(&mode, scenarios));
    }
    let seeds_env = std::env::var("SIM_SEEDS").ok();
    let mut trials = Vec::new();
    let mut sample = Vec::new();
    let mut coord_sampled = 0;
    // --- client library (issue 7) ---
    let mut library_sampled = false;
    for scenario in scenarios {
        let seeds = match parse_seeds(seeds_env.as_deref(), scenario.seeds) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        };
        // The first two scenarios, and the first two with etcd workloads (client
        // pauses, streams and lease timers are entropy of their own).
        if sample.len() < 2 || (scenario.coord.any() && coord_sampled < 2) {
            coord_sampled += usize::from(scenario.coord.any());
            sample.push((scenario.name.clone(), seeds[0]));
        }
        // --- client library (issue 7): its clients add tasks and timers of their
        // own, so one of its scenarios is in the cross-process sample too.
        if scenario.library.any() && !library_sampled {
            library_sampled = true;
            if !sample.iter().any(|(name, _)| *name == scenario.name) {
                sample.push((scenario.name.clone(), seeds[0]));
            }
        }
        for seed in seeds {
            let sc = scenario.clone();
            trials.push(Trial::test(
                format!("{}::seed_{seed}", scenario.name),
                move || run_trial(&sc, seed),
            ));
        }
    }
    trials.push(Trial::test("determinism::cross_process", move || {
        cross_process_check(&sample)
    }));
    libtest_mimic::run(&args, trials).exit();
}
