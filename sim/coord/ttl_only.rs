//! The TTL-only demonstration: clients take one lock with the Lock service and a
//! kept-alive lease, as the lock workload does, but trust the lease TTL alone — they
//! write an unfenced resource. While inside, a holder is sometimes paused (its whole
//! client node: a stop-the-world GC pause, a VM migration) for longer than the TTL;
//! its keep-alives stop, the leader expires the lease, the next waiter gets the lock
//! and enters, and the paused holder wakes up still "inside". The first hold of every
//! run is paused, so every run shows it; `ttl_only_demo` reports the losses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use tokio::sync::mpsc;

use super::conn::EtcdConn;
use super::lease::{grant, lease_id, revoke, KeepAlive};
use super::lock::{acquire, lock_wait, release};
use super::resource::{Resources, Section};
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::EventKind;
use crate::sim::workload::WorkloadControl;

/// The lock the demo clients share.
pub const LOCK_NAME: &str = "demo-lock";

/// How often a hold after the first is paused.
const PAUSE_PROBABILITY: f64 = 0.3;

/// Pauses a client's node and resumes it later, from a harness node (a paused node
/// cannot resume itself).
#[derive(Clone)]
pub struct Pauser {
    handle: Handle,
    resume: mpsc::UnboundedSender<(NodeId, u64, u64)>,
    recorder: Arc<Recorder>,
    /// Whether the run's first pause is still to come.
    first_pending: Arc<AtomicBool>,
}

impl Pauser {
    /// Starts the resuming task on `resumer`.
    pub fn start(handle: Handle, resumer: &NodeHandle, recorder: Arc<Recorder>) -> Self {
        let (resume, mut requests) = mpsc::unbounded_channel::<(NodeId, u64, u64)>();
        let (h, r) = (handle.clone(), recorder.clone());
        resumer.spawn(async move {
            while let Some((node, client, pause_ms)) = requests.recv().await {
                let (h, r) = (h.clone(), r.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    r.record(
                        0,
                        EventKind::Fault {
                            action: format!("resume client {client}"),
                        },
                    );
                    h.resume(node);
                });
            }
        });
        Pauser {
            handle,
            resume,
            recorder,
            first_pending: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether this hold is paused: the run's first, then at random.
    fn should_pause(&self) -> bool {
        self.first_pending.swap(false, Ordering::SeqCst) || thread_rng().gen_bool(PAUSE_PROBABILITY)
    }

    /// Pauses the calling client's own node for `pause_ms`; returns once resumed.
    async fn pause_me(&self, node: NodeId, client: u64, pause_ms: u64) {
        self.recorder.record(
            0,
            EventKind::Fault {
                action: format!("pause client {client} for {pause_ms} ms (TTL-only demo)"),
            },
        );
        self.handle.pause(node);
        let _ = self.resume.send((node, client, pause_ms));
        // The node stops at this await and continues once resumed.
        tokio::task::yield_now().await;
    }
}

pub async fn run(
    client: u64,
    node: NodeId,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
    resources: Resources,
    pauser: Pauser,
) {
    let spec = &scenario.coord;
    let mut conn = EtcdConn::new(
        scenario.cluster.nodes,
        Duration::from_millis(spec.request_timeout_ms),
    );
    let mut n = 0;
    while !control.stopped() {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(10..100))).await;
        n += 1;
        let Some((lease, ttl_ms)) = grant(
            &mut conn,
            &recorder,
            client,
            lease_id(client, n),
            spec.lock_ttl_secs,
        )
        .await
        else {
            continue;
        };
        let keep = KeepAlive::spawn(client, lease, ttl_ms, &scenario, recorder.clone());
        let held = acquire(
            &mut conn,
            &recorder,
            client,
            LOCK_NAME,
            lease,
            lock_wait(&scenario),
        )
        .await;
        if let Some(held) = held {
            // No fencing: the token is recorded only to count what fencing would refuse.
            resources.write(LOCK_NAME, client, held.token, Section::Enter);
            if pauser.should_pause() {
                pauser.pause_me(node, client, spec.ttl_only_pause_ms).await;
            } else {
                let hold = thread_rng().gen_range(100..500);
                tokio::time::sleep(Duration::from_millis(hold)).await;
            }
            resources.write(LOCK_NAME, client, held.token, Section::Exit);
            release(&mut conn, &recorder, client, &held).await;
        }
        keep.stop();
        revoke(&mut conn, &recorder, client, lease).await;
    }
}
