//! RaftCore: owns raft-rs's `RawNode` and decides what each input does to it.
//!
//! The core performs no waiting: it steps inputs into the `RawNode`, and
//! [`output`](super::output) turns the resulting Ready into persistence, sends and
//! applies in the documented order. The async loop around it is [`super::node`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeV2, ConfState, HardState, Message, MessageType, Snapshot,
    SnapshotMetadata,
};
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;

use super::config::RaftConfig;
use super::error::RaftError;
use super::membership::{plan_membership_change, MembershipView};
use super::pending::{
    PendingProposals, PendingRead, PendingReads, ProposalResult, ReadAnswer, RequestId, RequestIds,
};
use super::router::{Input, MembershipChange, MembershipTicket, ProposalTicket};
use super::seen_proposals::SeenProposals;
use super::snapshot_writer::SnapshotWriter;
use super::state_machine::StateMachine;
use super::status::NodeStatus;
use super::storage::{DurableStorage, StorageEngine};
use crate::proto;
use crate::seams::clock::Clock;
use crate::seams::disk::Disk;
use crate::seams::observer::{Event, Observer};
use crate::seams::transport::Transport;

/// How a node with an empty disk starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Found a new cluster whose initial voters are these ids.
    NewCluster { voters: Vec<u64> },
    /// Join a running cluster: start empty and wait for the leader's snapshot.
    Join,
}

/// What a node is wired to: its disk, clock, observer and transport.
#[derive(Clone)]
pub struct NodeEnv {
    pub disk: Arc<dyn Disk>,
    pub clock: Arc<dyn Clock>,
    pub observer: Arc<dyn Observer>,
    pub transport: Arc<dyn Transport>,
}

/// The Raft core of one node.
pub struct RaftCore<S: StateMachine> {
    pub(super) id: u64,
    pub(super) config: RaftConfig,
    pub(super) raw: RawNode<DurableStorage>,
    pub(super) state_machine: S,
    /// Members of the applied configuration and their addresses.
    pub(super) members: BTreeMap<u64, String>,
    /// The highest node id the founding configuration or any applied membership
    /// change ever used, removed members included; a new member gets the next one.
    /// Raft's ConfState forgets a removed id, but Raft must never see it again (a
    /// removed node that comes back would count votes it no longer has), so the
    /// id lives here: derived from the applied log, carried in the node snapshot
    /// (`NodeSnapshot.highest_member_id`), hence the same on every member at the
    /// same applied index and across restarts.
    pub(super) highest_member_id: u64,
    pub(super) env: NodeEnv,
    pub(super) ids: RequestIds,
    pub(super) proposals: PendingProposals,
    /// Ids of the proposals that entered this node's log (see `SeenProposals`).
    pub(super) seen_proposals: SeenProposals,
    pub(super) reads: PendingReads,
    /// Index of the last entry applied to `state_machine`.
    pub(super) applied: u64,
    /// (role, term, leader) last reported to the observer.
    pub(super) last_role: (StateRole, u64, u64),
    /// Set when the node must stop: removed from the cluster or failed to persist.
    pub(super) stop_reason: Option<String>,
    /// A removed leader's remaining ticks before it stops (see `leave_cluster`).
    pub(super) removed_ticks_left: Option<usize>,
    /// Followers we sent a snapshot to, and when (node clock, ms).
    pub(super) snapshots_in_flight: BTreeMap<u64, u64>,
    /// The snapshot this node took, while its file is written off the loop.
    pub(super) snapshot_writer: SnapshotWriter,
    /// Where leadership changes are published (set by the driver).
    pub(super) leader_tx: Option<crate::sync::watch::Sender<super::status::LeaderInfo>>,
}

