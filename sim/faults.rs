//! The fault plan and its driver.
//!
//! A plan is a list of timed [`Action`]s: the scenario's explicit timeline plus, when
//! `faults.kinds` is set, random faults drawn from the seed. In swarm mode each seed
//! first draws which kinds are on and how hard (TigerBeetle's swarm testing), so
//! different seeds explore different mixes. Every random fault carries its own heal.

use std::sync::MutexGuard;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};

use super::disk::DiskFaults;
use super::net::LinkFaults;
use super::scenario::{Action, FaultKind, FaultSpec, Scenario};
use super::world::{default_latency, NodeState, SharedWorld, World};

/// How hard each fault kind hits in this run.
#[derive(Debug, Clone)]
struct Intensity {
    loss: f64,
    duplicate: f64,
    reorder: f64,
    max_delay_ms: u64,
    latency_ms: (u64, u64),
    disk_eio: f64,
    disk_latency_ms: (u64, u64),
    clock_jump_ms: i64,
    clock_drift_ppm: i64,
}

impl Intensity {
    fn draw(rng: &mut impl Rng, swarm: bool) -> Self {
        if !swarm {
            return Intensity {
                loss: 0.05,
                duplicate: 0.05,
                reorder: 0.1,
                max_delay_ms: 100,
                latency_ms: (5, 50),
                disk_eio: 0.01,
                disk_latency_ms: (1, 20),
                clock_jump_ms: 5_000,
                clock_drift_ppm: 100_000,
            };
        }
        Intensity {
            loss: rng.gen_range(0.01..0.3),
            duplicate: rng.gen_range(0.01..0.2),
            reorder: rng.gen_range(0.05..0.4),
            max_delay_ms: rng.gen_range(10..400),
            latency_ms: (rng.gen_range(1..20), rng.gen_range(20..200)),
            disk_eio: rng.gen_range(0.001..0.05),
            disk_latency_ms: (rng.gen_range(0..5), rng.gen_range(5..100)),
            clock_jump_ms: rng.gen_range(500..60_000),
            clock_drift_ppm: rng.gen_range(10_000..400_000),
        }
    }
}

/// A timed action.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    pub at_ms: u64,
    pub action: Action,
}

pub struct FaultDriver {
    pub schedule: Vec<Scheduled>,
    world: SharedWorld,
}

impl FaultDriver {
    /// Builds the plan for this seed (draws from the simulation's seeded RNG).
    pub fn plan(scenario: &Scenario, world: SharedWorld) -> Self {
        let mut rng = thread_rng();
        let f = &scenario.faults;
        let kinds = draw_kinds(&mut rng, f);
        let intensity = Intensity::draw(&mut rng, f.swarm);
        let mut schedule: Vec<Scheduled> = scenario
            .timeline
            .iter()
            .map(|e| Scheduled {
                at_ms: e.at_ms,
                action: e.action.clone(),
            })
            .collect();
        let safety_ms = scenario.duration.safety_secs * 1000;
        let nodes = scenario.cluster.nodes;
        let mut at = rng.gen_range(500..1500u64);
        // Nodes a run may lose for good (killed for good, or a flipped bit the
        // node refuses to start from): a majority must stay able to serve.
        let mut may_lose = (nodes.saturating_sub(1) / 2) as usize;
        while !kinds.is_empty() && at < safety_ms {
            let kind = kinds[rng.gen_range(0..kinds.len())];
            let heal = rng.gen_range(f.min_fault_ms..=f.max_fault_ms);
            let node = rng.gen_range(1..=nodes);
            let draw = Draw {
                nodes,
                node,
                heal,
                intensity: &intensity,
            };
            if let Some(action) = draw.action(kind, &mut rng, &mut may_lose) {
                schedule.push(Scheduled { at_ms: at, action });
            }
            let mean = f.mean_interval_ms;
            at += rng.gen_range(mean / 2..=mean + mean / 2).max(1);
        }
        schedule.sort_by_key(|s| s.at_ms);
        FaultDriver { schedule, world }
    }

    /// Executes the schedule (on the driver's own madsim node).
    pub async fn run(self) {
        let start = tokio::time::Instant::now();
        for item in self.schedule {
            let due = start + Duration::from_millis(item.at_ms);
            tokio::time::sleep_until(due).await;
            apply(&self.world, item.action).await;
        }
    }
}

