//! Sweeps: many runs outside libtest, selected by `SIM_SWEEP`:
//!
//! - `fuzz`: time-budgeted sweep over every scenario with fresh seeds, sharded
//!   (`SIM_SHARD=k/n`), parallel (`SIM_JOBS`), with progress on stderr; failing seeds
//!   leave their artifacts and a replay line in `target/sim-failures/failing-seeds.txt`;
//! - `hunt`: run fresh seeds until the first failure or `SIM_SWEEP_MAX_RUNS` (for
//!   mutants); prints one `hunt:` line;
//! - `run`: the worker the two above start (see below);
//! - `mutants`: print the mutant catalog;
//! - `bench`: time dilation and throughput of the reference scenario, against bare
//!   raft-rs `RawNode`s in a plain loop (see [`super::bench`]);
//! - `shrink`: find a failing fault schedule and shrink it (see [`super::shrink`]);
//! - `mq-switch`: time from a coo leader change to every LogicNode in the right mode.
//!
//! `fuzz` and `hunt` sweep every scenario, or only those `SIM_SWEEP_SCENARIOS`
//! names (comma-separated), or exactly the runs `SIM_SWEEP_LIST` names
//! (`scenario:seed,…`; each run's summary line then goes to stdout).
//!
//! Every run of a sweep happens in a worker process of its own (this test binary
//! with `SIM_SWEEP=run`), `SIM_JOBS` of them at a time: whatever process-wide state
//! some dependency keeps, it cannot couple two seeds, so a failure a sweep finds
//! replays alone. `SIM_SWEEP_BATCH=n` gives each worker n runs instead (cheaper by
//! one process start per run; see the README for the measured difference).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordlab::seams::mutants;
use serde::{Deserialize, Serialize};

use super::run::{replay_command, run_once, summary_line, write_run_artifacts};
use super::scenario::Scenario;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `k/n` → (k, n), 1-based k.
fn shard() -> Result<(u64, u64), String> {
    let Ok(text) = std::env::var("SIM_SHARD") else {
        return Ok((1, 1));
    };
    let (k, n) = text
        .split_once('/')
        .ok_or(format!("SIM_SHARD {text:?} is not k/n"))?;
    let (k, n): (u64, u64) = (
        k.parse()
            .map_err(|_| format!("SIM_SHARD {text:?}: bad k"))?,
        n.parse()
            .map_err(|_| format!("SIM_SHARD {text:?}: bad n"))?,
    );
    if n == 0 || k == 0 || k > n {
        return Err(format!("SIM_SHARD {text:?} needs 1 <= k <= n"));
    }
    Ok((k, n))
}

/// The i-th (scenario, seed) of this shard: scenarios round-robin, seeds fresh
/// (above `SIM_SEED_BASE`) and disjoint between shards.
fn pick(scenarios: &[Scenario], i: u64, base: u64, (k, n): (u64, u64)) -> (String, u64) {
    let s = (i % scenarios.len() as u64) as usize;
    let round = i / scenarios.len() as u64;
    (scenarios[s].name.clone(), base + round * n + (k - 1))
}

pub fn main(mode: &str, scenarios: Vec<Scenario>) -> i32 {
    match mode {
        "mutants" => {
            for (name, invariant, what) in mutants::CATALOG {
                println!("{name}\t{invariant}\t{what}");
            }
            0
        }
        "fuzz" | "hunt" => sweep(mode, scenarios),
        "run" => worker(&scenarios),
        "bench" => super::bench::main(scenarios),
        "mq-switch" => super::bench::mq_switch_main(scenarios),
        "bridge-times" => super::bridge_times::main(scenarios),
        "shrink" => super::shrink::main(scenarios),
        other => {
            eprintln!(
                "error: SIM_SWEEP={other:?}: use fuzz, hunt, run, mutants, bench, mq-switch, bridge-times or shrink"
            );
            2
        }
    }
}

