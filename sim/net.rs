//! The transport's fault hooks: drop, duplicate and delay (reorder) Raft messages.
//!
//! madsim's own packet loss turns into retries and delay on a stream, never a lost
//! or duplicated message, so message-level faults are injected here, between the
//! Raft core and the real gRPC transport. Partitions and latency are madsim's
//! (`NetSim::clog_link`, send latency), set by the fault driver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordlab::seams::transport::Transport;
use madsim::rand::{thread_rng, Rng};
use raft::eraftpb::Message;

/// Message fault rates, shared by every node's transport and set by the driver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkFaults {
    pub drop: f64,
    pub duplicate: f64,
    /// Probability a message is held back (and so reordered).
    pub delay: f64,
    pub max_delay_ms: u64,
}

pub type SharedLinkFaults = Arc<Mutex<LinkFaults>>;

/// A Transport that applies [`LinkFaults`] before handing messages on.
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    faults: SharedLinkFaults,
}

impl FaultyTransport {
    pub fn new(inner: Arc<dyn Transport>, faults: SharedLinkFaults) -> Self {
        FaultyTransport { inner, faults }
    }
}

impl Transport for FaultyTransport {
    fn send_raft_messages(&self, messages: Vec<Message>) {
        let faults = self
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if faults == LinkFaults::default() {
            self.inner.send_raft_messages(messages);
            return;
        }
        let mut rng = thread_rng();
        let mut now = Vec::with_capacity(messages.len());
        for message in messages {
            if rng.gen_bool(faults.drop.clamp(0.0, 1.0)) {
                continue;
            }
            let copies = if rng.gen_bool(faults.duplicate.clamp(0.0, 1.0)) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                if faults.max_delay_ms > 0 && rng.gen_bool(faults.delay.clamp(0.0, 1.0)) {
                    let delay = Duration::from_millis(rng.gen_range(1..=faults.max_delay_ms));
                    let inner = self.inner.clone();
                    let message = message.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        inner.send_raft_messages(vec![message]);
                    });
                } else {
                    now.push(message.clone());
                }
            }
        }
        if !now.is_empty() {
            self.inner.send_raft_messages(now);
        }
    }

    fn set_peer(&self, id: u64, addr: &str) {
        self.inner.set_peer(id, addr);
    }

    fn learn_peer(&self, id: u64, addr: &str) {
        self.inner.learn_peer(id, addr);
    }

    fn remove_peer(&self, id: u64) {
        self.inner.remove_peer(id);
    }
}
