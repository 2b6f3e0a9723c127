//! `SIM_SWEEP=bench`: how fast the harness simulates, against the physical limit.
//!
//! Runs the `reference` scenario (5 nodes, KV workload, faults on) for
//! `SIM_BENCH_SEEDS` seeds, `SIM_BENCH_REPEATS` passes, and reports the median
//! pass's time dilation (simulated seconds per wall second), seeds per minute, Raft
//! messages and events per wall second. Then pushes Raft messages through five bare
//! raft-rs `RawNode`s with `MemStorage` in a plain loop (no runtime, no network, no
//! disk) after each pass, for as long as the pass took, and reports the median of
//! the passes' ratios.

use std::time::Instant;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

use super::run::run_once;
use super::scenario::Scenario;
use super::trace::EventKind;

pub fn main(scenarios: Vec<Scenario>) -> i32 {
    let Some(reference) = scenarios.iter().find(|s| s.name == "reference") else {
        eprintln!("error: no scenario named `reference` in scenarios/");
        return 2;
    };
    let seeds = env_number("SIM_BENCH_SEEDS", 8);
    let repeats = env_number("SIM_BENCH_REPEATS", 3).max(1);
    // The same seeds several times: a shared 2-core machine varies by ±15% from one
    // pass to the next, so the median pass is reported (and every pass, to show the
    // spread). Every pass must reproduce the first one's trace hashes. Each pass is
    // followed by its own bare loop, as long as the pass: the ratio of the two is
    // taken while the machine is in the same state, and the median ratio reported.
    let mut passes: Vec<Pass> = Vec::new();
    for _ in 0..repeats {
        let mut pass = run_pass(reference, seeds);
        if let Some(first) = passes.first() {
            if first.hashes != pass.hashes {
                eprintln!(
                    "error: a repeated pass changed trace hashes: the run is not deterministic"
                );
                return 1;
            }
        }
        let (bare_msgs, bare_wall) =
            bare_raft_loop_for(5, pass.messages.max(1), pass.wall.max(0.5));
        pass.bare_rate = bare_msgs as f64 / bare_wall;
        passes.push(pass);
    }
    let mut by_wall: Vec<&Pass> = passes.iter().collect();
    by_wall.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    let median = by_wall[by_wall.len() / 2];
    let sim_s = median.sim_ms as f64 / 1000.0;
    println!(
        "reference scenario: {} nodes, {seeds} seeds x {repeats} passes, {} failures",
        reference.cluster.nodes, median.failures
    );
    let all: Vec<String> = passes
        .iter()
        .map(|p| format!("{:.1}", sim_s / p.wall))
        .collect();
    println!(
        "time dilation: {:.1} simulated s per wall s, median pass ({sim_s:.0} simulated s in {:.2} wall s, one thread; passes: {})",
        sim_s / median.wall,
        median.wall,
        all.join(", ")
    );
    println!("seeds per minute: {:.1}", seeds as f64 / median.wall * 60.0);
    let harness_rate = median.messages as f64 / median.wall;
    println!(
        "harness: {harness_rate:.0} raft messages/s, {:.0} events/s ({} messages, {} events)",
        median.events as f64 / median.wall,
        median.messages,
        median.events
    );
    println!(
        "bare raft-rs RawNode loop: {:.0} raft messages/s (after the median pass)",
        median.bare_rate
    );
    let mut ratios: Vec<f64> = passes.iter().map(Pass::ratio).collect();
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.1}x")).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "overhead: the harness moves Raft messages {:.1}x slower than the bare loop (median of the passes: {})",
        ratios[ratios.len() / 2],
        each.join(", ")
    );
    0
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One pass over the benchmark seeds.
struct Pass {
    sim_ms: u64,
    events: u64,
    messages: u64,
    failures: u64,
    wall: f64,
    hashes: Vec<u64>,
    /// Raft messages per second of the bare loop run right after this pass.
    bare_rate: f64,
}

impl Pass {
    /// How many times slower than the bare loop this pass moved Raft messages.
    fn ratio(&self) -> f64 {
        self.bare_rate / (self.messages as f64 / self.wall)
    }
}

fn run_pass(reference: &Scenario, seeds: u64) -> Pass {
    let mut pass = Pass {
        sim_ms: 0,
        events: 0,
        messages: 0,
        failures: 0,
        wall: 0.0,
        hashes: Vec::new(),
        bare_rate: 0.0,
    };
    let started = Instant::now();
    for seed in 1..=seeds {
        let r = run_once(reference, seed);
        pass.sim_ms += r.sim_ms;
        pass.events += r.events.len() as u64;
        pass.messages += r
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Sent { .. }))
            .count() as u64;
        pass.failures += u64::from(r.failure.is_some());
        pass.hashes.push(r.trace_hash);
    }
    pass.wall = started.elapsed().as_secs_f64();
    pass
}

