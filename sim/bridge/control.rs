//! The bridge's own faults, on top of the cluster's: brokers crash or stop
//! gracefully (one down at a time) and restart; agents crash (most come back as a new generation, some stay
//! down for good) and are cut off from some or all brokers for a while. Every
//! fault is drawn at the start and over before the safety phase ends, so the
//! healed phase starts with every broker up and every link clear.

use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use madsim::task::NodeId;

use super::context::{Ctx, AGENTS, BROKERS};
use crate::sim::trace::BridgeEvent;

/// Share of broker stops that are graceful (clients and agents told to move).
const GRACEFUL_FRACTION: f64 = 0.5;
/// How long a gracefully stopping broker waits for them to go.
const LEAVE_GRACE: Duration = Duration::from_secs(1);
/// Share of crashed agents that come back.
const AGENT_RESTART_FRACTION: f64 = 0.7;

enum Fault {
    CrashBroker(u64),
    CrashAgent(u64),
    CutOff(u64),
}

pub struct Hosts {
    pub brokers: Vec<NodeId>,
    pub agents: Vec<NodeId>,
}

/// Runs the faults; returns once the last is over. `window` is the safety phase.
pub async fn run(ctx: Ctx, handle: Handle, hosts: Hosts, window: Duration) {
    let spec = ctx.spec.clone();
    let mut rng = thread_rng();
    // Faults start after 3 s and end (restarts and reconnections included, at most
    // 6 s later) 2 s before the window does.
    let last_start = window.as_millis().saturating_sub(11_000).max(3_001) as u64;
    let mut plan: Vec<(u64, Fault)> = Vec::new();
    for _ in 0..spec.broker_crashes {
        plan.push((
            rng.gen_range(3_000..last_start),
            Fault::CrashBroker(rng.gen_range(1..=spec.brokers)),
        ));
    }
    for _ in 0..spec.agent_crashes {
        plan.push((
            rng.gen_range(3_000..last_start),
            Fault::CrashAgent(rng.gen_range(1..=spec.agents)),
        ));
    }
    for _ in 0..spec.agent_cut_offs {
        plan.push((
            rng.gen_range(3_000..last_start),
            Fault::CutOff(rng.gen_range(1..=spec.agents)),
        ));
    }
    plan.sort_by_key(|(at, _)| *at);
    let start = tokio::time::Instant::now();
    // Until when each broker and agent is busy with a fault (one at a time each;
    // one broker down at a time); agents down for good stay busy.
    let mut brokers_busy_until = 0u64;
    let mut agent_busy_until = vec![0u64; spec.agents as usize + 1];
    for (at, fault) in plan {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        let down_for = rng.gen_range(2_000..=6_000u64);
        match fault {
            Fault::CrashBroker(k) => {
                if at <= brokers_busy_until {
                    continue;
                }
                let host = hosts.brokers[k as usize - 1];
                if rng.gen_bool(GRACEFUL_FRACTION) {
                    let broker = ctx
                        .serving
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&k)
                        .cloned();
                    if let Some(broker) = broker {
                        ctx.record(
                            0,
                            BridgeEvent::BrokerStopping {
                                broker: BROKERS.id(k),
                            },
                        );
                        broker.leave(LEAVE_GRACE).await;
                    }
                }
                handle.kill(host);
                // Busy until its restart, counted from the kill: a graceful leave
                // takes up to LEAVE_GRACE, and a fault inside that window used to
                // "crash" the dead broker and later restart it while it was serving
                // again (bridge_faults::seed_900000029).
                brokers_busy_until = start.elapsed().as_millis() as u64 + down_for;
                ctx.record(
                    0,
                    BridgeEvent::BrokerCrashed {
                        broker: BROKERS.id(k),
                    },
                );
                let handle = handle.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(down_for)).await;
                    handle.restart(host);
                });
            }
            Fault::CrashAgent(a) => {
                if at < agent_busy_until[a as usize] {
                    continue;
                }
                let host = hosts.agents[a as usize - 1];
                handle.kill(host);
                ctx.record(
                    0,
                    BridgeEvent::AgentCrashed {
                        agent: AGENTS.id(a),
                    },
                );
                if rng.gen_bool(AGENT_RESTART_FRACTION) {
                    agent_busy_until[a as usize] = at + down_for;
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(down_for)).await;
                        handle.restart(host);
                    });
                } else {
                    agent_busy_until[a as usize] = u64::MAX;
                }
            }
            Fault::CutOff(a) => {
                if at < agent_busy_until[a as usize] {
                    continue;
                }
                agent_busy_until[a as usize] = at + down_for;
                // Half the cut-offs leave the agent no broker at all.
                let cut: Vec<u64> = if rng.gen_bool(0.5) {
                    (1..=spec.brokers).collect()
                } else {
                    let keep = rng.gen_range(1..=spec.brokers);
                    (1..=spec.brokers)
                        .filter(|&k| k != keep && rng.gen_bool(0.7))
                        .collect()
                };
                let agent_host = hosts.agents[a as usize - 1];
                let links: Vec<NodeId> =
                    cut.iter().map(|&k| hosts.brokers[k as usize - 1]).collect();
                clog(agent_host, &links, true);
                ctx.record(
                    0,
                    BridgeEvent::AgentCutOff {
                        agent: AGENTS.id(a),
                        brokers: cut.iter().map(|&k| BROKERS.id(k)).collect(),
                        for_ms: down_for,
                    },
                );
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(down_for)).await;
                    clog(agent_host, &links, false);
                    ctx.record(
                        0,
                        BridgeEvent::AgentReconnected {
                            agent: AGENTS.id(a),
                        },
                    );
                });
            }
        }
    }
    let quiet = start + window - Duration::from_millis(2_000);
    tokio::time::sleep_until(quiet).await;
}

fn clog(host: NodeId, others: &[NodeId], on: bool) {
    let net = NetSim::current();
    for &other in others {
        if on {
            net.clog_link(host, other);
            net.clog_link(other, host);
        } else {
            net.unclog_link(host, other);
            net.unclog_link(other, host);
        }
    }
}
