//! The OutputProcessor: the one place that turns a Ready into I/O.
//!
//! One Ready is handled in exactly this order (DESIGN.md, "Raft core"):
//!
//! 1. send `ready.messages()` — traffic a leader may send before its own persistence;
//! 2. apply a snapshot if present (persist it, then restore the state machine);
//! 3. persist entries and HardState as one batch, synced when `must_sync`;
//! 4. only then send `ready.persisted_messages()` (votes, append acks: they promise
//!    durable state);
//! 5. apply committed entries (their commit index was written in step 3);
//! 6. `advance`, then the LightReady: persist its commit index, send its messages,
//!    apply its committed entries; then `advance_apply`.
//!
//! Nothing steps, proposes or campaigns between `ready()` and `advance()`: the core
//! loop calls [`RaftCore::process_ready`] only between inputs.

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState, Message, MessageType,
    Snapshot, SnapshotMetadata,
};
use raft::{StateRole, Storage};
use raft_proto::ConfChangeI;

use super::core::{
    decode_node_snapshot, highest_member_id_of, members_from_proto, members_to_proto, RaftCore,
};
use super::error::RaftError;
use super::pending::RequestId;
use super::snapshot_writer::SnapshotWritten;
use super::state_machine::StateMachine;
use crate::proto;
use crate::seams::mutants;
use crate::seams::observer::Event;

impl<S: StateMachine> RaftCore<S> {
    /// Handles one Ready, if any, in the order of the module doc. A storage failure
    /// returns `Err`: the node must stop rather than continue with unsaved state.
    pub fn process_ready(&mut self) -> Result<(), RaftError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.observe_role_change();

        // 1. Messages that need no local persistence first.
        self.send_raft_messages(ready.take_messages());

