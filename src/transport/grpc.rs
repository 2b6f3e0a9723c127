//! [`GrpcTransport`]: the real Transport, one sender task (and stream) per peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::peer::{run_peer_sender, PeerLink, StreamTiming, PEER_QUEUE_CAPACITY};
use crate::raft::{Input, RaftHandle};
use crate::seams::clock::Clock;
use crate::seams::transport::Transport;

struct Peer {
    addr: String,
    queue: mpsc::Sender<Message>,
}

/// Sends Raft messages over gRPC.
pub struct GrpcTransport {
    id: u64,
    addr: String,
    node: RaftHandle,
    clock: Arc<dyn Clock>,
    peers: Mutex<BTreeMap<u64, Peer>>,
}

impl GrpcTransport {
    /// A transport for node `id` serving at `addr`, reporting delivery failures to
    /// `node`.
    pub fn new(id: u64, addr: String, node: RaftHandle, clock: Arc<dyn Clock>) -> Self {
        GrpcTransport {
            id,
            addr,
            node,
            clock,
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    fn start_peer(&self, to: u64, addr: &str) -> Peer {
        let (queue, rx) = mpsc::channel(PEER_QUEUE_CAPACITY);
        let link = PeerLink {
            from: self.id,
            from_addr: self.addr.clone(),
            to,
            addr: addr.to_string(),
            node: self.node.clone(),
            clock: self.clock.clone(),
            timing: StreamTiming::default(),
        };
        tokio::spawn(run_peer_sender(link, rx));
        Peer {
            addr: addr.to_string(),
            queue,
        }
    }
}

impl Transport for GrpcTransport {
    fn send_raft_messages(&self, messages: Vec<Message>) {
        let peers = self.peers.lock().expect("peers lock");
        for message in messages {
            let to = message.to;
            let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
            let queued = peers
                .get(&to)
                .is_some_and(|peer| peer.queue.try_send(message).is_ok());
            if !queued {
                self.node.report(Input::PeerUnreachable { peer: to });
                if is_snapshot {
                    self.node.report(Input::SnapshotSent {
                        peer: to,
                        ok: false,
                    });
                }
            }
        }
    }

    fn set_peer(&self, id: u64, addr: &str) {
        let mut peers = self.peers.lock().expect("peers lock");
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        let peer = self.start_peer(id, addr);
        // Replacing the old entry drops its queue, which ends its task.
        peers.insert(id, peer);
    }

    fn learn_peer(&self, id: u64, addr: &str) {
        let mut peers = self.peers.lock().expect("peers lock");
        if id != self.id && !peers.contains_key(&id) {
            tracing::info!(node = self.id, peer = id, %addr, "learned a peer's address from its messages");
            let peer = self.start_peer(id, addr);
            peers.insert(id, peer);
        }
    }

    fn remove_peer(&self, id: u64) {
        self.peers.lock().expect("peers lock").remove(&id);
    }
}
