//! One sender task per peer: batching, one long-lived stream, reconnect with backoff.
//!
//! Each peer has its own bounded queue and task, so a slow or dead peer only fills
//! its own queue (then its messages are dropped; Raft retransmits) and never delays
//! sends to the others. The task keeps one stream open to its peer and writes
//! batches into it without waiting for answers, up to a window of unsettled batches
//! ([`StreamWindow`]). It reconnects, after a backoff, when the stream breaks, when
//! the receiver refuses it, or when a requested acknowledgement does not come within
//! a liveness tick on the node's clock (a partition can leave a stream open but
//! silent). When the peer is removed or replaced (its queue closes) the task ends
//! its stream and gives the receiver up to a tick to take what was written.
//!
//! Reports to the node: `PeerUnreachable` whenever delivery fails (a stream that
//! could not be opened or failed, a batch the receiver rejected), and `SnapshotSent`
//! once for every snapshot message: `ok` only when the receiver acknowledged the
//! batch that carried it as accepted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{unbounded, UnboundedSender};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use super::window::{StreamWindow, Tick};
use crate::proto::raft_transport_client::RaftTransportClient;
use crate::proto::{RaftMessageAck, RaftMessageBatch};
use crate::raft::{Input, RaftHandle};
use crate::seams::clock::{Clock, Sleep};

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_CAPACITY: usize = 4096;
/// Messages per batch.
const MAX_BATCH: usize = 256;
/// Largest gRPC message (snapshots travel in one).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 256 << 20;