impl<S: StateMachine> RaftCore<S> {
    /// Recovers (or bootstraps) the node's state from its disk and builds the core.
    pub fn open(
        config: RaftConfig,
        env: NodeEnv,
        mut state_machine: S,
        bootstrap: Bootstrap,
        initial_members: BTreeMap<u64, String>,
    ) -> Result<Self, RaftError> {
        let id = config.id;
        let mut engine = StorageEngine::open_with(env.disk.clone(), config.snapshots)?;
        if engine.is_new() {
            let (snapshot, hard_state) =
                initial_state(&bootstrap, &state_machine, &initial_members);
            engine.bootstrap(&snapshot, &hard_state)?;
        }
        let mut members = initial_members;
        let mut highest_member_id = 0;
        let state = engine.state();
        let seen_proposals = SeenProposals::from_log(&state.entries);
        let applied = state.snapshot.index;
        if applied > 0 {
            let snapshot = decode_node_snapshot(&state.snapshot_data)?;
            state_machine
                .restore(&snapshot.state_machine)
                .map_err(|e| RaftError::Corruption(format!("state machine snapshot: {e}")))?;
            members = members_from_proto(&snapshot.members);
            highest_member_id = highest_member_id_of(&snapshot, state.snapshot.get_conf_state());
        }
        env.observer.observe(
            id,
            &Event::Recovered {
                hard_state: &state.hard_state,
                snapshot_index: state.snapshot.index,
                snapshot_term: state.snapshot.term,
                last_index: state.last_index(),
                applied_index: state.applied,
                entries: &state.entries,
            },
        );
        for (&peer, addr) in &members {
            if peer != id {
                env.transport.set_peer(peer, addr);
            }
        }
        let logger = slog::Logger::root(tracing_slog::TracingSlogDrain, slog::o!("raft_id" => id));
        let raft_config = config.to_raft_config(applied);
        raft_config
            .validate()
            .map_err(|e| RaftError::InvalidRequest(format!("raft config: {e}")))?;
        let raw = RawNode::new(&raft_config, DurableStorage::new(engine), &logger)
            .map_err(|e| RaftError::Corruption(format!("raft state rejected by raft-rs: {e}")))?;
        let incarnation: u64 = madsim::rand::random();
        let role = (raw.raft.state, raw.raft.term, raw.raft.leader_id);
        Ok(RaftCore {
            id,
            ids: RequestIds::new(id, incarnation),
            config,
            raw,
            state_machine,
            members,
            highest_member_id,
            env,
            proposals: PendingProposals::default(),
            seen_proposals,
            reads: PendingReads::default(),
            applied,
            last_role: role,
            stop_reason: None,
            removed_ticks_left: None,
            snapshots_in_flight: BTreeMap::new(),
            snapshot_writer: SnapshotWriter::default(),
            leader_tx: None,
        })
    }

    /// Publishes who leads now to the handle's watchers.
    pub(super) fn publish_leader(&self) {
        if let Some(tx) = &self.leader_tx {
            let info = super::status::LeaderInfo {
                leader_id: self.raw.raft.leader_id,
                term: self.raw.raft.term,
                is_self: self.raw.raft.state == StateRole::Leader,
            };
            tx.send_if_modified(|old| {
                let changed = *old != info;
                *old = info;
                changed
            });
        }
    }