/// Keeps the scenarios `SIM_SWEEP_SCENARIOS` names (comma-separated; unset or
/// empty: all).
fn selected(scenarios: Vec<Scenario>) -> Result<Vec<Scenario>, String> {
    let Ok(names) = std::env::var("SIM_SWEEP_SCENARIOS") else {
        return Ok(scenarios);
    };
    let wanted: Vec<&str> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(scenarios);
    }
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !scenarios.iter().any(|s| s.name == **w))
    {
        return Err(format!("SIM_SWEEP_SCENARIOS names no scenario {unknown:?}"));
    }
    Ok(scenarios
        .into_iter()
        .filter(|s| wanted.contains(&s.name.as_str()))
        .collect())
}

/// `scenario:seed,…` → runs, each naming a known scenario.
fn parse_run_list(text: &str, scenarios: &[Scenario]) -> Result<Vec<(String, u64)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (name, seed) = r
                .rsplit_once(':')
                .ok_or(format!("run {r:?} is not scenario:seed"))?;
            let seed = seed.parse().map_err(|_| format!("run {r:?}: bad seed"))?;
            if !scenarios.iter().any(|s| s.name == name) {
                return Err(format!("run {r:?}: no scenario named {name:?}"));
            }
            Ok((name.to_string(), seed))
        })
        .collect()
}