/// The sender's deadlines and limits.
#[derive(Debug, Clone)]
pub struct StreamTiming {
    /// Connecting and opening a stream.
    pub open_deadline: Duration,
    /// The liveness tick: a requested acknowledgement must come within one to two
    /// ticks.
    pub ack_tick: Duration,
    /// Ticks a request covering a snapshot may wait.
    pub snapshot_ack_ticks: u32,
    /// Batches written and not yet settled.
    pub window: u64,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for StreamTiming {
    fn default() -> Self {
        StreamTiming {
            open_deadline: Duration::from_secs(1),
            ack_tick: Duration::from_secs(1),
            snapshot_ack_ticks: 5,
            window: 64,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Where a peer sender reports, and what it knows about itself.
pub struct PeerLink {
    pub from: u64,
    /// Where `from` serves, sent at the start of each stream so the peer can answer
    /// a node it does not know yet.
    pub from_addr: String,
    pub to: u64,
    pub addr: String,
    pub node: RaftHandle,
    pub clock: Arc<dyn Clock>,
    pub timing: StreamTiming,
}

/// How a stream ended.
enum Ended {
    /// The peer was removed or replaced: the task is done.
    QueueClosed,
    /// Delivery failed; `alive` if the stream was acknowledged before failing.
    Failed { reason: String, alive: bool },
}

/// Runs until the queue's sender is dropped (the peer was removed or replaced).
pub async fn run_peer_sender(link: PeerLink, mut queue: mpsc::Receiver<Message>) {
    let mut backoff = link.timing.backoff_min;
    // Connect only when there is something to send.
    while let Some(first) = queue.recv().await {
        let batch = take_batch(first, &mut queue);
        let (reason, alive) = match run_stream(&link, &mut queue, batch).await {
            Ended::QueueClosed => return,
            Ended::Failed { reason, alive } => (reason, alive),
        };
        tracing::debug!(from = link.from, to = link.to, addr = %link.addr, error = %reason, "raft stream failed");
        if alive {
            backoff = link.timing.backoff_min;
        }
        link.clock.sleep(backoff).await;
        backoff = (backoff * 2).min(link.timing.backoff_max);
    }
}

/// Opens a stream, writes `first` and then whatever the queue holds, until the
/// stream fails or the queue closes. Every failure is reported before returning.
async fn run_stream(
    link: &PeerLink,
    queue: &mut mpsc::Receiver<Message>,
    first: Vec<Message>,
) -> Ended {
    let (batches, outbound) = unbounded::<RaftMessageBatch>();
    let mut stream = OpenStream {
        link,
        batches,
        window: StreamWindow::new(link.timing.window, link.timing.snapshot_ack_ticks),
    };
    // Written before the stream opens: it leaves as soon as the stream is up.
    let written = stream.write(first);
    debug_assert!(written, "the stream's writer is still here");
    match open(link, outbound).await {
        // The client is kept with the stream: it owns the connection.
        Ok((_client, acks)) => stream.pump(queue, acks).await,
        Err(reason) => stream.fail(reason),
    }
}

/// A stream being written.
struct OpenStream<'a> {
    link: &'a PeerLink,
    batches: UnboundedSender<RaftMessageBatch>,
    window: StreamWindow,
}

impl OpenStream<'_> {
    /// Settles acknowledgements, ticks and writes batches until the stream fails or
    /// the queue closes.
    async fn pump(
        mut self,
        queue: &mut mpsc::Receiver<Message>,
        mut acks: Streaming<RaftMessageAck>,
    ) -> Ended {
        let link = self.link;
        let clock = &link.clock;
        let mut tick: Option<Sleep> = Some(clock.sleep(link.timing.ack_tick));
        loop {
            tokio::select! {
                biased;
                ack = acks.message() => {
                    let failure = match ack {
                        Ok(Some(ack)) => self.settle(ack).err(),
                        Ok(None) => Some("receiver closed the stream".to_string()),
                        Err(status) => Some(format!("receiver ended the stream: {status}")),
                    };
                    if let Some(reason) = failure {
                        return self.fail(reason);
                    }
                }
                () = wait(&mut tick), if tick.is_some() => {
                    match self.window.tick() {
                        Tick::Continue => tick = Some(clock.sleep(link.timing.ack_tick)),
                        Tick::Idle => tick = None,
                        Tick::Dead => {
                            let reason = format!(
                                "no acknowledgement within {} ms",
                                link.timing.ack_tick.as_millis()
                            );
                            return self.fail(reason);
                        }
                    }
                }
                message = queue.recv(), if self.window.has_room() => {
                    let Some(message) = message else {
                        return self.close(acks).await;
                    };
                    let batch = take_batch(message, queue);
                    if !self.write(batch) {
                        return self.fail("the stream's writer closed".to_string());
                    }
                    if tick.is_none() {
                        tick = Some(clock.sleep(link.timing.ack_tick));
                    }
                }
            }
        }
    }

    /// Writes a batch into the stream; false if the stream no longer takes any.
    fn write(&mut self, messages: Vec<Message>) -> bool {
        let snapshots = messages
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .count();
        let (seq, ack_requested) = self.window.write_batch(snapshots);
        let batch = RaftMessageBatch {
            from: self.link.from,
            to: self.link.to,
            from_addr: if seq == 1 {
                self.link.from_addr.clone()
            } else {
                String::new()
            },
            seq,
            ack_requested,
            messages: messages
                .iter()
                .map(|m| m.write_to_bytes().expect("encode raft message"))
                .collect(),
        };
        self.batches.unbounded_send(batch).is_ok()
    }

    /// Takes an acknowledgement; an impossible one fails the stream.
    fn settle(&mut self, ack: RaftMessageAck) -> Result<(), String> {
        let settled = self
            .window
            .receive_ack(ack.seq, ack.accepted)
            .map_err(|e| e.to_string())?;
        let node = &self.link.node;
        let peer = self.link.to;
        if settled.rejected {
            tracing::debug!(from = self.link.from, to = peer, batch = ack.seq, reason = %ack.reason, "raft batch rejected");
            node.report(Input::PeerUnreachable { peer });
        }
        for _ in 0..settled.snapshots_accepted {
            node.report(Input::SnapshotSent { peer, ok: true });
        }
        for _ in 0..settled.snapshots_rejected {
            node.report(Input::SnapshotSent { peer, ok: false });
        }
        Ok(())
    }

    /// The peer was removed or replaced: ends the stream after what was written and
    /// waits, at most one liveness tick, for the receiver to take it. Dropping the
    /// stream at once would lose the last batches, and a removed node learns of its
    /// removal only from them (the leader sends it nothing after applying it).
    async fn close(mut self, mut acks: Streaming<RaftMessageAck>) -> Ended {
        // The receiver takes every batch written, then ends its answers.
        self.batches.close_channel();
        let link = self.link;
        let drained = with_deadline(&link.clock, link.timing.ack_tick, async {
            while let Ok(Some(ack)) = acks.message().await {
                if self.settle(ack).is_err() {
                    break;
                }
            }
        })
        .await;
        if let Err(reason) = drained {
            tracing::debug!(from = link.from, to = link.to, error = %reason, "raft stream closed before the receiver took every batch");
        }
        self.report_unsettled_snapshots();
        Ended::QueueClosed
    }

    /// Reports the failure: the peer is unreachable and every unsettled snapshot
    /// was not sent.
    fn fail(self, reason: String) -> Ended {
        self.link
            .node
            .report(Input::PeerUnreachable { peer: self.link.to });
        self.report_unsettled_snapshots();
        Ended::Failed {
            reason,
            alive: self.window.any_acked(),
        }
    }

    /// The stream is given up: snapshots it did not settle count as not sent (Raft
    /// sends another if it still needs one).
    fn report_unsettled_snapshots(&self) {
        let peer = self.link.to;
        for _ in 0..self.window.unsettled_snapshots() {
            self.link
                .node
                .report(Input::SnapshotSent { peer, ok: false });
        }
    }
}

type Client = RaftTransportClient<Channel>;

/// Connects and opens the stream whose requests are `outbound`.
async fn open(
    link: &PeerLink,
    outbound: impl futures::Stream<Item = RaftMessageBatch> + Send + 'static,
) -> Result<(Client, Streaming<RaftMessageAck>), String> {
    let endpoint =
        Endpoint::from_shared(format!("http://{}", link.addr)).map_err(|e| e.to_string())?;
    let opening = async {
        let channel: Channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let acks = client
            .stream_raft_messages(outbound)
            .await
            .map_err(|status| status.to_string())?
            .into_inner();
        Ok((client, acks))
    };
    with_deadline(&link.clock, link.timing.open_deadline, opening).await?
}

/// `first` and whatever else the queue holds now, up to a batch.
fn take_batch(first: Message, queue: &mut mpsc::Receiver<Message>) -> Vec<Message> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(m) => batch.push(m),
            Err(_) => break,
        }
    }
    batch
}

/// Waits for the armed tick (the branch is disabled while there is none).
async fn wait(tick: &mut Option<Sleep>) {
    match tick {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

/// Runs `fut` with a deadline on the node's clock: a partition can swallow a
/// response on a connection that stays open.
async fn with_deadline<F: Future>(
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
