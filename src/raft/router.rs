//! The MessageRouter: everything that drives the Raft core enters through one inbox.
//!
//! Raft messages from peers, client proposals and reads, membership changes and
//! transport reports become [`Input`]s on one channel, consumed by the core's loop
//! in arrival order. [`RaftHandle`] is the typed front door that builds them.

use raft::eraftpb::Message;
use tokio::sync::{mpsc, oneshot};

use crate::sync::watch;

use super::error::RaftError;
use super::pending::{ProposalResult, ReadAnswer};
use super::status::{LeaderInfo, NodeStatus};

/// How many inputs may wait in the inbox.
pub const INBOX_CAPACITY: usize = 4096;

pub use super::membership::MembershipChange;

/// A membership change accepted into the leader's log: the node it concerns (the
/// id the leader chose, for [`MembershipChange::AddNew`]) and its proposal.
#[derive(Debug)]
pub struct MembershipTicket {
    pub node_id: u64,
    pub ticket: ProposalTicket,
}

/// A membership change that was applied: its log index and the node it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipApplied {
    pub index: u64,
    pub node_id: u64,
}

/// A proposal accepted into the leader's log at `index`; `applied` resolves with the
/// state machine's answer once that entry is applied.
#[derive(Debug)]
pub struct ProposalTicket {
    pub index: u64,
    pub applied: oneshot::Receiver<ProposalResult>,
}

impl ProposalTicket {
    /// Waits until the entry is applied.
    pub async fn wait(self) -> ProposalResult {
        applied_answer(self.applied).await
    }
}

/// The answer a proposal's waiter receives, or `Stopped` if the node dropped it.
async fn applied_answer(applied: oneshot::Receiver<ProposalResult>) -> ProposalResult {
    applied
        .await
        .unwrap_or_else(|_| Err(RaftError::Stopped("node stopped before applying".into())))
}

/// One input to the Raft core.
#[derive(Debug)]
pub enum Input {
    /// Raft messages received from a peer.
    RaftMessages(Vec<Message>),
    Propose {
        command: Vec<u8>,
        reply: oneshot::Sender<Result<ProposalTicket, RaftError>>,
    },
    /// A proposal a follower forwards through Raft; the receiver gets the answer.
    ProposeFromAnyMember {
        command: Vec<u8>,
        reply: oneshot::Sender<Result<oneshot::Receiver<ProposalResult>, RaftError>>,
    },
    Read {
        query: Vec<u8>,
        linearizable: bool,
        reply: oneshot::Sender<Result<ReadAnswer, RaftError>>,
    },
    ChangeMembership {
        change: MembershipChange,
        reply: oneshot::Sender<Result<MembershipTicket, RaftError>>,
    },
    TransferLeader {
        to: u64,
        reply: oneshot::Sender<Result<(), RaftError>>,
    },
    /// The transport could not reach `peer`.
    PeerUnreachable {
        peer: u64,
    },
    /// A snapshot message to `peer` was delivered (`ok`) or not.
    SnapshotSent {
        peer: u64,
        ok: bool,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
    /// Stop the loop after the current step.
    Shutdown,
}

/// The sending side of a node's inbox: the public API of a running Raft node.
#[derive(Clone, Debug)]
pub struct RaftHandle {
    inbox: mpsc::Sender<Input>,
    leader: watch::Receiver<LeaderInfo>,
}

fn stopped<T>(_: T) -> RaftError {
    RaftError::Stopped("raft loop is not running".into())
}

impl RaftHandle {
    pub fn new(inbox: mpsc::Sender<Input>, leader: watch::Receiver<LeaderInfo>) -> Self {
        RaftHandle { inbox, leader }
    }

    /// Who leads, as of this node's last role change.
    pub fn leader(&self) -> LeaderInfo {
        *self.leader.borrow()
    }

    /// Follows leadership changes.
    pub fn leader_watch(&self) -> watch::Receiver<LeaderInfo> {
        self.leader.clone()
    }

    async fn ask<T>(
        &self,
        build: impl FnOnce(oneshot::Sender<T>) -> Input,
    ) -> Result<T, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.inbox.send(build(tx)).await.map_err(stopped)?;
        rx.await.map_err(stopped)
    }

    /// Delivers Raft messages from a peer. Never blocks: under overload they are
    /// dropped (Raft tolerates that) and `Transport` says so, so that the sender
    /// does not count a dropped snapshot as delivered.
    pub fn receive_raft_messages(&self, messages: Vec<Message>) -> Result<(), RaftError> {
        match self.inbox.try_send(Input::RaftMessages(messages)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(RaftError::Transport(
                "the node's inbox is full; messages dropped".into(),
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(stopped(())),
        }
    }

    /// Reports a transport event without waiting.
    pub fn report(&self, input: Input) {
        let _ = self.inbox.try_send(input);
    }

    /// Appends `command` to the log; the ticket carries its index and its answer.
    pub async fn propose(&self, command: Vec<u8>) -> Result<ProposalTicket, RaftError> {
        self.ask(|reply| Input::Propose { command, reply }).await?
    }

    /// Proposes `command` and waits for the state machine's answer: (index, answer).
    pub async fn propose_and_wait(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), RaftError> {
        let ticket = self.propose(command).await?;
        let index = ticket.index;
        Ok((index, ticket.wait().await?))
    }

    /// Proposes `command` from this member, leader or follower (a follower's Raft
    /// forwards it to the leader), and waits for this member's apply of it.
    pub async fn propose_from_any_member(&self, command: Vec<u8>) -> ProposalResult {
        let applied = self
            .ask(|reply| Input::ProposeFromAnyMember { command, reply })
            .await??;
        applied_answer(applied).await
    }

    /// Answers `query`; linearizable reads go through ReadIndex first.
    pub async fn read(&self, query: Vec<u8>, linearizable: bool) -> Result<ReadAnswer, RaftError> {
        self.ask(|reply| Input::Read {
            query,
            linearizable,
            reply,
        })
        .await?
    }

    /// Proposes a membership change and waits until it is applied.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<MembershipApplied, RaftError> {
        let MembershipTicket { node_id, ticket } = self
            .ask(|reply| Input::ChangeMembership { change, reply })
            .await??;
        let index = ticket.index;
        ticket.wait().await?;
        Ok(MembershipApplied { index, node_id })
    }

    /// Asks the leader to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), RaftError> {
        self.ask(|reply| Input::TransferLeader { to, reply })
            .await?
    }

    pub async fn status(&self) -> Result<NodeStatus, RaftError> {
        self.ask(|reply| Input::Status { reply }).await
    }

    /// Asks the loop to stop.
    pub async fn shutdown(&self) {
        let _ = self.inbox.send(Input::Shutdown).await;
    }
}
