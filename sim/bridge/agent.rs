//! Agents: each on its own host (a restart is a new generation), fronting one
//! instance of the service at a time. An instance serves for a while, then retires
//! — with a shutdown notice and its grace period (stopped at the grace's end, then
//! deregistered) or with a plain deregistration (stopped shortly after).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coordlab::bridge::{Agent, AgentConfig, AgentState, BridgeError};
use coordlab::sync::watch;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};

use super::context::{Ctx, AGENTS, SERVICE};
use super::instance::Instance;
use crate::sim::nodes::BuildForRun as _;
use crate::sim::trace::BridgeEvent;

/// An agent's call (register, notice, deregister) that takes longer is abandoned.
const CALL_PATIENCE: Duration = Duration::from_secs(5);
const REGISTER_ATTEMPTS: usize = 5;
/// How long an instance keeps serving after a plain deregistration.
const STOP_AFTER_DEREGISTER: Duration = Duration::from_millis(500);

fn millis(range: std::ops::RangeInclusive<u64>) -> Duration {
    Duration::from_millis(thread_rng().gen_range(range))
}

/// An agent host, running from its start and again (a new generation) after every
/// restart.
pub fn start(handle: &Handle, ctx: &Ctx, a: u64) -> NodeHandle {
    let ctx = ctx.clone();
    let generations = Arc::new(AtomicU64::new(0));
    handle
        .create_node()
        .name(AGENTS.id(a))
        .ip(AGENTS.ip(a))
        .init(move || {
            let generation = generations.fetch_add(1, Ordering::SeqCst) + 1;
            run(ctx.clone(), a, generation)
        })
        .build_for_run()
}

async fn run(ctx: Ctx, a: u64, generation: u64) {
    let node = AGENTS.node(a);
    let id = AGENTS.id(a);
    let agent = Agent::start(AgentConfig {
        id: id.clone(),
        brokers: ctx.brokers_from(a),
        retry_interval: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(1),
    })
    .expect("a valid agent configuration");
    ctx.record(node, BridgeEvent::AgentStarted { agent: id.clone() });
    tokio::spawn(record_connection(
        ctx.clone(),
        node,
        id.clone(),
        agent.state(),
    ));
    let mut n = 0u64;
    while !ctx.stop.stopped() {
        n += 1;
        let instance_id = format!("{}-g{generation}-i{n}", id);
        // Ports differ across generations: an address names one instance only.
        let addr = SocketAddr::new(AGENTS.ip(a), (8000 + 100 * generation + n) as u16);
        let instance = Instance::start(&ctx, node, instance_id.clone(), addr);
        if !register(&ctx, node, &agent, &instance_id, addr).await {
            stop(&ctx, node, instance).await;
            tokio::time::sleep(millis(500..=1_500)).await;
            continue;
        }
        tokio::time::sleep(millis(2_000..=6_000)).await;
        if ctx.stop.stopped() {
            break;
        }
        if thread_rng().gen_bool(ctx.spec.notice_fraction) {
            let grace = millis(ctx.spec.grace_min_ms..=ctx.spec.grace_max_ms);
            let sent_ms = ctx.recorder.lock().now_ms();
            let outcome =
                outcome(patiently(agent.shutdown_notice(SERVICE, &instance_id, grace)).await);
            ctx.record(
                node,
                BridgeEvent::NoticeSent {
                    sent_ms,
                    agent: id.clone(),
                    service: SERVICE.into(),
                    instance: instance_id.clone(),
                    grace_ms: grace.as_millis() as u64,
                    outcome,
                },
            );
            tokio::time::sleep(grace).await;
            stop(&ctx, node, instance).await;
            deregister(&ctx, node, &agent, &instance_id).await;
        } else {
            deregister(&ctx, node, &agent, &instance_id).await;
            tokio::time::sleep(STOP_AFTER_DEREGISTER).await;
            stop(&ctx, node, instance).await;
        }
        tokio::time::sleep(millis(500..=2_000)).await;
    }
    // The last instance serves on to the end of the run.
    std::future::pending::<()>().await;
}

async fn patiently(
    call: impl std::future::Future<Output = Result<(), BridgeError>>,
) -> Result<(), String> {
    match tokio::time::timeout(CALL_PATIENCE, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_PATIENCE:?}")),
    }
}

fn outcome(result: Result<(), String>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => e,
    }
}

/// Calls `attempt` until it succeeds, at most `REGISTER_ATTEMPTS` times, recording
/// each outcome as `event(outcome)`; whether it succeeded.
async fn retried<F, Fut>(
    ctx: &Ctx,
    node: u64,
    mut attempt: F,
    event: impl Fn(String) -> BridgeEvent,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), BridgeError>>,
{
    for _ in 0..REGISTER_ATTEMPTS {
        let result = patiently(attempt()).await;
        let ok = result.is_ok();
        ctx.record(node, event(outcome(result)));
        if ok {
            return true;
        }
        tokio::time::sleep(millis(300..=1_000)).await;
    }
    false
}

async fn register(ctx: &Ctx, node: u64, agent: &Agent, instance: &str, addr: SocketAddr) -> bool {
    let address = addr.to_string();
    retried(
        ctx,
        node,
        || agent.register(SERVICE, instance, &address, BTreeMap::new()),
        |outcome| BridgeEvent::InstanceRegistered {
            agent: AGENTS.id(node - AGENTS.base),
            service: SERVICE.into(),
            instance: instance.into(),
            outcome,
        },
    )
    .await
}

async fn deregister(ctx: &Ctx, node: u64, agent: &Agent, instance: &str) {
    retried(
        ctx,
        node,
        || agent.deregister(SERVICE, instance),
        |outcome| BridgeEvent::InstanceDeregistered {
            agent: AGENTS.id(node - AGENTS.base),
            service: SERVICE.into(),
            instance: instance.into(),
            outcome,
        },
    )
    .await;
}

async fn stop(ctx: &Ctx, node: u64, instance: Instance) {
    let id = instance.id.clone();
    instance.stop().await;
    ctx.record(node, BridgeEvent::InstanceStopped { instance: id });
}

async fn record_connection(
    ctx: Ctx,
    node: u64,
    agent: String,
    mut state: watch::Receiver<AgentState>,
) {
    let mut last: Option<Option<String>> = None;
    loop {
        let broker = state.borrow_and_update().broker.clone();
        if last.as_ref() != Some(&broker) {
            ctx.record(
                node,
                BridgeEvent::AgentConnected {
                    agent: agent.clone(),
                    broker: broker.clone(),
                },
            );
            last = Some(broker);
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