fn after(world: &SharedWorld, ms: Option<u64>, action: Action) {
    if let Some(ms) = ms {
        let world = world.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            apply(&world, action).await;
        });
    }
}

fn set_link_faults(world: &SharedWorld, faults: LinkFaults) {
    let w = world.lock().unwrap_or_else(|e| e.into_inner());
    *w.link_faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
}

/// Carries out one action now (and schedules its heal).
pub fn apply(
    world: &SharedWorld,
    action: Action,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        let description = serde_json::to_string(&action).expect("actions serialize");
        match action {
            Action::AddNode => {
                super::membership::add_node(world).await;
                return;
            }
            Action::RemoveNode { node } => {
                super::membership::remove_node(world, node).await;
                return;
            }
            _ => {}
        }
        let w = world.lock().unwrap_or_else(|e| e.into_inner());
        w.fault(description);
        match action {
            Action::Partition { .. }
            | Action::OneWay { .. }
            | Action::HealNetwork
            | Action::IsolateLeader { .. } => apply_partition(world, w, action),
            Action::LinkFaults { .. } | Action::Latency { .. } => {
                apply_link_faults(world, w, action)
            }
            Action::Kill { .. }
            | Action::KillForGood { .. }
            | Action::Restart { .. }
            | Action::Pause { .. }
            | Action::KillLeader { .. } => apply_process(world, w, action),
            Action::DiskFaults { .. } | Action::TornCrash { .. } | Action::BitFlip { .. } => {
                apply_disk(world, w, action)
            }
            Action::ClockJump { .. } | Action::ClockDrift { .. } => apply_clock(w, action),
            Action::AddNode | Action::RemoveNode { .. } => unreachable!("handled above"),
        }
    })
}

/// Partitions, one-way links, isolating the leader, healing the network.
fn apply_partition(world: &SharedWorld, w: MutexGuard<'_, World>, action: Action) {
    match action {
        Action::Partition {
            groups,
            heal_after_ms,
        } => {
            w.partition(&groups);
            after(world, heal_after_ms, Action::HealNetwork);
        }
        Action::OneWay {
            from,
            to,
            heal_after_ms,
        } => {
            w.clog_one_way(from, to);
            after(world, heal_after_ms, Action::HealNetwork);
        }
        Action::HealNetwork => w.heal_network(),
        Action::IsolateLeader { heal_after_ms } => {
            if let Some(leader) = w.recorder.current_leader() {
                let others: Vec<u64> = w.nodes.keys().copied().filter(|&n| n != leader).collect();
                w.fault(format!("isolating leader {leader}"));
                w.partition(&[vec![leader], others]);
                after(world, heal_after_ms, Action::HealNetwork);
            }
        }
        _ => unreachable!("not a partition action"),
    }
}

/// Drops, duplicates and delays on every link; network latency.
fn apply_link_faults(world: &SharedWorld, w: MutexGuard<'_, World>, action: Action) {
    match action {
        Action::LinkFaults {
            drop,
            duplicate,
            delay,
            max_delay_ms,
            heal_after_ms,
        } => {
            drop_guard(w);
            set_link_faults(
                world,
                LinkFaults {
                    drop,
                    duplicate,
                    delay,
                    max_delay_ms,
                },
            );
            if let Some(ms) = heal_after_ms {
                let world = world.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    set_link_faults(&world, LinkFaults::default());
                });
            }
        }
        Action::Latency {
            min_ms,
            max_ms,
            heal_after_ms,
        } => {
            let range =
                Duration::from_millis(min_ms)..Duration::from_millis(max_ms.max(min_ms + 1));
            w.net.update_config(|c| c.send_latency = range);
            if let Some(ms) = heal_after_ms {
                let net = w.net.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    net.update_config(|c| c.send_latency = default_latency());
                });
            }
        }
        _ => unreachable!("not a link faults action"),
    }
}

