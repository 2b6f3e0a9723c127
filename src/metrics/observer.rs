//! [`MetricsObserver`]: the Observer a node with `--metrics-listen` reports to.
//! Each event costs an atomic add or two; the durations are timed between an
//! event's `…Started` mark and the event itself.

use std::sync::{Arc, Mutex};

use raft::StateRole;
use tokio::time::Instant;

use super::raft::RaftSeries;
use super::NodeMetrics;
use crate::seams::observer::{Event, Observer};

/// Feeds one node's events into its [`NodeMetrics`]. One observer per node: the
/// node id of events is not a label.
pub struct MetricsObserver {
    metrics: Arc<NodeMetrics>,
    /// When the batch being persisted, and the entry being applied, began.
    persist_began: Mutex<Option<Instant>>,
    apply_began: Mutex<Option<Instant>>,
    /// The leader this node last knew (0: none), to count changes as etcd does.
    last_leader: Mutex<u64>,
}

impl MetricsObserver {
    pub fn new(metrics: Arc<NodeMetrics>) -> Self {
        MetricsObserver {
            metrics,
            persist_began: Mutex::new(None),
            apply_began: Mutex::new(None),
            last_leader: Mutex::new(0),
        }
    }

    fn raft(&self) -> &RaftSeries {
        &self.metrics.raft
    }

    /// etcd's rule: a change to a known leader other than the last one counts.
    fn role_changed(&self, role: StateRole, leader_id: u64) {
        let raft = self.raft();
        raft.has_leader.set(i64::from(leader_id != 0));
        raft.is_leader.set(i64::from(role == StateRole::Leader));
        let mut last = lock(&self.last_leader);
        if leader_id != 0 && leader_id != *last {
            raft.leader_changes.inc();
        }
        *last = leader_id;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds since the mark in `began`, taking the mark.
fn seconds_since(began: &Mutex<Option<Instant>>) -> Option<f64> {
    lock(began).take().map(|at| at.elapsed().as_secs_f64())
}

impl Observer for MetricsObserver {
    fn observe(&self, _node_id: u64, event: &Event<'_>) {
        let raft = self.raft();
        match event {
            Event::RoleChanged {
                role, leader_id, ..
            } => self.role_changed(*role, *leader_id),
            Event::Sent { message } => {
                if let Some(c) = RaftSeries::of(&raft.sent, message.get_msg_type()) {
                    c.inc();
                }
            }
            Event::Received { message } => {
                if let Some(c) = RaftSeries::of(&raft.received, message.get_msg_type()) {
                    c.inc();
                }
            }
            Event::PersistStarted => *lock(&self.persist_began) = Some(Instant::now()),
            Event::Persisted { synced, .. } => {
                if let Some(seconds) = seconds_since(&self.persist_began) {
                    raft.persist_seconds.observe(seconds);
                    if *synced {
                        raft.wal_fsync_seconds.observe(seconds);
                    }
                }
            }
            Event::ApplyStarted { .. } => *lock(&self.apply_began) = Some(Instant::now()),
            Event::Applied { .. } => {
                if let Some(seconds) = seconds_since(&self.apply_began) {
                    raft.apply_seconds.observe(seconds);
                }
            }
            _ => {}
        }
    }
}