    /// Why the node must stop, once it must.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.env.clock.now_ms()
    }

    fn deadline_ms(&self) -> u64 {
        self.now_ms() + self.config.request_timeout.as_millis() as u64
    }

    /// Advances Raft's logical clock by one tick and expires overdue requests.
    pub fn tick(&mut self) {
        if let Some(left) = self.removed_ticks_left.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.stop_reason = Some("removed from the cluster".into());
            }
        }
        self.raw.tick();
        let now = self.now_ms();
        let timeout = self.config.request_timeout.as_millis() as u64;
        self.proposals.expire(now, timeout);
        self.reads.expire(now, timeout);
        self.expire_snapshots(now);
    }

    /// Reports snapshots that never got their follower out of the Snapshot state as
    /// failed. raft-rs waits for `report_snapshot` forever otherwise, and a snapshot
    /// can be lost after the transport delivered it (the follower's inbox was full,
    /// or it crashed before persisting it).
    fn expire_snapshots(&mut self, now_ms: u64) {
        let timeout = self.config.snapshot_timeout.as_millis() as u64;
        let overdue: Vec<u64> = self
            .snapshots_in_flight
            .iter()
            .filter(|(_, &sent)| now_ms.saturating_sub(sent) >= timeout)
            .map(|(&peer, _)| peer)
            .collect();
        for peer in overdue {
            self.snapshots_in_flight.remove(&peer);
            let stuck = self
                .raw
                .raft
                .prs()
                .get(peer)
                .is_some_and(|pr| pr.state == raft::ProgressState::Snapshot);
            if stuck {
                tracing::info!(
                    node = self.id,
                    peer,
                    "snapshot not acknowledged in time; resending"
                );
                self.raw
                    .report_snapshot(peer, raft::SnapshotStatus::Failure);
            }
        }
    }

    /// Steps one input into Raft (or answers it directly).
    pub fn receive_input(&mut self, input: Input) {
        if self.removed_ticks_left.is_some() {
            return self.refuse_while_leaving(input);
        }
        match input {
            Input::RaftMessages(messages) => {
                for message in messages {
                    self.receive_raft_message(message);
                }
            }
            Input::Propose { command, reply } => {
                let result = self.propose(command);
                let _ = reply.send(result);
            }
            Input::ProposeFromAnyMember { command, reply } => {
                let result = self.propose_from_any_member(command);
                let _ = reply.send(result);
            }
            Input::Read {
                query,
                linearizable,
                reply,
            } => self.read(query, linearizable, reply),
            Input::ChangeMembership { change, reply } => {
                let result = self.propose_membership_change(change);
                let _ = reply.send(result);
            }
            Input::TransferLeader { to, reply } => {
                let _ = reply.send(self.transfer_leader(to));
            }
            Input::PeerUnreachable { peer } => self.raw.report_unreachable(peer),
            Input::SnapshotSent { peer, ok } => {
                if !ok {
                    self.snapshots_in_flight.remove(&peer);
                }
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(peer, status);
            }
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::Shutdown => {
                self.stop_reason.get_or_insert_with(|| "shutdown".into());
            }
        }
    }

    /// A removed leader, until it stops (see `leave_cluster`), only sends the
    /// heartbeats its ticks make: raft-rs cannot step messages for a leader outside
    /// its own configuration (its commit path unwraps the leader's own progress),
    /// so nothing is stepped, proposed or read.
    fn refuse_while_leaving(&mut self, input: Input) {
        let leaving = || RaftError::ProposalDropped("removed from the cluster".into());
        match input {
            Input::RaftMessages(_) | Input::PeerUnreachable { .. } | Input::SnapshotSent { .. } => {
            }
            Input::Propose { reply, .. } => {
                let _ = reply.send(Err(leaving()));
            }
            Input::ProposeFromAnyMember { reply, .. } => {
                let _ = reply.send(Err(leaving()));
            }
            Input::ChangeMembership { reply, .. } => {
                let _ = reply.send(Err(leaving()));
            }
            Input::Read { reply, .. } => {
                let _ = reply.send(Err(leaving()));
            }
            Input::TransferLeader { reply, .. } => {
                let _ = reply.send(Err(leaving()));
            }
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::Shutdown => {
                self.stop_reason.get_or_insert_with(|| "shutdown".into());
            }
        }
    }

    /// Steps a Raft message received from a peer.
    pub fn receive_raft_message(&mut self, mut message: Message) {
        self.env
            .observer
            .observe(self.id, &Event::Received { message: &message });
        if message.get_msg_type() == MessageType::MsgPropose
            && self.raw.raft.state == StateRole::Leader
        {
            let entries = self
                .seen_proposals
                .keep_first_sightings(message.take_entries().into());
            if entries.is_empty() {
                tracing::debug!(
                    node = self.id,
                    "a forwarded proposal arrived again; dropped"
                );
                return;
            }
            message.set_entries(entries.into());
        }
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(node = self.id, error = %e, "raft message not stepped");
        }
    }

    pub(super) fn not_leader(&self) -> RaftError {
        let leader_id = self.raw.raft.leader_id;
        RaftError::NotLeader {
            leader_id,
            leader_addr: self.members.get(&leader_id).cloned(),
        }
    }

    fn check_leader(&self) -> Result<(), RaftError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(self.not_leader());
        }
        if self.raw.raft.lead_transferee.is_some() {
            return Err(RaftError::ProposalDropped(
                "leader transfer in progress".into(),
            ));
        }
        Ok(())
    }

    /// Appends a command to the leader's log; the ticket resolves once applied.
    pub fn propose(&mut self, command: Vec<u8>) -> Result<ProposalTicket, RaftError> {
        self.check_leader()?;
        let before = self.raw.raft.raft_log.last_index();
        let id = self.hand_to_raft(command)?;
        self.track_proposal(before, id)
    }

    /// Hands `command` to raft-rs under a new request id (its entry's context).
    fn hand_to_raft(&mut self, command: Vec<u8>) -> Result<RequestId, RaftError> {
        let id = self.ids.next_id();
        if let Err(e) = self.raw.propose(id.encode(), command) {
            self.proposals.count_refused();
            return Err(RaftError::ProposalDropped(e.to_string()));
        }
        Ok(id)
    }

    /// Proposes from any member. The leader appends the command; a follower hands
    /// it to raft-rs, which forwards it to the leader (MsgProp, on the stream that
    /// carries Raft traffic, as etcd does), and the answer comes from this member's
    /// own apply of the entry, found by the id in its context. A forwarded proposal
    /// lost on the way (a leader change, a lost message) is known only by its
    /// deadline: its outcome is then unknown, as a timeout says.
    pub fn propose_from_any_member(
        &mut self,
        command: Vec<u8>,
    ) -> Result<oneshot::Receiver<ProposalResult>, RaftError> {
        if self.raw.raft.state == StateRole::Leader {
            return self.propose(command).map(|ticket| ticket.applied);
        }
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(self.not_leader());
        }
        let id = self.hand_to_raft(command)?;
        let (tx, rx) = oneshot::channel();
        let deadline = self.deadline_ms();
        self.proposals.insert_forwarded(id, deadline, tx);
        Ok(rx)
    }

    fn track_proposal(
        &mut self,
        before: u64,
        id: super::pending::RequestId,
    ) -> Result<ProposalTicket, RaftError> {
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            self.proposals.count_refused();
            return Err(RaftError::ProposalDropped(
                "raft did not append the proposal".into(),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let deadline = self.deadline_ms();
        self.proposals.insert(index, id, deadline, tx);
        Ok(ProposalTicket { index, applied: rx })
    }

    /// Serves a read: at once from local state when serializable, else after
    /// ReadIndex (Raft thesis §6.4) confirms leadership and the state machine
    /// reaches the confirmed index.
    pub fn read(
        &mut self,
        query: Vec<u8>,
        linearizable: bool,
        reply: oneshot::Sender<Result<ReadAnswer, RaftError>>,
    ) {
        if !linearizable || crate::seams::mutants::active("stale_reads") {
            let answer = self.state_machine.query(&query);
            let _ = reply.send(Ok(ReadAnswer {
                read_index: self.applied,
                answer,
            }));
            return;
        }
        if self.raw.raft.leader_id == raft::INVALID_ID {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let id = self.ids.next_id();
        let deadline_ms = self.deadline_ms();
        self.reads.insert(
            id,
            PendingRead {
                query,
                deadline_ms,
                reply,
            },
        );
        // raft-rs keys pending reads by context, so each request carries its own id.
        // (The mutant reuses one context: raft-rs then drops a read whose context is
        // already pending, and the first confirmation answers them all.)
        let ctx = if crate::seams::mutants::active("reuse_read_context") {
            RequestId { seq: 0, ..id }
        } else {
            id
        };
        self.raw.read_index(ctx.encode());
    }

    /// Proposes a ConfChangeV2 for one membership change, once
    /// [`plan_membership_change`] allows it.
    pub fn propose_membership_change(
        &mut self,
        change: MembershipChange,
    ) -> Result<MembershipTicket, RaftError> {
        self.check_leader()?;
        let plan = plan_membership_change(&self.membership_view(), &change)?;
        let mut single = ConfChangeSingle::default();
        single.set_change_type(plan.change_type);
        single.node_id = plan.node_id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc.context = plan.addr.into_bytes().into();
        let id = self.ids.next_id();
        let before = self.raw.raft.raft_log.last_index();
        if let Err(e) = self.raw.propose_conf_change(id.encode(), cc) {
            self.proposals.count_refused();
            return Err(RaftError::ProposalDropped(e.to_string()));
        }
        let ticket = self.track_proposal(before, id)?;
        Ok(MembershipTicket {
            node_id: plan.node_id,
            ticket,
        })
    }

    /// The leader's configuration, addresses and learners' progress.
    fn membership_view(&self) -> MembershipView {
        let prs = self.raw.raft.prs();
        let learners: BTreeSet<u64> = prs.conf().learners().iter().copied().collect();
        MembershipView {
            voters: prs.conf().voters().ids().iter().collect(),
            learner_matched: learners
                .iter()
                .filter_map(|&id| prs.get(id).map(|pr| (id, pr.matched)))
                .collect(),
            learners,
            addrs: self.members.clone(),
            highest_member_id: self.highest_member_id,
            last_index: self.raw.raft.raft_log.last_index(),
            change_pending: self.raw.raft.has_pending_conf(),
        }
    }

    /// Starts a leadership transfer (Raft thesis §3.10).
    pub fn transfer_leader(&mut self, to: u64) -> Result<(), RaftError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(self.not_leader());
        }
        if !self.raw.raft.prs().conf().voters().ids().contains(to) {
            return Err(RaftError::InvalidRequest(format!(
                "node {to} is not a voter"
            )));
        }
        self.raw.transfer_leader(to);
        Ok(())
    }

    pub fn status(&self) -> NodeStatus {
        let engine = self.raw.store().engine().state();
        NodeStatus {
            id: self.id,
            role: self.raw.raft.state,
            leader_id: self.raw.raft.leader_id,
            term: self.raw.raft.term,
            commit_index: self.raw.raft.raft_log.committed,
            applied_index: self.applied,
            first_log_index: engine.snapshot.index + 1,
            last_log_index: self.raw.raft.raft_log.last_index(),
            snapshot_index: engine.snapshot.index,
            members: self.members.clone(),
            learners: self
                .raw
                .raft
                .prs()
                .conf()
                .learners()
                .iter()
                .copied()
                .collect(),
            proposals: self.proposals.counts(),
        }
    }

    /// Fails every waiting request (the loop is about to stop).
    pub fn fail_pending(&mut self, why: &str) {
        let err = RaftError::Stopped(why.to_string());
        self.proposals.fail_all(&err);
        self.reads.fail_all(&err);
    }

    pub(super) fn storage_engine(&mut self) -> &mut StorageEngine {
        self.raw.mut_store().engine_mut()
    }
}