/// Killing, restarting and pausing node processes.
fn apply_process(world: &SharedWorld, mut w: MutexGuard<'_, World>, action: Action) {
    match action {
        Action::Kill {
            node,
            restart_after_ms,
        } => {
            w.kill(node);
            after(world, restart_after_ms, Action::Restart { node });
        }
        Action::KillForGood { node } if w.may_write_off(node) => w.kill_for_good(node),
        Action::KillForGood { node } => w.fault(format!(
            "node {node} kept: losing it would leave no majority of members able to serve"
        )),
        Action::Restart { node } => {
            if w.nodes
                .get(&node)
                .is_some_and(|n| n.state == NodeState::Down)
            {
                w.restart(node);
            }
        }
        Action::Pause {
            node,
            resume_after_ms,
        } => {
            w.pause(node);
            let world = world.clone();
            if let Some(ms) = resume_after_ms {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
                    w.fault(format!("resume node {node}"));
                    w.resume(node);
                });
            }
        }
        Action::KillLeader { restart_after_ms } => {
            if let Some(leader) = w.recorder.current_leader() {
                w.fault(format!("leader is node {leader}"));
                w.kill(leader);
                after(world, restart_after_ms, Action::Restart { node: leader });
            }
        }
        _ => unreachable!("not a process action"),
    }
}

/// Disk faults, torn writes at a crash, bit flips.
fn apply_disk(world: &SharedWorld, mut w: MutexGuard<'_, World>, action: Action) {
    match action {
        Action::DiskFaults {
            node,
            write_eio,
            sync_eio,
            sync_latency_ms,
            torn_writes,
            heal_after_ms,
        } => {
            if let Some(n) = w.nodes.get(&node) {
                let disk = n.disk.clone();
                disk.set_faults(DiskFaults {
                    write_eio,
                    sync_eio,
                    sync_latency_ms,
                    torn_writes,
                });
                if let Some(ms) = heal_after_ms {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        disk.set_faults(DiskFaults::default());
                    });
                }
            }
        }
        Action::TornCrash {
            node,
            restart_after_ms,
        } => {
            if let Some(n) = w.nodes.get(&node) {
                let mut faults = n.disk.faults();
                faults.torn_writes = true;
                n.disk.set_faults(faults);
            }
            w.kill(node);
            after(world, restart_after_ms, Action::Restart { node });
        }
        Action::BitFlip {
            node,
            restart_after_ms,
        } => {
            let flip = w.may_write_off(node);
            w.kill(node);
            if !flip {
                w.fault(format!(
                    "no bit flipped on node {node}: losing it would leave no majority of members able to serve"
                ));
            } else if let Some(n) = w.nodes.get_mut(&node) {
                n.written_off = true;
                if let Some((file, offset)) = n.disk.flip_random_bit() {
                    w.fault(format!(
                        "flipped a bit of node {node}'s {file} at offset {offset}"
                    ));
                }
            }
            after(world, restart_after_ms, Action::Restart { node });
        }
        _ => unreachable!("not a disk action"),
    }
}

/// Clock jumps and drift.
fn apply_clock(w: MutexGuard<'_, World>, action: Action) {
    match action {
        Action::ClockJump { node, delta_ms } => {
            if let Some(n) = w.nodes.get(&node) {
                n.clock.jump(delta_ms);
            }
        }
        Action::ClockDrift {
            node,
            ppm,
            heal_after_ms,
        } => {
            if let Some(n) = w.nodes.get(&node) {
                let clock = n.clock.clone();
                clock.set_drift_ppm(ppm);
                if let Some(ms) = heal_after_ms {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        clock.set_drift_ppm(0);
                    });
                }
            }
        }
        _ => unreachable!("not a clock action"),
    }
}

fn drop_guard<T>(_guard: T) {}

/// The fault kinds a run draws from: the scenario's, or with `swarm` a random
/// non-empty subset of them (swarm testing: some runs see few kinds, hard).
fn draw_kinds(rng: &mut impl Rng, f: &FaultSpec) -> Vec<FaultKind> {
    let mut kinds: Vec<FaultKind> = f.kinds.clone();
    kinds.sort();
    kinds.dedup();
    if f.swarm && !kinds.is_empty() {
        let all = kinds.clone();
        kinds.retain(|_| rng.gen_bool(0.5));
        if kinds.is_empty() {
            kinds.push(all[rng.gen_range(0..all.len())]);
        }
    }
    kinds
}

/// What one scheduled fault draws before its kind is known: the node it hits and
/// when it heals.
struct Draw<'a> {
    nodes: u64,
    node: u64,
    heal: u64,
    intensity: &'a Intensity,
}

