//! `SIM_SWEEP=shrink`: proptest-driven search for a failing fault schedule, shrunk
//! to a small one and written out as a scenario file that replays it.
//!
//! A case is (seed, list of timed fault actions) on top of a base scenario whose
//! random faults are switched off. proptest generates cases until one fails (with
//! `SIM_MUTANT` set, until the mutant is caught), then shrinks both the seed and
//! the schedule — fewer actions, earlier, simpler — keeping the failure. The result
//! is written to `target/shrunk/<scenario>-<mutant>.toml` with its replay command.

use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use super::run::run_once;
use super::scenario::{Action, Scenario, TimelineEvent};

fn action_strategy(nodes: u64) -> impl Strategy<Value = Action> {
    let node = 1..=nodes;
    let heal = prop::option::of(100u64..4000);
    prop_oneof![
        (node.clone(), heal.clone()).prop_map(|(node, restart_after_ms)| Action::Kill {
            node,
            restart_after_ms
        }),
        (node.clone(), heal.clone()).prop_map(|(node, restart_after_ms)| Action::TornCrash {
            node,
            restart_after_ms
        }),
        heal.clone()
            .prop_map(|restart_after_ms| Action::KillLeader { restart_after_ms }),
        (node.clone(), heal.clone()).prop_map(|(node, resume_after_ms)| Action::Pause {
            node,
            resume_after_ms
        }),
        (node.clone(), heal.clone()).prop_map(move |(isolated, heal_after_ms)| Action::Partition {
            groups: vec![
                vec![isolated],
                (1..=nodes).filter(|&n| n != isolated).collect()
            ],
            heal_after_ms,
        }),
        (0.0f64..0.3, heal).prop_map(|(drop, heal_after_ms)| Action::LinkFaults {
            drop,
            duplicate: 0.0,
            delay: 0.0,
            max_delay_ms: 0,
            heal_after_ms,
        }),
    ]
}

fn with_schedule(base: &Scenario, schedule: &[(u64, Action)]) -> Scenario {
    let mut s = base.clone();
    s.faults.kinds.clear();
    s.faults.swarm = false;
    s.timeline = schedule
        .iter()
        .map(|(at_ms, action)| TimelineEvent {
            at_ms: *at_ms,
            action: action.clone(),
        })
        .collect();
    s.timeline.sort_by_key(|e| e.at_ms);
    s
}

pub fn main(scenarios: Vec<Scenario>) -> i32 {
    let wanted = std::env::var("SIM_SHRINK_SCENARIO").unwrap_or_else(|_| "crash_restart".into());
    let Some(base) = scenarios.into_iter().find(|s| s.name == wanted) else {
        eprintln!("error: no scenario {wanted:?} (set SIM_SHRINK_SCENARIO)");
        return 2;
    };
    let cases: u32 = std::env::var("SIM_SHRINK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let safety_ms = base.duration.safety_secs * 1000;
    let nodes = base.cluster.nodes;
    let strategy = (
        0u64..1000,
        prop::collection::vec((0..safety_ms, action_strategy(nodes)), 0..10),
    );
    let config = Config {
        cases,
        max_shrink_iters: 400,
        failure_persistence: None,
        ..Config::default()
    };
    // A fixed generator seed: the same search, and the same shrunk result, every time.
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7u8; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let outcome = runner.run(&strategy, |(seed, schedule)| {
        let scenario = with_schedule(&base, &schedule);
        match run_once(&scenario, seed).failure {
            None => Ok(()),
            Some((class, v)) => Err(TestCaseError::fail(format!(
                "{} {}: {}",
                class.name(),
                v.invariant,
                v.message
            ))),
        }
    });
    let (reason, (seed, schedule)) = match outcome {
        Ok(()) => {
            println!("shrink: no failing schedule in {cases} cases");
            return 1;
        }
        Err(proptest::test_runner::TestError::Fail(reason, value)) => (reason, value),
        Err(e) => {
            eprintln!("shrink: {e}");
            return 2;
        }
    };
    let mutant = std::env::var("SIM_MUTANT").unwrap_or_else(|_| "none".into());
    let mut shrunk = with_schedule(&base, &schedule);
    shrunk.name = format!("shrunk_{}_{}", base.name, mutant);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/shrunk");
    let path = dir.join(format!("{}.toml", shrunk.name));
    let replay = format!(
        "SIM_MUTANT={mutant} SIM_SCENARIO_FILE={} SIM_SEEDS={seed}..{} cargo test --features sim --test sim -- --exact {}::seed_{seed}",
        path.display(),
        seed + 1,
        shrunk.name
    );
    let text = scenario_toml(&shrunk, &reason.to_string(), &replay);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &text)) {
        eprintln!("shrink: writing {}: {e}", path.display());
        return 2;
    }
    println!("shrink: failure: {reason}");
    println!(
        "shrink: {} fault events at seed {seed}, written to {}",
        shrunk.timeline.len(),
        path.display()
    );
    println!("replay: {replay}");
    print!("{text}");
    0
}

/// Writes the parts of `s` a replay needs as a scenario file.
fn scenario_toml(s: &Scenario, reason: &str, replay: &str) -> String {
    let c = &s.cluster;
    let w = &s.workload;
    let mut out = String::new();
    let _ = writeln!(out, "# Shrunk by SIM_SWEEP=shrink. Fails with: {reason}");
    let _ = writeln!(out, "# replay: {replay}");
    let _ = writeln!(out, "name = {:?}\nseeds = 1\n", s.name);
    let _ = writeln!(
        out,
        "[cluster]\nnodes = {}\nmax_nodes = {}\ntick_ms = {}\nelection_ticks = {}\nheartbeat_ticks = {}\npre_vote = {}\ncheck_quorum = {}\nsnapshot_entries = {}\n",
        c.nodes, s.max_nodes(), c.tick_ms, c.election_ticks, c.heartbeat_ticks, c.pre_vote, c.check_quorum, c.snapshot_entries
    );
    let _ = writeln!(
        out,
        "[workload]\nclients = {}\nkeys = {}\nmin_interval_ms = {}\nmax_interval_ms = {}\nread_fraction = {}\nop_timeout_ms = {}\nattempt_timeout_ms = {}\n",
        w.clients, w.keys, w.min_interval_ms, w.max_interval_ms, w.read_fraction, w.op_timeout_ms, w.attempt_timeout_ms
    );
    let _ = writeln!(
        out,
        "[duration]\nsafety_secs = {}\nheal_secs = {}\n",
        s.duration.safety_secs, s.duration.heal_secs
    );
    for e in &s.timeline {
        let mut table = match toml::Value::try_from(&e.action) {
            Ok(toml::Value::Table(t)) => t,
            _ => continue,
        };
        table.insert("at_ms".into(), toml::Value::Integer(e.at_ms as i64));
        let body = toml::to_string(&table).unwrap_or_default();
        let _ = writeln!(out, "[[timeline]]\n{body}");
    }
    out
}