        // 2. A snapshot from the leader.
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(&snapshot)?;
        }

        // 3. Entries and HardState, one batch, synced when Raft needs durability.
        let mut persisted_messages = ready.take_persisted_messages();
        if mutants::active("send_before_sync") {
            self.send_raft_messages(std::mem::take(&mut persisted_messages));
        }
        let must_sync = ready.must_sync();
        self.persist(ready.entries(), ready.hs(), must_sync)?;
        self.seen_proposals.remember(ready.entries());
        if mutants::active("apply_uncommitted") {
            let entries = ready.entries().clone();
            self.apply_committed_entries(entries)?;
        }

        // 4. Messages that promise what step 3 made durable.
        self.send_raft_messages(persisted_messages);

        for read_state in ready.take_read_states() {
            self.reads
                .confirm(&read_state.request_ctx, read_state.index);
        }

        // 5. Advance before applying: advancing reports the entries persisted in
        //    step 3, and for a leader raft-rs credits them to its own progress —
        //    which a committed entry removing this leader would already have
        //    deleted (raft.rs `on_persist_entries` unwraps it).
        let committed = ready.take_committed_entries();
        let mut light = self.raw.advance(ready);

        // 6. Committed entries, covered by the commit index persisted in step 3,
        //    then the LightReady's.
        self.apply_committed_entries(committed)?;
        if let Some(commit) = light.commit_index() {
            self.persist_commit(commit, false)?;
        }
        self.send_raft_messages(light.take_messages());
        self.apply_committed_entries(light.take_committed_entries())?;
        self.raw.advance_apply_to(self.applied);

        self.serve_ready_reads();
        self.snapshot_if_due()
    }

    /// Hands messages to the transport (which never blocks).
    pub(super) fn send_raft_messages(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        for message in &messages {
            self.env.observer.observe(self.id, &Event::Sent { message });
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_in_flight.insert(message.to, self.now_ms());
            }
        }
        self.env.transport.send_raft_messages(messages);
    }

    /// Writes entries and HardState as one batch; syncs when `sync`.
    pub(super) fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), RaftError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        self.env.observer.observe(self.id, &Event::PersistStarted);
        self.storage_engine().persist(entries, hard_state, sync)?;
        self.env.observer.observe(
            self.id,
            &Event::Persisted {
                hard_state,
                entries,
                synced: sync,
            },
        );
        Ok(())
    }

    /// Records the commit index `commit`. Unsynced, a write happens only when it
    /// is higher: a lost commit index is re-learned from the leader, and entries are
    /// applied only after it is written ahead of them. With `sync` it is made
    /// durable now, even if an earlier unsynced write already carried it (a
    /// membership change's, see `apply_committed_entries`).
    fn persist_commit(&mut self, commit: u64, sync: bool) -> Result<(), RaftError> {
        let mut hs = self.raw.store().engine().state().hard_state.clone();
        if commit <= hs.commit && !sync {
            return Ok(());
        }
        hs.commit = hs.commit.max(commit);
        self.persist(&[], Some(&hs), sync)
    }

    /// Persists a snapshot sent by the leader and restores the state machine from it.
    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), RaftError> {
        let meta = snapshot.get_metadata();
        let node_snapshot = decode_node_snapshot(&snapshot.data)?;
        self.storage_engine().persist_snapshot(snapshot)?;
        self.state_machine
            .restore(&node_snapshot.state_machine)
            .map_err(|e| RaftError::Corruption(format!("snapshot from leader: {e}")))?;
        self.set_members(members_from_proto(&node_snapshot.members));
        self.highest_member_id = highest_member_id_of(&node_snapshot, meta.get_conf_state());
        self.applied = meta.index;
        self.proposals
            .drop_through(meta.index, "replaced by a snapshot");
        self.env.observer.observe(
            self.id,
            &Event::SnapshotPersisted {
                index: meta.index,
                term: meta.term,
            },
        );
        Ok(())
    }

    /// Applies committed entries in order, answering their proposers.
    pub(super) fn apply_committed_entries(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        if entries.is_empty() {
            return Ok(());
        }
        for entry in &entries {
            if entry.index <= self.applied {
                continue;
            }
            debug_assert_eq!(entry.index, self.applied + 1, "apply gap");
            self.env
                .observer
                .observe(self.id, &Event::ApplyStarted { index: entry.index });
            let answer = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => Vec::new(),
                EntryType::EntryNormal => self
                    .state_machine
                    .apply(entry.index, &entry.data)
                    .map_err(|why| {
                        RaftError::Unsupported(format!("entry {}: {why}", entry.index))
                    })?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    // A membership change is acted on once applied (a removed node
                    // stops), so the commit covering it must survive a crash: a
                    // member that forgot it would fall back to the old membership
                    // and could wait forever for votes of members already gone.
                    self.persist_commit(entry.index, true)?;
                    self.apply_conf_change(entry)?
                }
            };
            self.proposals
                .resolve_applied(entry.index, RequestId::decode(&entry.context), answer);
            self.applied = entry.index;
            self.env
                .observer
                .observe(self.id, &Event::Applied { entry });
        }
        let applied = self.applied;
        self.storage_engine().persist_applied(applied)?;
        Ok(())
    }

    /// Applies a membership change: Raft's configuration, the member addresses and
    /// the transport's peers. A node that removes itself stops.
    fn apply_conf_change(&mut self, entry: &Entry) -> Result<Vec<u8>, RaftError> {
        let cc: ConfChangeV2 = match entry.get_entry_type() {
            EntryType::EntryConfChange => ConfChange::parse_from_bytes(&entry.data)
                .map_err(|e| RaftError::Corruption(format!("conf change at {}: {e}", entry.index)))?
                .into_v2(),
            _ => ConfChangeV2::parse_from_bytes(&entry.data).map_err(|e| {
                RaftError::Corruption(format!("conf change at {}: {e}", entry.index))
            })?,
        };
        if mutants::active("drop_conf_change") {
            return Ok(Vec::new());
        }
        if let Err(e) = self.raw.apply_conf_change(&cc) {
            // Every node rejects the same change the same way: the log stays consistent.
            tracing::warn!(node = self.id, index = entry.index, error = %e, "conf change rejected");
            return Ok(format!("rejected: {e}").into_bytes());
        }
        let addr = String::from_utf8_lossy(&cc.context).into_owned();
        for change in cc.get_changes() {
            let peer = change.node_id;
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    self.highest_member_id = self.highest_member_id.max(peer);
                    if !addr.is_empty() {
                        self.members.insert(peer, addr.clone());
                        if peer != self.id {
                            self.env.transport.set_peer(peer, &addr);
                        }
                    }
                }
                ConfChangeType::RemoveNode => {
                    self.members.remove(&peer);
                    if peer == self.id {
                        self.leave_cluster();
                    } else {
                        self.env.transport.remove_peer(peer);
                    }
                }
            }
        }
        Ok(Vec::new())
    }

    /// This node applied its own removal. A follower stops at once. A leader
    /// keeps leading the new configuration for one election timeout first (as
    /// etcd stops a removed member with a delay): raft-rs applies a configuration
    /// when it is committed, so followers that have not yet heard of the commit
    /// still count this node in their quorum, and if it vanished at once, losing
    /// one more member could leave them with no quorum in either configuration.
    /// Its heartbeats carry the commit meanwhile; it steps nothing else
    /// (`RaftCore::refuse_while_leaving`).
    fn leave_cluster(&mut self) {
        if self.raw.raft.state == StateRole::Leader {
            self.removed_ticks_left = Some(self.config.election_ticks);
        } else {
            self.stop_reason = Some("removed from the cluster".into());
        }
    }

    fn set_members(&mut self, members: std::collections::BTreeMap<u64, String>) {
        for old in self.members.keys() {
            if !members.contains_key(old) && *old != self.id {
                self.env.transport.remove_peer(*old);
            }
        }
        for (&peer, addr) in &members {
            if peer != self.id {
                self.env.transport.set_peer(peer, addr);
            }
        }
        self.members = members;
    }

    /// Answers linearizable reads whose read index is now applied.
    fn serve_ready_reads(&mut self) {
        for (read_index, read) in self.reads.take_ready(self.applied) {
            let answer = self.state_machine.query(&read.query);
            let _ = read
                .reply
                .send(Ok(super::pending::ReadAnswer { read_index, answer }));
        }
    }

    /// Takes a snapshot once enough entries were applied, or when a follower needs
    /// a newer one than the stored snapshot: captures the state here, and encodes
    /// and writes it off the loop; [`finish_snapshot`](Self::finish_snapshot)
    /// compacts the log when it is durable. While one is being written, the next
    /// waits.
    fn snapshot_if_due(&mut self) -> Result<(), RaftError> {
        if self.snapshot_writer.in_flight() {
            return Ok(());
        }
        let snapshot_index = self.raw.store().engine().state().snapshot.index;
        let wanted =
            self.raw.store().take_fresh_snapshot_request() && self.applied > snapshot_index;
        if !wanted && self.applied < snapshot_index + self.config.snapshot_interval_entries {
            return Ok(());
        }
        let term = self.raw.store().term(self.applied).map_err(|e| {
            RaftError::Storage(format!("term of applied index {}: {e}", self.applied))
        })?;
        let encode_state = self.state_machine.snapshot_later();
        let members = members_to_proto(&self.members);
        let highest_member_id = self.highest_member_id;
        let encode = move || {
            proto::NodeSnapshot {
                members,
                state_machine: encode_state(),
                highest_member_id,
            }
            .encode_to_vec()
        };
        let mut meta = SnapshotMetadata {
            index: self.applied,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        let write = self.storage_engine().begin_snapshot_write(meta);
        self.snapshot_writer
            .start(write, encode, self.env.clock.clone());
        Ok(())
    }

    /// Names the snapshot whose file is now durable in the WAL and compacts the log
    /// to it, unless a snapshot from the leader superseded it meanwhile.
    pub(super) fn finish_snapshot(&mut self, done: SnapshotWritten) -> Result<(), RaftError> {
        let SnapshotWritten {
            meta,
            data,
            written,
        } = done;
        let recorded = self
            .storage_engine()
            .finish_snapshot_write(&meta, data, written)?;
        // A request raft-rs made meanwhile is made again if this one is still too
        // old for the follower; taking another at once would be a wasted copy.
        self.raw.store().take_fresh_snapshot_request();
        if recorded {
            self.env.observer.observe(
                self.id,
                &Event::SnapshotPersisted {
                    index: meta.index,
                    term: meta.term,
                },
            );
        }
        Ok(())
    }

    /// Reports role/term/leader changes and fails reads that lost their leader.
    fn observe_role_change(&mut self) {
        let now = (
            self.raw.raft.state,
            self.raw.raft.term,
            self.raw.raft.leader_id,
        );
        if now == self.last_role {
            return;
        }
        if now.2 != self.last_role.2 {
            let err = self.not_leader();
            self.reads.fail_unconfirmed(&err);
        }
        self.last_role = now;
        self.publish_leader();
        self.env.observer.observe(
            self.id,
            &Event::RoleChanged {
                role: now.0,
                term: now.1,
                leader_id: now.2,
            },
        );
    }
}
