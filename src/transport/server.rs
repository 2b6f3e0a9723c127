//! The receiving side: a gRPC service that steps peers' messages into the node.

use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status};

use super::Transport;
use crate::proto::raft_transport_server::RaftTransport;
use crate::proto::{RaftMessageAck, RaftMessageBatch};
use crate::raft::RaftHandle;

/// Receives Raft message batches for node `id`.
pub struct RaftTransportService {
    id: u64,
    node: RaftHandle,
    /// To learn the address of a sender we do not know yet.
    transport: Arc<dyn Transport>,
}

impl RaftTransportService {
    pub fn new(id: u64, node: RaftHandle, transport: Arc<dyn Transport>) -> Self {
        RaftTransportService {
            id,
            node,
            transport,
        }
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn send_raft_messages(
        &self,
        request: Request<RaftMessageBatch>,
    ) -> Result<Response<RaftMessageAck>, Status> {
        let batch = request.into_inner();
        if batch.to != self.id {
            return Err(Status::invalid_argument(format!(
                "batch for node {} reached node {}",
                batch.to, self.id
            )));
        }
        let mut messages = Vec::with_capacity(batch.messages.len());
        for (i, bytes) in batch.messages.iter().enumerate() {
            let message = Message::parse_from_bytes(bytes).map_err(|e| {
                Status::invalid_argument(format!("message {i} from node {}: {e}", batch.from))
            })?;
            if message.to != self.id {
                return Err(Status::invalid_argument(format!(
                    "message {i} is addressed to node {}",
                    message.to
                )));
            }
            messages.push(message);
        }
        if !batch.from_addr.is_empty() {
            self.transport.learn_peer(batch.from, &batch.from_addr);
        }
        self.node
            .receive_raft_messages(messages)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(RaftMessageAck {}))
    }
}
