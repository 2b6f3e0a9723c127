//! The simulation suite's entry point (libtest-mimic): one trial per
//! `<scenario>::seed_<N>`, plus the determinism checks across contexts (see
//! [`super::determinism`]).
//!
//! Environment:
//! - `SIM_SEEDS`: a count (`20`: seeds 1..=20) or a range (`100..200`) replacing
//!   every scenario's default seeds;
//! - `SIM_SCENARIO_FILE`: run this one scenario file instead of `scenarios/`;
//! - `SIM_CHECK_DETERMINISM=1`: run every trial twice in-process and report the
//!   first diverging event;
//! - `SIM_ARTIFACTS=always`: write the trace and timelines of passing runs too (to
//!   `target/sim-failures/<scenario>-<seed>.pass/`);
//! - `SIM_TRACE_DIR=dir`: write every run's trace to `dir/<scenario>-<seed>.jsonl`;
//! - `SIM_SWEEP=…`: a sweep instead of the suite (see [`super::sweep`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

use super::determinism::{self, SampleRun, SuiteRecord};
use super::run::{first_divergence, run_once, summary_line, write_run_artifacts, RunResult};
use super::scenario::{self, parse_seeds, Scenario};

fn run_trial(scenario: &Scenario, seed: u64, record: &SuiteRecord) -> Result<(), Failed> {
    let mut result = run_once(scenario, seed);
    let verdict = judge_trial(scenario, seed, &result);
    // Last, so the sample's events move into the record instead of being copied.
    record.record(
        &(scenario.name.clone(), seed),
        result.trace_hash,
        std::mem::take(&mut result.events),
    );
    verdict
}

/// Prints the trial's summary and turns its failure (if any) into the report.
fn judge_trial(scenario: &Scenario, seed: u64, result: &RunResult) -> Result<(), Failed> {
    println!("{}", summary_line(&scenario.name, seed, result));
    for note in &result.notes {
        println!("{note}");
    }
    if std::env::var("SIM_CHECK_DETERMINISM").is_ok_and(|v| v == "1") {
        check_repeat(scenario, seed, result)?;
    }
    if result.failure.is_none() {
        if let Some(leak) = result.leak() {
            return Err(format!(
                "{leak}\nreplay: {}",
                super::run::replay_command(scenario, seed)
            )
            .into());
        }
        if std::env::var("SIM_ARTIFACTS").is_ok_and(|v| v == "always") {
            write_run_artifacts(scenario, seed, result);
        }
        return Ok(());
    }
    let artifacts = write_run_artifacts(scenario, seed, result);
    let (class, violation) = result.failure.as_ref().expect("checked");
    let culprits = super::report::named_events(&result.events, violation);
    Err(format!(
        "{} failure: {violation}\n{culprits}{artifacts}\nreplay: {}",
        class.name(),
        super::run::replay_command(scenario, seed)
    )
    .into())
}

/// `SIM_CHECK_DETERMINISM=1`: the same trial again in this process.
fn check_repeat(scenario: &Scenario, seed: u64, first: &RunResult) -> Result<(), Failed> {
    let again = run_once(scenario, seed);
    if again.trace_hash == first.trace_hash {
        return Ok(());
    }
    let (a, b): (Vec<String>, Vec<String>) = (
        first.events.iter().map(|e| e.to_json()).collect(),
        again.events.iter().map(|e| e.to_json()).collect(),
    );
    let at = first_divergence(a.iter().map(String::as_str), b.iter().map(String::as_str))
        .unwrap_or_default();
    Err(format!(
        "nondeterminism: trace hashes {:016x} and {:016x}; first divergence at {at}",
        first.trace_hash, again.trace_hash
    )
    .into())
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
    let mut sample: Vec<SampleRun> = Vec::new();
    let mut scenario_trials = Vec::new();
    for scenario in &scenarios {
        let seeds = match parse_seeds(
            seeds_env.as_deref(),
            scenario.seeds,
            &scenario.regression_seeds,
        ) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        };
        sample.push((scenario.name.clone(), seeds[0]));
        scenario_trials.push((scenario.clone(), seeds));
    }
    // The planted leak runs the cheapest sample run (fewest simulated seconds).
    let cheapest = scenarios
        .iter()
        .zip(&sample)
        .min_by_key(|(s, _)| {
            (
                s.duration.safety_secs + s.duration.heal_secs,
                s.cluster.nodes,
            )
        })
        .map(|(_, run)| run.clone());
    let record = SuiteRecord::new(sample);
    for (scenario, seeds) in scenario_trials {
        for seed in seeds {
            let (sc, record) = (scenario.clone(), record.clone());
            trials.push(Trial::test(
                format!("{}::seed_{seed}", scenario.name),
                move || run_trial(&sc, seed, &record),
            ));
        }
    }
    if let Some(run) = cheapest {
        trials.push(Trial::test(
            "determinism::catches_a_planted_leak",
            move || determinism::check_planted_leak_is_caught(&run).map_err(Failed::from),
        ));
    }
    // Last: by the time a test thread takes it, every other trial has started.
    let will_run: Vec<String> = trials
        .iter()
        .filter(|t| !args.is_filtered_out(t))
        .map(|t| t.name().to_string())
        .collect();
    let scenarios = Arc::new(scenarios);
    trials.push(Trial::test("determinism::contexts", move || {
        let in_suite =
            |(name, seed): &SampleRun| will_run.contains(&format!("{name}::seed_{seed}"));
        determinism::check_contexts(&scenarios, &record, in_suite).map_err(Failed::from)
    }));
    libtest_mimic::run(&args, trials).exit();
}
