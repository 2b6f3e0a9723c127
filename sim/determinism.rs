//! Determinism across contexts: a (scenario, seed) gives the same trace alone in a
//! process of its own, inside the multi-threaded suite, and inside a sweep.
//!
//! Comparing a run only with itself in one context cannot see process-wide state
//! (a static, a dependency's global counter, a thread-local that outlives a run):
//! the run and its repeat see the same state. So the check of [`check_contexts`]
//! takes one seed of every scenario and compares, per run, the trace hash of
//!
//! - **alone**: a child process running just that trial, as a replay does;
//! - **suite**: this process, where the suite ran it beside other trials on other
//!   threads (or, if the suite was filtered, where this check runs it, two at a time);
//! - **sweep**: a child `SIM_SWEEP=fuzz` over the sample with 2 jobs, as
//!   `ci/fuzz.sh --jobs 2` runs seeds.
//!
//! A difference fails the check and names the first diverging event. Traces are
//! kept only where they cost nothing (the suite's events, in memory): a child's
//! context is run again with its trace written only when its hash differs, since
//! writing every child's trace as JSON was a tenth of the check's time.
//! `run::phases::planted_leak_rounds` plants a leak on purpose, so a test proves
//! the check can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::run::{first_divergence, hash_in_output, run_once, trace_file_name};
use super::scenario::Scenario;
use super::trace::TraceEvent;

/// A run of the sample: (scenario, seed).
pub type SampleRun = (String, u64);

/// How long the check waits for the suite's own run of a sample trial.
const SUITE_WAIT: Duration = Duration::from_secs(1800);

/// The hashes and traces of the sample runs as this process's suite ran them.
pub struct SuiteRecord {
    sample: Vec<SampleRun>,
    runs: Mutex<BTreeMap<SampleRun, (u64, Vec<TraceEvent>)>>,
    recorded: Condvar,
}

impl SuiteRecord {
    pub fn new(sample: Vec<SampleRun>) -> Arc<Self> {
        Arc::new(SuiteRecord {
            sample,
            runs: Mutex::default(),
            recorded: Condvar::new(),
        })
    }

    pub fn sample(&self) -> &[SampleRun] {
        &self.sample
    }

    /// Keeps the suite's result of `run` if it is in the sample.
    pub fn record(&self, run: &SampleRun, hash: u64, events: Vec<TraceEvent>) {
        if !self.sample.contains(run) {
            return;
        }
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run.clone(), (hash, events));
        self.recorded.notify_all();
    }

    fn wait_for(&self, run: &SampleRun) -> Option<(u64, Vec<TraceEvent>)> {
        let guard = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = self
            .recorded
            .wait_timeout_while(guard, SUITE_WAIT, |runs| !runs.contains_key(run))
            .unwrap_or_else(|e| e.into_inner());
        guard.remove(run)
    }
}

/// One context's view of one run.
struct Seen {
    context: &'static str,
    hash: u64,
    trace: Trace,
}

enum Trace {
    /// The run's events, in this process.
    Events(Vec<TraceEvent>),
    /// A trace file a child wrote.
    File(PathBuf),
    /// Not kept: running the context again (deterministic, or the check has
    /// found what it looks for) gives the trace.
    Again(Box<dyn Fn() -> Result<Seen, String> + Send>),
}

impl Trace {
    /// The trace as JSON lines; `hash` is the one the context gave the first time.
    fn lines(&self, hash: u64) -> Result<Vec<String>, String> {
        match self {
            Trace::Events(events) => Ok(events.iter().map(|e| e.to_json()).collect()),
            Trace::File(path) => std::fs::read_to_string(path)
                .map(|t| t.lines().map(str::to_string).collect())
                .map_err(|e| format!("reading {}: {e}", path.display())),
            Trace::Again(run) => {
                let again = run()?;
                if again.hash != hash {
                    return Err(format!(
                        "run again to write its trace, it gave hash {:016x}, not {hash:016x}",
                        again.hash
                    ));
                }
                again.trace.lines(hash)
            }
        }
    }
}

/// Compares one run across contexts; the first context is the reference.
fn compare(run: &SampleRun, seen: &[Seen]) -> Result<(), String> {
    let reference = &seen[0];
    for other in &seen[1..] {
        if other.hash == reference.hash {
            continue;
        }
        let divergence = match (
            reference.trace.lines(reference.hash),
            other.trace.lines(other.hash),
        ) {
            (Ok(a), Ok(b)) => {
                first_divergence(a.iter().map(String::as_str), b.iter().map(String::as_str))
                    .unwrap_or_else(|| "no event differs (only the hash)".into())
            }
            (Err(e), _) | (_, Err(e)) => format!("traces unavailable: {e}"),
        };
        return Err(format!(
            "{}::seed_{}: trace hash {:016x} {}, {:016x} {}; first divergence ({} vs {}) at {divergence}",
            run.0, run.1, reference.hash, reference.context, other.hash, other.context,
            reference.context, other.context
        ));
    }
    Ok(())
}