impl Draw<'_> {
    /// The action for `kind`, or none when the run may not take it (a node lost
    /// for good beyond the majority's margin, a one-way cut from a node to itself).
    fn action(&self, kind: FaultKind, rng: &mut impl Rng, may_lose: &mut usize) -> Option<Action> {
        let Draw {
            nodes,
            node,
            heal,
            intensity,
        } = *self;
        match kind {
            FaultKind::Partition => {
                let mut ids: Vec<u64> = (1..=nodes).collect();
                let cut = rng.gen_range(1..nodes.max(2)) as usize;
                for i in (1..ids.len()).rev() {
                    ids.swap(i, rng.gen_range(0..=i));
                }
                let (a, b) = ids.split_at(cut.min(ids.len()));
                Some(Action::Partition {
                    groups: vec![a.to_vec(), b.to_vec()],
                    heal_after_ms: Some(heal),
                })
            }
            FaultKind::OneWay => {
                let to = 1 + (node % nodes);
                (to != node).then_some(Action::OneWay {
                    from: node,
                    to,
                    heal_after_ms: Some(heal),
                })
            }
            FaultKind::Kill => Some(Action::Kill {
                node,
                restart_after_ms: Some(heal),
            }),
            FaultKind::KillForGood if *may_lose > 0 => {
                *may_lose -= 1;
                Some(Action::KillForGood { node })
            }
            FaultKind::KillForGood => None,
            FaultKind::Pause => Some(Action::Pause {
                node,
                resume_after_ms: Some(heal),
            }),
            FaultKind::LeaderChurn => Some(Action::KillLeader {
                restart_after_ms: Some(heal),
            }),
            FaultKind::IsolateLeader => Some(Action::IsolateLeader {
                heal_after_ms: Some(heal),
            }),
            FaultKind::Loss => Some(Action::LinkFaults {
                drop: intensity.loss,
                duplicate: 0.0,
                delay: 0.0,
                max_delay_ms: 0,
                heal_after_ms: Some(heal),
            }),
            FaultKind::Duplicate => Some(Action::LinkFaults {
                drop: 0.0,
                duplicate: intensity.duplicate,
                delay: 0.0,
                max_delay_ms: 0,
                heal_after_ms: Some(heal),
            }),
            FaultKind::Reorder => Some(Action::LinkFaults {
                drop: 0.0,
                duplicate: 0.0,
                delay: intensity.reorder,
                max_delay_ms: intensity.max_delay_ms,
                heal_after_ms: Some(heal),
            }),
            FaultKind::Latency => Some(Action::Latency {
                min_ms: intensity.latency_ms.0,
                max_ms: intensity.latency_ms.1,
                heal_after_ms: Some(heal),
            }),
            FaultKind::DiskEio => Some(Action::DiskFaults {
                node,
                write_eio: intensity.disk_eio,
                sync_eio: intensity.disk_eio,
                sync_latency_ms: (0, 0),
                torn_writes: false,
                heal_after_ms: Some(heal),
            }),
            FaultKind::DiskLatency => Some(Action::DiskFaults {
                node,
                write_eio: 0.0,
                sync_eio: 0.0,
                sync_latency_ms: intensity.disk_latency_ms,
                torn_writes: false,
                heal_after_ms: Some(heal),
            }),
            FaultKind::TornWrite => Some(Action::TornCrash {
                node,
                restart_after_ms: Some(heal),
            }),
            FaultKind::BitFlip if *may_lose > 0 => {
                *may_lose -= 1;
                Some(Action::BitFlip {
                    node,
                    restart_after_ms: Some(heal),
                })
            }
            FaultKind::BitFlip => None,
            FaultKind::ClockJump => {
                let delta = rng.gen_range(-intensity.clock_jump_ms..=intensity.clock_jump_ms);
                Some(Action::ClockJump {
                    node,
                    delta_ms: delta,
                })
            }
            FaultKind::ClockDrift => {
                let ppm = rng.gen_range(-intensity.clock_drift_ppm..=intensity.clock_drift_ppm);
                Some(Action::ClockDrift {
                    node,
                    ppm,
                    heal_after_ms: Some(heal),
                })
            }
            FaultKind::Membership => {
                if rng.gen_bool(0.5) {
                    Some(Action::AddNode)
                } else {
                    Some(Action::RemoveNode { node })
                }
            }
        }
    }
}