/// The first durable state of a brand-new node.
///
/// A founder starts from a snapshot at index 1, term 1 holding the initial voters,
/// members and (empty) state machine — as TiKV bootstraps at a non-zero index. A
/// node that later joins with an empty log therefore always needs a snapshot (index
/// 1 is in no one's log) and learns the configuration from it: replaying the log
/// from index 1 would miss the initial voters, which are in no log entry.
fn initial_state<S: StateMachine>(
    bootstrap: &Bootstrap,
    state_machine: &S,
    members: &BTreeMap<u64, String>,
) -> (Snapshot, HardState) {
    let Bootstrap::NewCluster { voters } = bootstrap else {
        return (Snapshot::default(), HardState::default());
    };
    let mut meta = SnapshotMetadata {
        index: 1,
        term: 1,
        ..Default::default()
    };
    meta.set_conf_state(ConfState {
        voters: voters.clone(),
        ..Default::default()
    });
    let highest_member_id = voters
        .iter()
        .chain(members.keys())
        .copied()
        .max()
        .unwrap_or(0);
    let data = proto::NodeSnapshot {
        members: members_to_proto(members),
        state_machine: state_machine.snapshot(),
        highest_member_id,
    }
    .encode_to_vec();
    let mut snapshot = Snapshot {
        data: data.into(),
        ..Default::default()
    };
    snapshot.set_metadata(meta);
    let hard_state = HardState {
        term: 1,
        commit: 1,
        ..Default::default()
    };
    (snapshot, hard_state)
}