fn child_output_tail(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Extra environment for a check's children.
type Env<'a> = &'a [(&'a str, &'a str)];

const PLANTED_LEAK: Env<'static> = &[("SIM_PLANTED_LEAK", "1")];

/// Where a child's traces go: written to the folder now, or only when a
/// comparison needs them (the context is then run again, writing them there).
#[derive(Clone, Copy)]
enum Traces<'a> {
    Now(&'a Path),
    OnDemand(&'a Path),
}

impl Traces<'_> {
    /// The trace of `run` as a [`Seen`] will hold it; `again` runs the context
    /// again with [`Traces::Now`].
    fn of(
        self,
        (name, seed): &SampleRun,
        again: impl Fn(Traces) -> Result<Seen, String> + Send + 'static,
    ) -> Trace {
        match self {
            Traces::Now(dir) => Trace::File(dir.join(trace_file_name(name, *seed))),
            Traces::OnDemand(dir) => {
                let dir = dir.to_path_buf();
                Trace::Again(Box::new(move || again(Traces::Now(&dir))))
            }
        }
    }
}

/// This test binary, run as a child with the environment a trial would see.
fn child(traces: Traces, env: Env) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.envs(env.iter().copied());
    match traces {
        Traces::Now(dir) => cmd.env("SIM_TRACE_DIR", dir),
        Traces::OnDemand(_) => cmd.env_remove("SIM_TRACE_DIR"),
    };
    cmd.env_remove("SIM_CHECK_DETERMINISM")
        .env_remove("SIM_ARTIFACTS")
        .env_remove("SIM_SWEEP")
        .env_remove("SIM_SEEDS")
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Runs `run` alone in a child process (as its replay line does).
fn run_alone(run: &SampleRun, traces: Traces, env: Env<'static>) -> Result<Seen, String> {
    let (name, seed) = run;
    let out = child(traces, env)?
        .args([
            "--exact",
            &format!("{name}::seed_{seed}"),
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SIM_SEEDS", format!("{seed}..{}", seed + 1))
        .output()
        .map_err(|e| format!("starting a child: {e}"))?;
    let hash =
        hash_in_output(&String::from_utf8_lossy(&out.stdout), name, *seed).ok_or_else(|| {
            format!(
                "{name}::seed_{seed} alone printed no trace_hash:\n{}",
                child_output_tail(&out)
            )
        })?;
    let again = run.clone();
    Ok(Seen {
        context: "alone",
        hash,
        trace: traces.of(run, move |now| run_alone(&again, now, env)),
    })
}

/// Runs the sample as a 2-job sweep in a child process.
fn run_sweep(
    sample: &[SampleRun],
    traces: Traces,
    env: Env<'static>,
) -> Result<BTreeMap<SampleRun, Seen>, String> {
    let list: Vec<String> = sample.iter().map(|(n, s)| format!("{n}:{s}")).collect();
    let out = child(traces, env)?
        .env("SIM_SWEEP", "fuzz")
        .env("SIM_SWEEP_LIST", list.join(","))
        .env("SIM_JOBS", "2")
        .env_remove("SIM_SWEEP_BATCH")
        .output()
        .map_err(|e| format!("starting the sweep: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    sample
        .iter()
        .map(|run @ (name, seed)| {
            let hash = hash_in_output(&stdout, name, *seed).ok_or_else(|| {
                format!(
                    "the sweep printed no trace_hash for {name}::seed_{seed}:\n{}",
                    child_output_tail(&out)
                )
            })?;
            let again = run.clone();
            let trace = traces.of(run, move |now| {
                run_sweep(std::slice::from_ref(&again), now, env)?
                    .remove(&again)
                    .ok_or_else(|| "the sweep did not run it".to_string())
            });
            Ok((
                run.clone(),
                Seen {
                    context: "in a 2-job sweep",
                    hash,
                    trace,
                },
            ))
        })
        .collect()
}

/// Runs `f` over `items`, two at a time, keeping their order.
fn two_at_a_time<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicU64::new(0);
    let results: Mutex<BTreeMap<usize, R>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(item) = items.get(i) else { return };
                let r = f(item);
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(i, r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_values()
        .collect()
}

/// Where a check keeps the traces of its children.
fn scratch_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/sim-determinism")
        .join(format!("{name}-{}", std::process::id()))
}

/// The check: every sample run has one hash alone, in the suite and in a sweep.
///
/// `in_suite(run)` says whether the suite of this process runs that trial itself
/// (its result then arrives through `record`); the others are run here.
pub fn check_contexts(
    scenarios: &[Scenario],
    record: &SuiteRecord,
    in_suite: impl Fn(&SampleRun) -> bool,
) -> Result<(), String> {
    let dir = scratch_dir("contexts");
    let sample = record.sample().to_vec();
    let missing: Vec<SampleRun> = sample.iter().filter(|r| !in_suite(r)).cloned().collect();
    let (alone, sweep, here) = std::thread::scope(|scope| {
        let sweep = scope.spawn(|| run_sweep(&sample, Traces::OnDemand(&dir.join("sweep")), &[]));
        let here = scope.spawn(|| {
            two_at_a_time(&missing, |run| {
                let scenario = scenarios
                    .iter()
                    .find(|s| s.name == run.0)
                    .expect("sample of known scenarios");
                let r = run_once(scenario, run.1);
                (run.clone(), r.trace_hash, r.events)
            })
        });
        let alone = two_at_a_time(&sample, |run| {
            run_alone(run, Traces::OnDemand(&dir.join("alone")), &[])
        });
        (alone, sweep.join(), here.join())
    });
    let mut sweep = sweep.map_err(|_| "the sweep thread panicked".to_string())??;
    let mut here: BTreeMap<SampleRun, (u64, Vec<TraceEvent>)> = here
        .map_err(|_| "the in-process runs panicked".to_string())?
        .into_iter()
        .map(|(run, hash, events)| (run, (hash, events)))
        .collect();
    let mut failures = Vec::new();
    for (run, alone) in sample.iter().zip(alone) {
        let suite = match here.remove(run) {
            Some(r) => Some(r),
            None => record.wait_for(run),
        };
        let Some((suite_hash, suite_events)) = suite else {
            failures.push(format!(
                "{}::seed_{}: the suite never reported it",
                run.0, run.1
            ));
            continue;
        };
        let seen = alone.and_then(|alone| {
            let sweep = sweep.remove(run).ok_or("missing from the sweep")?;
            let suite = Seen {
                context: "in the suite",
                hash: suite_hash,
                trace: Trace::Events(suite_events),
            };
            Ok(vec![alone, suite, sweep])
        });
        match seen.and_then(|seen| compare(run, &seen).map(|()| seen[0].hash)) {
            Ok(hash) => println!("determinism: {}::seed_{} trace_hash={hash:016x} alone, in the suite and in a 2-job sweep", run.0, run.1),
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    Err(format!(
        "{} of {} runs differ between contexts (traces kept in {}):\n{}",
        failures.len(),
        sample.len(),
        dir.display(),
        failures.join("\n")
    ))
}

/// The check must fail on a planted leak: `run` alone and `run` a second time in
/// one process must differ, and the report must name the event. A sweep, one
/// process per run, must be immune to it.
pub fn check_planted_leak_is_caught(run: &SampleRun) -> Result<(), String> {
    let dir = scratch_dir("planted-leak");
    let alone = || run_alone(run, Traces::OnDemand(&dir.join("alone")), PLANTED_LEAK);
    let suite = second_in_one_process(run, &dir.join("suite"))?;
    let sweep = run_sweep(
        std::slice::from_ref(run),
        Traces::OnDemand(&dir.join("sweep")),
        PLANTED_LEAK,
    )?
    .remove(run)
    .ok_or("the sweep did not run it")?;
    let verdict = match compare(run, &[alone()?, suite]) {
        Ok(()) => Err(format!(
            "a planted process-wide leak went unnoticed: {}::seed_{} has one hash alone and second in a process",
            run.0, run.1
        )),
        Err(report) if report.contains("first divergence") && report.contains("event #") => {
            println!("determinism: a planted leak is caught: {report}");
            Ok(())
        }
        Err(report) => Err(format!("the leak was caught but its report names no event: {report}")),
    }
    .and_then(|()| {
        compare(run, &[alone()?, sweep])
            .map_err(|e| format!("one process per sweep run should isolate the leak: {e}"))
    });
    if verdict.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    verdict
}

/// `run` twice in one child process, one after the other; the second's trace.
fn second_in_one_process(run: &SampleRun, traces: &Path) -> Result<Seen, String> {
    let out = child(Traces::Now(traces), PLANTED_LEAK)?
        .env("SIM_SWEEP", "run")
        .env("SIM_SWEEP_RUNS", format!("{0}:{1},{0}:{1}", run.0, run.1))
        .output()
        .map_err(|e| format!("starting a child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hash = hash_in_output(&stdout, &run.0, run.1).ok_or_else(|| {
        format!(
            "the child printed no trace_hash:\n{}",
            child_output_tail(&out)
        )
    })?;
    Ok(Seen {
        context: "second in one process",
        hash,
        trace: Trace::File(traces.join(trace_file_name(&run.0, run.1))),
    })
}