fn format_run_list(runs: &[(String, u64)]) -> String {
    runs.iter()
        .map(|(name, seed)| format!("{name}:{seed}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What a worker reports of one run, one JSON line on stdout after [`REPORT_PREFIX`].
#[derive(Debug, Serialize, Deserialize)]
struct RunReport {
    scenario: String,
    seed: u64,
    summary: String,
    /// `None` when the run passed.
    class: Option<String>,
    invariant: String,
    message: String,
}

const REPORT_PREFIX: &str = "sweep-run ";

/// `SIM_SWEEP=run`: runs `SIM_SWEEP_RUNS` one after another in this process and
/// reports each; failing runs leave their artifacts.
fn worker(scenarios: &[Scenario]) -> i32 {
    let list = std::env::var("SIM_SWEEP_RUNS").unwrap_or_default();
    let runs = match parse_run_list(&list, scenarios) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: SIM_SWEEP_RUNS: {e}");
            return 2;
        }
    };
    for (name, seed) in runs {
        let scenario = scenarios
            .iter()
            .find(|s| s.name == name)
            .expect("parse_run_list checked the name");
        let result = run_once(scenario, seed);
        let mut report = RunReport {
            scenario: name.clone(),
            seed,
            summary: summary_line(&name, seed, &result),
            class: None,
            invariant: String::new(),
            message: String::new(),
        };
        if let Some((class, violation)) = &result.failure {
            write_run_artifacts(scenario, seed, &result);
            report.class = Some(class.name().to_string());
            report.invariant = violation.invariant.to_string();
            report.message = violation.message.clone();
        } else if let Some(leak) = result.leak() {
            // As a suite trial fails on it, so does a swept seed.
            report.class = Some("leak".to_string());
            report.invariant = "recorder_released".to_string();
            report.message = leak;
        }
        let line = serde_json::to_string(&report).expect("reports serialize");
        println!("{REPORT_PREFIX}{line}");
    }
    0
}

/// Why a worker process gave no report for some run.
enum WorkerError {
    /// It could not be started: no later one will be either.
    Start(String),
    /// It ended (crashed, aborted) before reporting `run`; the reports it gave.
    Died {
        reports: Vec<RunReport>,
        run: (String, u64),
        status: String,
    },
}

/// Runs `runs` in one worker process; the reports, or what went wrong.
fn run_in_worker(runs: &[(String, u64)]) -> Result<Vec<RunReport>, WorkerError> {
    let exe = std::env::current_exe().map_err(|e| WorkerError::Start(e.to_string()))?;
    let out = Command::new(&exe)
        .env("SIM_SWEEP", "run")
        .env("SIM_SWEEP_RUNS", format_run_list(runs))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| WorkerError::Start(format!("starting worker {}: {e}", exe.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reports: Vec<RunReport> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix(REPORT_PREFIX))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    match runs.get(reports.len()) {
        None => Ok(reports),
        Some(run) => Err(WorkerError::Died {
            run: run.clone(),
            reports,
            status: out.status.to_string(),
        }),
    }
}

/// A run whose worker died under it: a crash of that (scenario, seed), reported
/// like any failing run (the process abort left no artifacts).
fn died_report((scenario, seed): (String, u64), status: &str) -> RunReport {
    RunReport {
        summary: format!("scenario={scenario} seed={seed} worker died ({status})"),
        scenario,
        seed,
        class: Some("crash".into()),
        invariant: "no_panic".into(),
        message: format!("the worker process running it ended: {status}"),
    }
}

/// Shared between the job threads of one sweep.
struct SweepState {
    hunting: bool,
    print_summaries: bool,
    started: Instant,
    done: AtomicU64,
    failures: AtomicU64,
    stop: AtomicBool,
    first_catch: Mutex<Option<String>>,
    failing_list: PathBuf,
}

impl SweepState {
    fn record(&self, report: &RunReport, scenarios: &[Scenario]) {
        let runs = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if self.print_summaries {
            println!("{}", report.summary);
        }
        let Some(class) = &report.class else { return };
        self.failures.fetch_add(1, Ordering::SeqCst);
        let scenario = scenarios
            .iter()
            .find(|s| s.name == report.scenario)
            .expect("workers run known scenarios");
        let (seed, invariant, message) = (report.seed, &report.invariant, &report.message);
        let replay = replay_command(scenario, seed);
        if let Some(parent) = self.failing_list.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.failing_list)
        {
            let _ = writeln!(f, "{replay}    # {class} {invariant}: {message}");
        }
        eprintln!(
            "FAIL {}::seed_{seed}: {class} {invariant} violated: {message}\n  replay: {replay}",
            scenario.name
        );
        if self.hunting {
            let mut first = self.first_catch.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                *first = Some(format!(
                    "caught=yes runs={runs} wall_ms={} invariant={invariant} class={class} scenario={} seed={seed}",
                    self.started.elapsed().as_millis(),
                    scenario.name
                ));
            }
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn progress(&self) {
        let runs = self.done.load(Ordering::SeqCst);
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        eprintln!(
            "fuzz: seeds={runs} seeds/min={:.1} failures={} elapsed={:.1}min",
            runs as f64 / minutes.max(1e-9),
            self.failures.load(Ordering::SeqCst),
            minutes
        );
    }
}

/// The runs a sweep hands out: an explicit list, or fresh seeds without end.
enum Plan {
    List(VecDeque<(String, u64)>),
    Fresh {
        scenarios: Vec<Scenario>,
        next: u64,
        base: u64,
        shard: (u64, u64),
    },
}

impl Plan {
    fn take(&mut self, n: u64) -> Vec<(String, u64)> {
        match self {
            Plan::List(runs) => (0..n).map_while(|_| runs.pop_front()).collect(),
            Plan::Fresh {
                scenarios,
                next,
                base,
                shard,
            } => (0..n)
                .map(|_| {
                    *next += 1;
                    pick(scenarios, *next - 1, *base, *shard)
                })
                .collect(),
        }
    }
}

fn sweep(mode: &str, scenarios: Vec<Scenario>) -> i32 {
    match sweep_plan(mode, scenarios) {
        Ok((plan, scenarios)) => run_sweep(mode, plan, scenarios),
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn sweep_plan(mode: &str, scenarios: Vec<Scenario>) -> Result<(Plan, Vec<Scenario>), String> {
    if let Ok(list) = std::env::var("SIM_SWEEP_LIST") {
        let runs = parse_run_list(&list, &scenarios).map_err(|e| format!("SIM_SWEEP_LIST: {e}"))?;
        return Ok((Plan::List(runs.into()), scenarios));
    }
    let selected = selected(scenarios.clone())?;
    if selected.is_empty() {
        return Err("no scenarios to sweep".into());
    }
    let base = env_u64("SIM_SEED_BASE", if mode == "hunt" { 1 } else { 1_000_000 });
    let plan = Plan::Fresh {
        scenarios: selected,
        next: 0,
        base,
        shard: shard()?,
    };
    Ok((plan, scenarios))
}

fn run_sweep(mode: &str, plan: Plan, scenarios: Vec<Scenario>) -> i32 {
    let hunting = mode == "hunt";
    let listed = matches!(plan, Plan::List(_));
    let jobs = env_u64("SIM_JOBS", 2).max(1);
    let batch = env_u64("SIM_SWEEP_BATCH", 1).max(1);
    let minutes: f64 = std::env::var("SIM_SWEEP_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if listed { f64::INFINITY } else { 5.0 });
    let max_runs = env_u64("SIM_SWEEP_MAX_RUNS", u64::MAX);
    let started = Instant::now();
    let deadline = started
        .checked_add(Duration::from_secs_f64(minutes.min(1e9) * 60.0))
        .unwrap_or(started + Duration::from_secs(u32::MAX as u64));
    let state = Arc::new(SweepState {
        hunting,
        print_summaries: listed,
        started,
        done: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        first_catch: Mutex::new(None),
        failing_list: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/sim-failures/failing-seeds.txt"),
    });
    let plan = Arc::new(Mutex::new((plan, 0u64)));
    let scenarios = Arc::new(scenarios);
    let worker_errors = Arc::new(AtomicU64::new(0));
    let mut jobs_running = Vec::new();
    for _ in 0..jobs {
        let (state, plan, scenarios, worker_errors) = (
            state.clone(),
            plan.clone(),
            scenarios.clone(),
            worker_errors.clone(),
        );
        jobs_running.push(std::thread::spawn(move || loop {
            if state.stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                return;
            }
            let runs = {
                let mut guard = plan.lock().unwrap_or_else(|e| e.into_inner());
                let (plan, handed_out) = &mut *guard;
                let n = batch.min(max_runs.saturating_sub(*handed_out));
                let runs = plan.take(n);
                *handed_out += runs.len() as u64;
                runs
            };
            if runs.is_empty() {
                return;
            }
            match run_in_worker(&runs) {
                Ok(reports) => reports.iter().for_each(|r| state.record(r, &scenarios)),
                Err(WorkerError::Died {
                    reports,
                    run,
                    status,
                }) => {
                    reports.iter().for_each(|r| state.record(r, &scenarios));
                    state.record(&died_report(run, &status), &scenarios);
                }
                Err(WorkerError::Start(e)) => {
                    eprintln!("error: {e}");
                    worker_errors.fetch_add(1, Ordering::SeqCst);
                    state.stop.store(true, Ordering::SeqCst);
                }
            }
        }));
    }
    let mut last_report = Instant::now();
    while jobs_running.iter().any(|j| !j.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if !hunting && !listed && last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            state.progress();
        }
    }
    for j in jobs_running {
        let _ = j.join();
    }
    conclude(mode, &state, worker_errors.load(Ordering::SeqCst))
}

fn conclude(mode: &str, state: &SweepState, worker_errors: u64) -> i32 {
    if worker_errors > 0 {
        eprintln!("{mode}: stopped: {worker_errors} worker processes could not be started");
        return 2;
    }
    let mutant = std::env::var("SIM_MUTANT").unwrap_or_default();
    if state.hunting {
        let runs = state.done.load(Ordering::SeqCst);
        return match state
            .first_catch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            Some(line) => {
                println!("hunt: mutant={mutant} {line}");
                0
            }
            None => {
                println!(
                    "hunt: mutant={mutant} caught=no runs={runs} wall_ms={} invariant=- class=- scenario=- seed=-",
                    state.started.elapsed().as_millis()
                );
                1
            }
        };
    }
    state.progress();
    let failed = state.failures.load(Ordering::SeqCst);
    if failed > 0 {
        eprintln!(
            "fuzz: {failed} failing seeds; replay lines in {}",
            state.failing_list.display()
        );
        1
    } else {
        0
    }
}
