//! The Observer seam: what the stack reports for checkers, through one narrow call.
//!
//! Production nodes use [`NoopObserver`]; the harness records every event with the
//! simulated time and node id into the run's history. Events borrow the stack's data,
//! so an observer that ignores them costs one virtual call and no allocation.

use raft::eraftpb::{Entry, HardState, Message};
use raft::StateRole;

/// Something a node did that a checker may need to see.
#[derive(Debug)]
pub enum Event<'a> {
    /// The node recovered its state from disk at start-up.
    Recovered {
        hard_state: &'a HardState,
        snapshot_index: u64,
        snapshot_term: u64,
        last_index: u64,
        applied_index: u64,
        /// The log entries recovered after the snapshot. A write that failed (the
        /// node stopped, no `Persisted`) may still have reached the disk: these say
        /// what did.
        entries: &'a [Entry],
    },
    /// The node's Raft role, term or known leader changed.
    RoleChanged {
        role: StateRole,
        term: u64,
        leader_id: u64,
    },
    /// The node is about to write a batch; the next `Persisted` ends it. Carries
    /// nothing: it lets an observer time the write (the harness ignores it).
    PersistStarted,
    /// A batch of log entries and/or HardState was written (not yet durable unless
    /// `synced`).
    Persisted {
        hard_state: Option<&'a HardState>,
        entries: &'a [Entry],
        synced: bool,
    },
    /// A snapshot was made durable and the log compacted up to `index`.
    SnapshotPersisted { index: u64, term: u64 },
    /// A Raft message left this node.
    Sent { message: &'a Message },
    /// A Raft message was stepped into this node's Raft.
    Received { message: &'a Message },
    /// The node is about to apply the committed entry at `index`; its `Applied`
    /// ends it. Lets an observer time the apply (the harness ignores it).
    ApplyStarted { index: u64 },
    /// A committed entry was applied to the state machine.
    Applied { entry: &'a Entry },
    /// The node stopped its Raft loop.
    Stopped { reason: &'a str },

    // --- MQ control plane (seed 000); `node_id` is the LogicNode's or broker's id ---
    /// A LogicNode started a communication loop ("local" or "external").
    LoopStarted { mode: &'a str },
    /// A LogicNode's loop has fully stopped and released its receivers.
    LoopStopped { mode: &'a str },
    /// A LogicNode switched communication mode.
    ModeSwitched { from: &'a str, to: &'a str },
    /// A broker registered a state receiver.
    ReceiverRegistered { registration: u64 },
    /// A broker released a state receiver.
    ReceiverReleased { registration: u64 },
    /// A broker's report was accepted by a coo (in-process or over gRPC).
    ReportDelivered { seq: u64, local: bool },
    /// A broker applied topic metadata of `version`.
    TopicViewApplied { version: u64 },
    /// A broker sent an RPC to a coo over the network.
    CooRpcSent { rpc: &'a str },
    /// A LogicNode shut down.
    LogicNodeStopped,

    // --- Coordination service (seed 001, etcd v3 API) ---
    /// A coordination command at log `index` was applied; the store is at `revision`.
    CoordApplied { index: u64, revision: i64 },
    /// A lease was removed by the state machine (`expired`: by the leader's expiry
    /// decision, else revoked by a client); its keys were deleted at `revision`.
    LeaseRemoved {
        lease: i64,
        expired: bool,
        revision: i64,
    },
    /// The Lock service granted lock `name` with `key`; `create_revision` is the
    /// fencing token; `revision` is the store revision at which the grant was decided.
    LockGranted {
        name: &'a [u8],
        key: &'a [u8],
        create_revision: i64,
        revision: i64,
    },
    /// The leader of `term` (re)started `lease`'s TTL (`ttl_ms`, as granted) from
    /// now: `reason` is `keep-alive` (a renewal it answered), `new-leader` (it
    /// became leader: every lease starts afresh) or `first-seen` (a lease granted
    /// while it leads, first seen by its lessor).
    LeaseRenewed {
        lease: i64,
        ttl_ms: u64,
        term: u64,
        reason: &'a str,
    },

    // --- MQ control plane, the coo's replicated metadata (seed 000) ---
    /// This node's coo applied a change of its metadata version (or restored a
    /// snapshot): the registered `brokers` and every topic's placement as
    /// (name, replication, replicas of partition 0, 1, …).
    PlacementChanged {
        version: u64,
        brokers: &'a [u64],
        topics: &'a [(String, u32, Vec<Vec<u64>>)],
    },
    /// This node's coo applied a change of consumer group `group`'s generation:
    /// its topics with their partition counts (0: no such topic) and each member's
    /// partitions as (topic, partition) (none: every member left).
    GroupChanged {
        group: &'a str,
        generation: u64,
        topics: &'a [(String, u32)],
        members: &'a [(String, Vec<(String, u32)>)],
    },
}

/// Receives the stack's events.
pub trait Observer: Send + Sync + 'static {
    fn observe(&self, node_id: u64, event: &Event<'_>);
}

/// The production observer: ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    #[inline]
    fn observe(&self, _node_id: u64, _event: &Event<'_>) {}
}
