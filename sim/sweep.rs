//! Sweeps: many runs outside libtest, selected by `SIM_SWEEP`:
//!
//! - `fuzz`: time-budgeted sweep over every scenario with fresh seeds, sharded
//!   (`SIM_SHARD=k/n`), parallel (`SIM_JOBS`), with progress on stderr; failing seeds
//!   leave their artifacts and a replay line in `target/sim-failures/failing-seeds.txt`;
//! - `hunt`: run fresh seeds until the first failure or `SIM_SWEEP_MAX_RUNS` (for
//!   mutants); prints one `hunt:` line;
//! - `mutants`: print the mutant catalog;
//! - `bench`: time dilation and throughput of the reference scenario, against bare
//!   raft-rs `RawNode`s in a plain loop (see [`super::bench`]);
//! - `shrink`: find a failing fault schedule and shrink it (see [`super::shrink`]);
//! - `mq-switch`: time from a coo leader change to every LogicNode in the right mode.
//!
//! `fuzz` and `hunt` sweep every scenario, or only those `SIM_SWEEP_SCENARIOS`
//! names (comma-separated).

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordlab::seams::mutants;

use super::report;
use super::runner::{replay_command, run_once};
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
fn pick(scenarios: &[Scenario], i: u64, base: u64, (k, n): (u64, u64)) -> (usize, u64) {
    let s = (i % scenarios.len() as u64) as usize;
    let round = i / scenarios.len() as u64;
    (s, base + round * n + (k - 1))
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
        "bench" => super::bench::main(scenarios),
        "mq-switch" => super::bench::mq_switch_main(scenarios),
        "shrink" => super::shrink::main(scenarios),
        other => {
            eprintln!(
                "error: SIM_SWEEP={other:?}: use fuzz, hunt, mutants, bench, mq-switch or shrink"
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

fn sweep(mode: &str, scenarios: Vec<Scenario>) -> i32 {
    let scenarios = match selected(scenarios) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            eprintln!("error: no scenarios to sweep");
            return 2;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let shard = match shard() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let hunting = mode == "hunt";
    let base = env_u64("SIM_SEED_BASE", if hunting { 1 } else { 1_000_000 });
    let jobs = env_u64("SIM_JOBS", 2).max(1);
    let minutes: f64 = std::env::var("SIM_SWEEP_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let max_runs = env_u64("SIM_SWEEP_MAX_RUNS", u64::MAX);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_catch: Arc<Mutex<Option<String>>> = Arc::default();
    let scenarios = Arc::new(scenarios);
    let failing_list =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sim-failures/failing-seeds.txt");
    let mut workers = Vec::new();
    for _ in 0..jobs {
        let (next, done, failures, stop, first_catch, scenarios, failing_list) = (
            next.clone(),
            done.clone(),
            failures.clone(),
            stop.clone(),
            first_catch.clone(),
            scenarios.clone(),
            failing_list.clone(),
        );
        workers.push(std::thread::spawn(move || loop {
            if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                return;
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= max_runs {
                return;
            }
            let (s, seed) = pick(&scenarios, i, base, shard);
            let scenario = &scenarios[s];
            let result = run_once(scenario, seed);
            let runs = done.fetch_add(1, Ordering::SeqCst) + 1;
            let Some((class, violation)) = result.failure else { continue };
            failures.fetch_add(1, Ordering::SeqCst);
            let replay = replay_command(scenario, seed);
            let dir = report::artifact_dir(&scenario.name, seed);
            let _ = report::write_artifacts(&dir, &result.events, class.name(), &violation, &replay);
            if let Some(parent) = failing_list.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&failing_list) {
                let _ = writeln!(f, "{replay}    # {} {}: {}", class.name(), violation.invariant, violation.message);
            }
            eprintln!("FAIL {}::seed_{seed}: {} {violation}\n  replay: {replay}", scenario.name, class.name());
            if hunting {
                let mut first = first_catch.lock().unwrap();
                if first.is_none() {
                    *first = Some(format!(
                        "caught=yes runs={runs} wall_ms={} invariant={} class={} scenario={} seed={seed}",
                        started.elapsed().as_millis(),
                        violation.invariant,
                        class.name(),
                        scenario.name
                    ));
                }
                stop.store(true, Ordering::SeqCst);
            }
        }));
    }
    let mut last_report = Instant::now();
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        if !hunting && last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            progress(&done, &failures, started);
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let mutant = std::env::var("SIM_MUTANT").unwrap_or_default();
    if hunting {
        let runs = done.load(Ordering::SeqCst);
        match first_catch.lock().unwrap().take() {
            Some(line) => {
                println!("hunt: mutant={mutant} {line}");
                0
            }
            None => {
                println!(
                    "hunt: mutant={mutant} caught=no runs={runs} wall_ms={} invariant=- class=- scenario=- seed=-",
                    started.elapsed().as_millis()
                );
                1
            }
        }
    } else {
        progress(&done, &failures, started);
        let failed = failures.load(Ordering::SeqCst);
        if failed > 0 {
            eprintln!(
                "fuzz: {failed} failing seeds; replay lines in {}",
                failing_list.display()
            );
            1
        } else {
            0
        }
    }
}

fn progress(done: &AtomicU64, failures: &AtomicU64, started: Instant) {
    let runs = done.load(Ordering::SeqCst);
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!(
        "fuzz: seeds={runs} seeds/min={:.1} failures={} elapsed={:.1}min",
        runs as f64 / minutes.max(1e-9),
        failures.load(Ordering::SeqCst),
        minutes
    );
}
