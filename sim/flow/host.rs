//! A flow host: its own Raft service container, driven by two loops until the
//! run stops — operations (publish, propose, broadcast) and the lock — plus a
//! receiver per subscription that records every envelope.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coordlab::flow::consensus::ProposalStatus;
use coordlab::flow::error::FlowError;
use coordlab::flow::events::{Event, EventEnvelope};
use coordlab::flow::lock::LockGuard;
use coordlab::flow::subscription::Subscription;
use coordlab::flow::types::{NodeId, StateChange, TaskResult, WorkflowDef, WorkflowId};
use coordlab::flow::ServiceContainer;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::JoinHandle;

use super::context::{host_ip, host_name, host_node, Ctx, LOCAL_TOPIC, RESOURCE, TOPIC};
use crate::sim::nodes::BuildForRun as _;
use crate::sim::trace::flow_scope::{CLUSTER, LOCAL};
use crate::sim::trace::FlowEvent;

/// How long a host waits for a lock before it gives up (drops the call).
const ACQUIRE_PATIENCE: Duration = Duration::from_secs(8);
/// How long a host follows a proposal's status before it calls it undecided.
const DECISION_PATIENCE: Duration = Duration::from_secs(8);
const STATUS_POLL: Duration = Duration::from_millis(100);

/// A subscription's receiver task and what it counted.
pub struct Receiver {
    pub topic: &'static str,
    pub scope: &'static str,
    pub task: tokio::task::JoinHandle<()>,
    pub received: Arc<AtomicU64>,
}

/// What a host leaves for the end of the run.
pub struct Stopped {
    pub container: ServiceContainer,
    pub receivers: Vec<Receiver>,
}

pub struct Host {
    pub k: u64,
    pub node: NodeHandle,
    pub task: JoinHandle<Option<Stopped>>,
}

pub fn start(handle: &Handle, ctx: &Ctx, k: u64) -> Host {
    let node = handle
        .create_node()
        .name(host_name(k))
        .ip(host_ip(k))
        .build_for_run();
    let task = node.spawn(run(ctx.clone(), k));
    Host { k, node, task }
}

/// One host's identity in the trace.
#[derive(Clone)]
struct Me {
    ctx: Ctx,
    k: u64,
    name: String,
}

impl Me {
    fn record(&self, event: FlowEvent) {
        self.ctx.record(host_node(self.k), event);
    }
}

async fn run(ctx: Ctx, k: u64) -> Option<Stopped> {
    let me = Me {
        name: host_name(k),
        ctx,
        k,
    };
    let container = build(&me).await?;
    let mut receivers = Vec::new();
    if k <= me.ctx.spec.subscribers {
        receivers.push(subscribe(&me, &container, CLUSTER).await?);
    }
    receivers.push(subscribe(&me, &container, LOCAL).await?);
    let locker = tokio::spawn(lock_loop(me.clone(), container.clone()));
    ops_loop(&me, &container).await;
    let _ = locker.await;
    Some(Stopped {
        container,
        receivers,
    })
}

