//! One sender task per peer: batching, reconnect with backoff, bounded queue.
//!
//! Each peer has its own queue and task, so a slow or dead peer only fills its own
//! queue (then its messages are dropped) and never delays sends to the others.

use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::proto::raft_transport_client::RaftTransportClient;
use crate::proto::RaftMessageBatch;
use crate::raft::{Input, RaftHandle};
use crate::seams::clock::Clock;

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_CAPACITY: usize = 4096;
/// Messages per RPC.
const MAX_BATCH: usize = 256;
const RPC_DEADLINE: Duration = Duration::from_secs(3);
const CONNECT_DEADLINE: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Largest gRPC message (snapshots travel in one).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 256 << 20;

/// Where a peer sender reports, and what it knows about itself.
pub struct PeerLink {
    pub from: u64,
    /// Where `from` serves, sent along so the peer can answer a node it does not
    /// know yet.
    pub from_addr: String,
    pub to: u64,
    pub addr: String,
    pub node: RaftHandle,
    pub clock: Arc<dyn Clock>,
}

/// Runs until the queue's sender is dropped (the peer was removed or replaced).
pub async fn run_peer_sender(link: PeerLink, mut queue: mpsc::Receiver<Message>) {
    let mut client: Option<RaftTransportClient<Channel>> = None;
    let mut backoff = BACKOFF_MIN;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let delivered = match send_batch(&link, &mut client, &batch).await {
            Ok(()) => {
                backoff = BACKOFF_MIN;
                true
            }
            Err(e) => {
                tracing::debug!(from = link.from, to = link.to, addr = %link.addr, error = %e, "raft send failed");
                client = None;
                false
            }
        };
        report_outcome(&link, &batch, delivered);
        if !delivered {
            link.clock.sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

async fn send_batch(
    link: &PeerLink,
    client: &mut Option<RaftTransportClient<Channel>>,
    batch: &[Message],
) -> Result<(), String> {
    if client.is_none() {
        let endpoint = Endpoint::from_shared(format!("http://{}", link.addr))
            .map_err(|e| e.to_string())?
            .connect_timeout(CONNECT_DEADLINE)
            .timeout(RPC_DEADLINE);
        let channel = with_deadline(&link.clock, CONNECT_DEADLINE, endpoint.connect())
            .await?
            .map_err(|e| e.to_string())?;
        *client = Some(
            RaftTransportClient::new(channel)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        );
    }
    let request = RaftMessageBatch {
        from: link.from,
        from_addr: link.from_addr.clone(),
        to: link.to,
        messages: batch
            .iter()
            .map(|m| m.write_to_bytes().expect("encode raft message"))
            .collect(),
    };
    let call = client
        .as_mut()
        .expect("connected")
        .send_raft_messages(request);
    with_deadline(&link.clock, RPC_DEADLINE, call)
        .await?
        .map(|_| ())
        .map_err(|status| status.to_string())
}

/// Runs `fut` with a deadline on the node's clock: a partition can swallow a
/// response on a connection that stays open.
pub async fn with_deadline<F: std::future::Future>(
    clock: &Arc<dyn Clock>,
    deadline: Duration,
    fut: F,
) -> Result<F::Output, String> {
    tokio::select! {
        biased;
        out = fut => Ok(out),
        _ = clock.sleep(deadline) => Err(format!("deadline of {} ms passed", deadline.as_millis())),
    }
}

fn report_outcome(link: &PeerLink, batch: &[Message], delivered: bool) {
    if !delivered {
        link.node.report(Input::PeerUnreachable { peer: link.to });
    }
    for m in batch {
        if m.get_msg_type() == MessageType::MsgSnapshot {
            link.node.report(Input::SnapshotSent {
                peer: link.to,
                ok: delivered,
            });
        }
    }
}
