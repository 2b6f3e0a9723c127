//! The transport's fault hooks: drop, duplicate and delay (reorder) Raft messages.
//!
//! madsim's own packet loss turns into retries and delay on a stream, never a lost
//! or duplicated message, so message-level faults are injected here, between the
//! Raft core and the real gRPC transport. Partitions and latency are madsim's
//! (`NetSim::clog_link`, send latency), set by the fault driver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordlab::raft::{Input, RaftHandle};
use coordlab::seams::transport::Transport;
use madsim::rand::{thread_rng, Rng};
use raft::eraftpb::{Message, MessageType};

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
    /// The sending node, told of every snapshot dropped here.
    node: RaftHandle,
    faults: SharedLinkFaults,
}

impl FaultyTransport {
    pub fn new(inner: Arc<dyn Transport>, node: RaftHandle, faults: SharedLinkFaults) -> Self {
        FaultyTransport {
            inner,
            node,
            faults,
        }
    }

    /// A dropped snapshot is reported as not sent, as the real transport reports a
    /// snapshot its stream did not deliver: told nothing, raft-rs would keep the
    /// peer waiting for it forever and never send another.
    fn drop_message(&self, message: &Message) {
        if message.get_msg_type() == MessageType::MsgSnapshot {
            self.node.report(Input::SnapshotSent {
                peer: message.to,
                ok: false,
            });
        }
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
                self.drop_message(&message);
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

#[cfg(test)]
mod tests {
    use super::*;
    use coordlab::raft::LeaderInfo;
    use coordlab::sync::watch;
    use tokio::sync::mpsc;

    /// Records what reaches the real transport.
    #[derive(Default)]
    struct Delivered(Mutex<Vec<(u64, MessageType)>>);

    impl Transport for Delivered {
        fn send_raft_messages(&self, messages: Vec<Message>) {
            let mut delivered = self.0.lock().unwrap();
            delivered.extend(messages.iter().map(|m| (m.to, m.get_msg_type())));
        }
        fn set_peer(&self, _: u64, _: &str) {}
        fn learn_peer(&self, _: u64, _: &str) {}
        fn remove_peer(&self, _: u64) {}
    }

    fn message(to: u64, kind: MessageType) -> Message {
        let mut m = Message {
            to,
            ..Default::default()
        };
        m.set_msg_type(kind);
        m
    }

    /// What the node was told, and what reached the transport, when `drop` of the
    /// messages are dropped.
    fn send_with_drop(drop: f64) -> (Vec<Input>, Vec<(u64, MessageType)>) {
        let (inbox, mut told) = mpsc::channel(16);
        let (_leader, leader_rx) = watch::channel(LeaderInfo::default());
        let delivered = Arc::new(Delivered::default());
        let faults = Arc::new(Mutex::new(LinkFaults {
            drop,
            ..LinkFaults::default()
        }));
        let transport =
            FaultyTransport::new(delivered.clone(), RaftHandle::new(inbox, leader_rx), faults);
        transport.send_raft_messages(vec![
            message(2, MessageType::MsgSnapshot),
            message(3, MessageType::MsgAppend),
        ]);
        let mut inputs = Vec::new();
        while let Ok(input) = told.try_recv() {
            inputs.push(input);
        }
        let delivered = delivered.0.lock().unwrap().clone();
        (inputs, delivered)
    }

    #[test]
    fn a_dropped_snapshot_is_reported_as_not_sent() {
        let (told, delivered) = send_with_drop(1.0);
        assert!(delivered.is_empty(), "{delivered:?}");
        assert_eq!(told.len(), 1, "one report, for the snapshot only");
        assert!(
            matches!(told[0], Input::SnapshotSent { peer: 2, ok: false }),
            "told the node the snapshot to 2 was not sent"
        );
    }

    #[test]
    fn delivered_messages_report_nothing() {
        let (told, delivered) = send_with_drop(0.0);
        assert!(told.is_empty());
        assert_eq!(
            delivered,
            vec![(2, MessageType::MsgSnapshot), (3, MessageType::MsgAppend)]
        );
    }
}
