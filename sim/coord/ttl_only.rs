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
use madsim::task::NodeId;

use super::conn::connect;
use super::lease::{grant_kept, revoke};
use super::lock::{acquire, lock_wait, release};
use super::pauser::Pauser;
use super::resource::{Resources, Section};
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::workload::WorkloadControl;

/// The lock the demo clients share.
pub const LOCK_NAME: &str = "demo-lock";

/// How often a hold after the first is paused.
const PAUSE_PROBABILITY: f64 = 0.3;

/// Whether a hold is paused: the run's first, then at random.
#[derive(Clone)]
pub struct PausePlan {
    /// Whether the run's first pause is still to come.
    first_pending: Arc<AtomicBool>,
}

impl PausePlan {
    pub fn new() -> Self {
        PausePlan {
            first_pending: Arc::new(AtomicBool::new(true)),
        }
    }

    fn should_pause(&self) -> bool {
        self.first_pending.swap(false, Ordering::SeqCst) || thread_rng().gen_bool(PAUSE_PROBABILITY)
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: u64,
    node: NodeId,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
    resources: Resources,
    pauser: Pauser,
    plan: PausePlan,
) {
    let spec = &scenario.coord;
    let conn = connect(&scenario);
    let mut n = 0;
    while !control.stopped() {
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(10..100))).await;
        n += 1;
        let Some((lease, _, keep)) =
            grant_kept(&conn, &recorder, client, n, spec.lock_ttl_secs, &scenario).await
        else {
            continue;
        };
        let held = acquire(
            &conn,
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
            if plan.should_pause() {
                pauser.pause_me(node, client, spec.ttl_only_pause_ms).await;
            } else {
                let hold = thread_rng().gen_range(100..500);
                tokio::time::sleep(Duration::from_millis(hold)).await;
            }
            resources.write(LOCK_NAME, client, held.token, Section::Exit);
            release(&conn, &recorder, client, &held).await;
        }
        keep.stop();
        revoke(&conn, &recorder, client, lease).await;
    }
}