/// Decodes the node-level snapshot (members + state machine bytes).
pub(super) fn decode_node_snapshot(data: &[u8]) -> Result<proto::NodeSnapshot, RaftError> {
    proto::NodeSnapshot::decode(data)
        .map_err(|e| RaftError::Corruption(format!("node snapshot: {e}")))
}

/// The snapshot's highest member id ever used. A snapshot written before
/// `highest_member_id` existed falls back to the highest id it still names (ids
/// removed before it was written are then forgotten, as they were before).
pub(super) fn highest_member_id_of(snapshot: &proto::NodeSnapshot, conf: &ConfState) -> u64 {
    let named = snapshot.members.iter().map(|m| m.id);
    let configured = conf
        .voters
        .iter()
        .chain(&conf.learners)
        .chain(&conf.voters_outgoing)
        .chain(&conf.learners_next)
        .copied();
    named
        .chain(configured)
        .chain([snapshot.highest_member_id])
        .max()
        .unwrap_or(0)
}

pub(super) fn members_from_proto(members: &[proto::Member]) -> BTreeMap<u64, String> {
    members.iter().map(|m| (m.id, m.addr.clone())).collect()
}

pub(super) fn members_to_proto(members: &BTreeMap<u64, String>) -> Vec<proto::Member> {
    members
        .iter()
        .map(|(&id, addr)| proto::Member {
            id,
            addr: addr.clone(),
        })
        .collect()
}