/// Builds the container, again and again until the cluster answers (None once
/// the run stops first).
async fn build(me: &Me) -> Option<ServiceContainer> {
    while !me.ctx.stop.stopped() {
        match ServiceContainer::new_cluster(me.ctx.config(me.k)).await {
            Ok(container) => {
                me.record(FlowEvent::ContainerBuilt {
                    host: me.name.clone(),
                    error: None,
                });
                return Some(container);
            }
            Err(e) => {
                me.record(FlowEvent::ContainerBuilt {
                    host: me.name.clone(),
                    error: Some(e.to_string()),
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    None
}

/// Subscribes (retrying until it works) and starts the receiver.
async fn subscribe(me: &Me, container: &ServiceContainer, scope: &'static str) -> Option<Receiver> {
    let topic = if scope == CLUSTER { TOPIC } else { LOCAL_TOPIC };
    let subscription = loop {
        if me.ctx.stop.stopped() {
            return None;
        }
        let bus = &container.event_bus;
        let attempt = if scope == CLUSTER {
            bus.subscribe_cluster(topic).await
        } else {
            bus.subscribe_local(topic).await
        };
        match attempt {
            Ok(s) => break s,
            Err(e) => {
                tracing::debug!(error = %e, "flow host: subscribing failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    me.record(FlowEvent::Subscribed {
        host: me.name.clone(),
        topic: topic.into(),
        scope: scope.into(),
    });
    let received = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(receive(
        me.clone(),
        subscription,
        topic,
        scope,
        received.clone(),
    ));
    Some(Receiver {
        topic,
        scope,
        task,
        received,
    })
}

async fn receive(
    me: Me,
    mut subscription: Subscription<EventEnvelope>,
    topic: &'static str,
    scope: &'static str,
    received: Arc<AtomicU64>,
) {
    loop {
        match subscription.recv().await {
            Ok(envelope) => {
                received.fetch_add(1, Ordering::SeqCst);
                me.record(FlowEvent::Received {
                    host: me.name.clone(),
                    topic: topic.into(),
                    scope: scope.into(),
                    sequence: envelope.sequence,
                    origin: envelope.origin.to_string(),
                    payload: envelope
                        .event
                        .payload
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            Err(e) => {
                let (missed, closed) = match e {
                    FlowError::Lagged { missed } => (missed, false),
                    _ => (0, true),
                };
                me.record(FlowEvent::Lagged {
                    host: me.name.clone(),
                    topic: topic.into(),
                    scope: scope.into(),
                    missed,
                    closed,
                });
                if closed {
                    return;
                }
            }
        }
    }
}

/// Publishes, proposes and broadcasts until the run stops.
async fn ops_loop(me: &Me, container: &ServiceContainer) {
    let mut published = 0u64;
    let mut proposals = 0u64;
    let mut changes = 0u64;
    while !me.ctx.stop.stopped() {
        let pause = thread_rng().gen_range(10..=me.ctx.spec.op_pause_max_ms.max(10));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let op = thread_rng().gen_range(0..10);
        match op {
            0..=3 => {
                published += 1;
                publish(me, container, CLUSTER, published).await;
            }
            4 => {
                published += 1;
                publish(me, container, LOCAL, published).await;
            }
            5 | 6 => {
                proposals += 1;
                propose(me, container, proposals).await;
            }
            _ => {
                broadcast(me, container, changes).await;
                changes += 1;
            }
        }
    }
}

async fn publish(me: &Me, container: &ServiceContainer, scope: &'static str, n: u64) {
    let topic = if scope == CLUSTER { TOPIC } else { LOCAL_TOPIC };
    let event = Event::new("job", serde_json::Value::String(format!("{}#{n}", me.name)));
    me.record(FlowEvent::PublishInvoked {
        host: me.name.clone(),
        topic: topic.into(),
        scope: scope.into(),
        n,
    });
    let bus = &container.event_bus;
    let result = if scope == CLUSTER {
        bus.publish_cluster(topic, event).await
    } else {
        bus.publish_local(topic, event).await
    };
    me.record(FlowEvent::PublishReturned {
        host: me.name.clone(),
        topic: topic.into(),
        scope: scope.into(),
        n,
        error: result.err().map(|e| e.to_string()),
    });
}

/// Proposes a change and follows its status until it is decided.
async fn propose(me: &Me, container: &ServiceContainer, n: u64) {
    let change = StateChange::WorkflowCreated {
        workflow_id: WorkflowId::new(format!("{}-p{n}", me.name)),
        definition: WorkflowDef::default(),
    };
    let id = match container.consensus.propose(change).await {
        Ok(id) => id,
        Err(e) => {
            me.record(FlowEvent::ProposalDecided {
                host: me.name.clone(),
                id: String::new(),
                status: format!("error: {e}"),
            });
            return;
        }
    };
    me.record(FlowEvent::Proposed {
        host: me.name.clone(),
        id: id.to_string(),
    });
    let started = tokio::time::Instant::now();
    let status = loop {
        if me.ctx.stop.stopped() || started.elapsed() > DECISION_PATIENCE {
            break "undecided".to_string();
        }
        match container.consensus.status(id.clone()).await {
            Ok(ProposalStatus::Committed) => break "committed".to_string(),
            Ok(ProposalStatus::Rejected { reason }) => break format!("rejected: {reason}"),
            Ok(ProposalStatus::Pending) | Err(_) => tokio::time::sleep(STATUS_POLL).await,
        }
    };
    me.record(FlowEvent::ProposalDecided {
        host: me.name.clone(),
        id: id.to_string(),
        status,
    });
}

/// The host's `step`-th change: each workflow is created, its task started,
/// then completed.
fn change_at(me: &Me, step: u64) -> (StateChange, String) {
    let i = step / 3;
    let workflow = format!("{}-w{i}", me.name);
    let task = format!("{}-t{i}", me.name);
    match step % 3 {
        0 => (
            StateChange::WorkflowCreated {
                workflow_id: workflow.as_str().into(),
                definition: WorkflowDef {
                    name: workflow.clone(),
                    tasks: vec![task],
                },
            },
            format!("WorkflowCreated {workflow}"),
        ),
        1 => (
            StateChange::TaskStarted {
                task_id: task.as_str().into(),
                node_id: NodeId::new(me.name.clone()),
            },
            format!("TaskStarted {task}"),
        ),
        _ => (
            StateChange::TaskCompleted {
                task_id: task.as_str().into(),
                result: TaskResult::default(),
            },
            format!("TaskCompleted {task}"),
        ),
    }
}

async fn broadcast(me: &Me, container: &ServiceContainer, step: u64) {
    let (change, described) = change_at(me, step);
    let result = container.state_sync.broadcast_change(change).await;
    let (outcome, error) = match result {
        Ok(()) => ("ok", None),
        Err(e @ FlowError::Unavailable { .. }) => ("unknown", Some(e.to_string())),
        Err(e) => ("err", Some(e.to_string())),
    };
    me.record(FlowEvent::ChangeBroadcast {
        host: me.name.clone(),
        change: described,
        outcome: outcome.into(),
        error,
    });
}

/// Takes the shared lock, uses the fenced store, renews (sometimes late),
/// releases; until the run stops.
async fn lock_loop(me: Me, container: ServiceContainer) {
    while !me.ctx.stop.stopped() {
        let pause = thread_rng().gen_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let spec = &me.ctx.spec;
        let ttl_secs = thread_rng().gen_range(spec.lock_ttl_min_secs..=spec.lock_ttl_max_secs);
        let ttl = Duration::from_secs(ttl_secs);
        let lock = &container.distributed_lock;
        let guard = match tokio::time::timeout(ACQUIRE_PATIENCE, lock.acquire(RESOURCE, ttl)).await
        {
            Ok(Ok(guard)) => guard,
            Ok(Err(e)) => {
                lock_failed(&me, e.to_string());
                continue;
            }
            Err(_) => {
                lock_failed(&me, format!("gave up after {ACQUIRE_PATIENCE:?}"));
                continue;
            }
        };
        me.record(FlowEvent::LockAcquired {
            host: me.name.clone(),
            resource: RESOURCE.into(),
            token: guard.fencing_token(),
            ttl_ms: ttl_secs * 1000,
        });
        hold(&me, &container, &guard, ttl).await;
        let token = guard.fencing_token();
        let outcome = match lock.release(guard).await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        me.record(FlowEvent::LockReleased {
            host: me.name.clone(),
            resource: RESOURCE.into(),
            token,
            outcome,
        });
    }
}

fn lock_failed(me: &Me, error: String) {
    me.record(FlowEvent::LockAcquireFailed {
        host: me.name.clone(),
        resource: RESOURCE.into(),
        error,
    });
}

/// Uses the store right after each Ok from the cluster (acquire, renew), renews
/// a few times, and sometimes sleeps past the TTL before a last renew.
async fn hold(me: &Me, container: &ServiceContainer, guard: &LockGuard, ttl: Duration) {
    use_resource(me, guard);
    let renewals = thread_rng().gen_range(0..=2);
    for _ in 0..renewals {
        let pause = thread_rng().gen_range(200..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if me.ctx.stop.stopped() || !renew(me, container, guard, ttl, false).await {
            return;
        }
        use_resource(me, guard);
    }
    let late_renew = thread_rng().gen_bool(me.ctx.spec.late_renew_fraction);
    if late_renew && !me.ctx.stop.stopped() {
        let late = ttl + Duration::from_millis(thread_rng().gen_range(1_000..2_000));
        tokio::time::sleep(late).await;
        if renew(me, container, guard, ttl, true).await {
            use_resource(me, guard);
        }
    }
}

async fn renew(
    me: &Me,
    container: &ServiceContainer,
    guard: &LockGuard,
    ttl: Duration,
    late: bool,
) -> bool {
    let result = container.distributed_lock.renew(guard, ttl).await;
    me.record(FlowEvent::LockRenewed {
        host: me.name.clone(),
        resource: RESOURCE.into(),
        token: guard.fencing_token(),
        late,
        ok: result.is_ok(),
        error: result.as_ref().err().map(|e| e.to_string()),
    });
    result.is_ok()
}

fn use_resource(me: &Me, guard: &LockGuard) {
    let token = guard.fencing_token();
    let (accepted, highest) = me.ctx.resources.write(RESOURCE, token as i64);
    me.record(FlowEvent::ResourceUsed {
        host: me.name.clone(),
        resource: RESOURCE.into(),
        token,
        accepted,
        highest: highest.max(0) as u64,
    });
}