/// Runs [`bare_raft_loop`] over `target` messages, fresh nodes each time, until the
/// runs add up to `min_secs`: the rate is then not a few milliseconds' noise, and the
/// logs stay as long as one pass's (a longer run would grow them and be slower).
fn bare_raft_loop_for(n: u64, target: u64, min_secs: f64) -> (u64, f64) {
    let (mut messages, mut secs) = (0, 0.0);
    while secs < min_secs {
        let (m, s) = bare_raft_loop(n, target);
        messages += m;
        secs += s;
    }
    (messages, secs)
}

/// Pushes at least `target` Raft messages through `n` in-memory RawNodes: elect node
/// 1, then propose 100-byte entries and deliver every message directly. Returns
/// (messages, seconds). Messages are encoded and decoded once each, as on a wire.
pub fn bare_raft_loop(n: u64, target: u64) -> (u64, f64) {
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let voters: Vec<u64> = (1..=n).collect();
    let mut nodes: Vec<RawNode<MemStorage>> = voters
        .iter()
        .map(|&id| {
            let storage =
                MemStorage::new_with_conf_state(ConfState::from((voters.clone(), vec![])));
            let config = Config {
                id,
                election_tick: 10,
                heartbeat_tick: 2,
                pre_vote: true,
                check_quorum: true,
                ..Default::default()
            };
            RawNode::new(&config, storage, &logger).expect("raw node")
        })
        .collect();
    let started = Instant::now();
    nodes[0].campaign().expect("campaign");
    let mut sent = 0u64;
    let mut inflight: Vec<Message> = Vec::new();
    let payload = vec![7u8; 100];
    let mut round = 0u64;
    while sent < target {
        round += 1;
        if nodes[0].raft.state == StateRole::Leader {
            for _ in 0..8 {
                let _ = nodes[0].propose(vec![], payload.clone());
            }
        }
        if round.is_multiple_of(16) {
            for node in nodes.iter_mut() {
                node.tick();
            }
        }
        for node in nodes.iter_mut() {
            drain_ready(node, &mut inflight);
        }
        for m in std::mem::take(&mut inflight) {
            sent += 1;
            let bytes = m.write_to_bytes().expect("encode");
            let m = Message::parse_from_bytes(&bytes).expect("decode");
            let to = (m.to - 1) as usize;
            let _ = nodes[to].step(m);
        }
    }
    (sent, started.elapsed().as_secs_f64())
}

fn drain_ready(node: &mut RawNode<MemStorage>, out: &mut Vec<Message>) {
    if !node.has_ready() {
        return;
    }
    let mut rd = node.ready();
    out.extend(rd.take_messages());
    let store = node.raft.raft_log.store.clone();
    if !rd.snapshot().is_empty() {
        store
            .wl()
            .apply_snapshot(rd.snapshot().clone())
            .expect("snapshot");
    }
    store.wl().append(rd.entries()).expect("append");
    if let Some(hs) = rd.hs() {
        store.wl().set_hardstate(hs.clone());
    }
    out.extend(rd.take_persisted_messages());
    let mut light = node.advance(rd);
    if let Some(commit) = light.commit_index() {
        store.wl().mut_hard_state().commit = commit;
    }
    out.extend(light.take_messages());
    node.advance_apply();
    // Keep memory flat: compact all but the last 1000 applied entries.
    let applied = node.raft.raft_log.applied;
    if applied > 2000 && applied.is_multiple_of(1000) {
        let _ = store.wl().compact(applied - 1000);
    }
}

/// `SIM_SWEEP=mq-switch`: for every MQ scenario, over `SIM_BENCH_SEEDS` seeds, the
/// simulated time from each coo leader change to every LogicNode being in the right
/// mode (Local iff its own coo leads): median and worst.
pub fn mq_switch_main(scenarios: Vec<Scenario>) -> i32 {
    let seeds: u64 = std::env::var("SIM_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    for scenario in scenarios.iter().filter(|s| s.mq.brokers) {
        let mut times = Vec::new();
        let mut failures = 0;
        for seed in 1..=seeds {
            let r = run_once(scenario, seed);
            failures += u64::from(r.failure.is_some());
            times.extend(super::checkers::mode_matches_leadership::mode_convergence_ms(&r.events));
        }
        times.sort_unstable();
        let median = times.get(times.len() / 2).copied().unwrap_or(0);
        let worst = times.last().copied().unwrap_or(0);
        println!(
            "{}: {seeds} seeds, {} leader changes, all LogicNodes in the right mode after median {median} ms, worst {worst} ms (simulated){}",
            scenario.name,
            times.len(),
            if failures > 0 { format!(", {failures} failing seeds") } else { String::new() }
        );
    }
    0
}
