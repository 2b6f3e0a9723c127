//! Proposing coordination commands from any member. The local Raft node takes the
//! proposal when it leads; on a follower, Raft forwards it to the leader (MsgProp),
//! so any endpoint serves any write. Lease keep-alives and TTL reads, which only the
//! leader can answer, go to the leader over gRPC (`CoordForward`), and so do
//! membership changes (`super::membership`); the leader's side of these calls is
//! `super::service::forward`, which still serves `CoordForward.Propose` for members
//! of an earlier version during a rolling upgrade.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use super::errors::CoordError;
use super::state::answer_result;
use crate::proto::coord_answer::Answer;
use crate::proto::{command, Command, CoordCommand};
use crate::raft::RaftHandle;
use crate::seams::clock::Clock;

/// How long one request may take before the client hears "request timed out".
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `fut` with a deadline on the member's clock.
pub async fn with_deadline<T>(
    clock: &dyn Clock,
    timeout: Duration,
    fut: impl Future<Output = Result<T, CoordError>>,
) -> Result<T, CoordError> {
    tokio::select! {
        biased;
        r = fut => r,
        _ = clock.sleep(timeout) => Err(CoordError::Timeout),
    }
}

/// Where the leader is, as far as this member knows.
pub enum LeaderRoute {
    Local,
    Remote(String),
}

pub struct Proposer {
    handle: RaftHandle,
    clock: Arc<dyn Clock>,
    channels: Mutex<BTreeMap<String, Channel>>,
}

impl Proposer {
    pub fn new(handle: RaftHandle, clock: Arc<dyn Clock>) -> Self {
        Proposer {
            handle,
            clock,
            channels: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn handle(&self) -> &RaftHandle {
        &self.handle
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn shared_clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// A channel to a member's gRPC address (cached).
    pub fn channel(&self, addr: &str) -> Result<Channel, CoordError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| CoordError::Other {
                code: tonic::Code::Internal as i32,
                message: format!("etcdserver: leader address {addr}: {e}"),
            })?
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Proposes `cmd` and waits for the state machine's answer. On a follower, Raft
    /// forwards the proposal to the leader and the answer is this member's own
    /// apply of it (one gRPC call per forwarded write cost the leader and the
    /// follower a third of their CPU per put).
    pub async fn propose(&self, cmd: CoordCommand) -> Result<Answer, CoordError> {
        let bytes = Command {
            op: Some(command::Op::Coord(cmd)),
        }
        .encode_to_vec();
        with_deadline(self.clock(), REQUEST_TIMEOUT, async {
            let answer = self.handle.propose_from_any_member(bytes).await?;
            answer_result(&answer)
        })
        .await
    }

    /// Where the leader is; `NoLeader` while there is none.
    pub async fn leader_route(&self) -> Result<LeaderRoute, CoordError> {
        let status = self.handle.status().await.map_err(CoordError::from)?;
        if status.leader_id == 0 {
            return Err(CoordError::NoLeader);
        }
        if status.leader_id == status.id {
            return Ok(LeaderRoute::Local);
        }
        match status.members.get(&status.leader_id) {
            Some(addr) => Ok(LeaderRoute::Remote(addr.clone())),
            None => Err(CoordError::NoLeader),
        }
    }

    /// Confirms this member still leads (a ReadIndex round with a quorum).
    pub async fn confirm_leadership(&self) -> Result<(), CoordError> {
        self.handle
            .read(Vec::new(), true)
            .await
            .map(|_| ())
            .map_err(CoordError::from)
    }
}

/// An error a peer member answered, as the error it stands for.
pub fn error_from_status(s: &Status) -> CoordError {
    CoordError::from_proto(&crate::proto::CoordError {
        code: s.code() as i32,
        message: s.message().to_string(),
        compact_revision: 0,
    })
}
