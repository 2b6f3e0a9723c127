//! The receiving side: a gRPC service that steps peers' message streams into the node.
//!
//! One stream per sending peer. Each batch is validated (addressed to this node,
//! from the stream's sender, numbered in order, every message decodes and is
//! addressed here) before any of its messages reach the node; a batch that fails
//! validation ends the stream with a typed [`ReceiveError`]. A valid batch is handed
//! to the node in stream order; one the node cannot take (its inbox is full) is
//! rejected with a negative acknowledgement and the stream goes on.
//!
//! Streams end when the node closes the service (`closing` turns true): a graceful
//! server shutdown waits for every open stream, and peers never close theirs.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use protobuf::Message as _;
use raft::eraftpb::Message;
use thiserror::Error;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::raft_transport_server::RaftTransport;
use crate::proto::{RaftMessageAck, RaftMessageBatch};
use crate::raft::{RaftError, RaftHandle};
use crate::seams::transport::Transport;
use crate::sync::watch;

/// Why a receiver ended a peer's stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReceiveError {
    #[error("batch {seq} for node {to} reached node {at}")]
    WrongNode { seq: u64, to: u64, at: u64 },
    #[error("batch {seq} claims to come from node {from} on node {stream_from}'s stream")]
    WrongSender {
        seq: u64,
        from: u64,
        stream_from: u64,
    },
    #[error("batch {seq} from node {from} arrived after batch {last}")]
    OutOfOrder { seq: u64, last: u64, from: u64 },
    #[error("message {index} of batch {seq} from node {from} does not decode: {reason}")]
    Decode {
        seq: u64,
        index: usize,
        from: u64,
        reason: String,
    },
    #[error(
        "message {index} of batch {seq} from node {from} is addressed to node {to}, not node {at}"
    )]
    Misaddressed {
        seq: u64,
        index: usize,
        from: u64,
        to: u64,
        at: u64,
    },
    #[error("node {at} stopped: {reason}")]
    NodeStopped { at: u64, reason: String },
}

impl From<ReceiveError> for Status {
    fn from(e: ReceiveError) -> Self {
        match e {
            ReceiveError::NodeStopped { .. } => Status::unavailable(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}

/// One incoming stream's state: validates batches and hands them to the node.
pub struct StreamReceiver {
    id: u64,
    node: RaftHandle,
    /// To learn the address of a sender we do not know yet.
    transport: Arc<dyn Transport>,
    /// The sender, from the stream's first batch.
    from: Option<u64>,
    last_seq: u64,
}

impl StreamReceiver {
    pub fn new(id: u64, node: RaftHandle, transport: Arc<dyn Transport>) -> Self {
        StreamReceiver {
            id,
            node,
            transport,
            from: None,
            last_seq: 0,
        }
    }

    /// Takes one batch; answers with the acknowledgement to send, if any.
    pub fn receive_batch(
        &mut self,
        batch: RaftMessageBatch,
    ) -> Result<Option<RaftMessageAck>, ReceiveError> {
        let messages = self.validate(&batch)?;
        if self.from.is_none() {
            self.from = Some(batch.from);
            if !batch.from_addr.is_empty() {
                self.transport.learn_peer(batch.from, &batch.from_addr);
            }
        }
        self.last_seq = batch.seq;
        let rejected = match self.node.receive_raft_messages(messages) {
            Ok(()) => None,
            Err(RaftError::Stopped(reason)) => {
                return Err(ReceiveError::NodeStopped {
                    at: self.id,
                    reason,
                })
            }
            Err(e) => Some(e.to_string()),
        };
        Ok(match rejected {
            Some(reason) => Some(RaftMessageAck {
                seq: batch.seq,
                accepted: false,
                reason,
            }),
            None if batch.ack_requested => Some(RaftMessageAck {
                seq: batch.seq,
                accepted: true,
                reason: String::new(),
            }),
            None => None,
        })
    }

    fn validate(&self, batch: &RaftMessageBatch) -> Result<Vec<Message>, ReceiveError> {
        let seq = batch.seq;
        if batch.to != self.id {
            return Err(ReceiveError::WrongNode {
                seq,
                to: batch.to,
                at: self.id,
            });
        }
        if let Some(stream_from) = self.from.filter(|&f| f != batch.from) {
            return Err(ReceiveError::WrongSender {
                seq,
                from: batch.from,
                stream_from,
            });
        }
        if seq != self.last_seq + 1 {
            return Err(ReceiveError::OutOfOrder {
                seq,
                last: self.last_seq,
                from: batch.from,
            });
        }
        let mut messages = Vec::with_capacity(batch.messages.len());
        for (index, bytes) in batch.messages.iter().enumerate() {
            let message = Message::parse_from_bytes(bytes).map_err(|e| ReceiveError::Decode {
                seq,
                index,
                from: batch.from,
                reason: e.to_string(),
            })?;
            if message.to != self.id {
                return Err(ReceiveError::Misaddressed {
                    seq,
                    index,
                    from: batch.from,
                    to: message.to,
                    at: self.id,
                });
            }
            messages.push(message);
        }
        Ok(messages)
    }
}

/// Receives Raft message streams for node `id`.
pub struct RaftTransportService {
    id: u64,
    node: RaftHandle,
    transport: Arc<dyn Transport>,
    /// True (or the sender gone): end every stream, and refuse new ones.
    closing: watch::Receiver<bool>,
}

impl RaftTransportService {
    pub fn new(
        id: u64,
        node: RaftHandle,
        transport: Arc<dyn Transport>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        RaftTransportService {
            id,
            node,
            transport,
            closing,
        }
    }
}

pub(super) type AckStream = Pin<Box<dyn Stream<Item = Result<RaftMessageAck, Status>> + Send>>;

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    type StreamRaftMessagesStream = AckStream;

    /// Batches are read and handed to the node as the acknowledgement stream is
    /// polled: no task per stream.
    async fn stream_raft_messages(
        &self,
        request: Request<Streaming<RaftMessageBatch>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut closing = self.closing.clone();
        let closed = async move {
            let _ = closing.wait_for(|closing| *closing).await;
        };
        let inbound = request.into_inner().take_until(closed).boxed();
        let receiver = StreamReceiver::new(self.id, self.node.clone(), self.transport.clone());
        let acks = futures::stream::unfold(Some((inbound, receiver)), |state| async move {
            let (mut inbound, mut receiver) = state?;
            loop {
                let batch = match inbound.next().await {
                    Some(Ok(batch)) => batch,
                    // The sender closed the stream, it broke, or the node is
                    // closing: nothing to answer.
                    None | Some(Err(_)) => return None,
                };
                match receiver.receive_batch(batch) {
                    Ok(None) => continue,
                    Ok(Some(ack)) => return Some((Ok(ack), Some((inbound, receiver)))),
                    Err(e) => {
                        tracing::debug!(node = receiver.id, error = %e, "raft stream refused");
                        return Some((Err(Status::from(e)), None));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(acks)))
    }
}
