//! The run's history: every event the stack and the harness report, in order, with
//! simulated time and node id. Pure data: checkers read it, reports print it, and
//! its hash proves two runs identical.

use raft::eraftpb::MessageType;
use serde::Serialize;

#[path = "library/events.rs"]
mod library_events;
pub use library_events::{CommittedChange, LibraryEvent};

#[path = "bridge/events.rs"]
mod bridge_events;
pub use bridge_events::{BridgeEvent, RegistryChange, RegistrySummary};

#[path = "flow/events.rs"]
pub mod flow_events;
pub use flow_events::{scope as flow_scope, AuditedKey, FlowEvent};

/// A log entry as checkers see it: position, term and a digest of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct EntryMeta {
    pub index: u64,
    pub term: u64,
    /// `TraceHasher` over type, data and context: equal entries have equal digests.
    pub digest: u64,
}

/// A Raft message as checkers see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MsgMeta {
    /// raft-rs's message type name, e.g. `MsgAppend`.
    pub kind: &'static str,
    pub from: u64,
    pub to: u64,
    pub term: u64,
    pub log_term: u64,
    pub index: u64,
    pub commit: u64,
    pub reject: bool,
    /// (index, term) of the last entry carried, for appends.
    pub last_entry: Option<(u64, u64)>,
}

/// raft-rs's name of a message type, as its protobuf descriptor gives it: a match
/// rather than the descriptor lookup, which cost 1% of a simulation (perf).
pub fn msg_type_name(t: MessageType) -> &'static str {
    match t {
        MessageType::MsgHup => "MsgHup",
        MessageType::MsgBeat => "MsgBeat",
        MessageType::MsgPropose => "MsgPropose",
        MessageType::MsgAppend => "MsgAppend",
        MessageType::MsgAppendResponse => "MsgAppendResponse",
        MessageType::MsgRequestVote => "MsgRequestVote",
        MessageType::MsgRequestVoteResponse => "MsgRequestVoteResponse",
        MessageType::MsgSnapshot => "MsgSnapshot",
        MessageType::MsgHeartbeat => "MsgHeartbeat",
        MessageType::MsgHeartbeatResponse => "MsgHeartbeatResponse",
        MessageType::MsgUnreachable => "MsgUnreachable",
        MessageType::MsgSnapStatus => "MsgSnapStatus",
        MessageType::MsgCheckQuorum => "MsgCheckQuorum",
        MessageType::MsgTransferLeader => "MsgTransferLeader",
        MessageType::MsgTimeoutNow => "MsgTimeoutNow",
        MessageType::MsgReadIndex => "MsgReadIndex",
        MessageType::MsgReadIndexResp => "MsgReadIndexResp",
        MessageType::MsgRequestPreVote => "MsgRequestPreVote",
        MessageType::MsgRequestPreVoteResponse => "MsgRequestPreVoteResponse",
    }
}

/// What the sender would recover from its disk's durable image if it crashed at the
/// moment of the send, computed by the storage engine's own recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
pub struct DurableView {
    pub term: u64,
    pub vote: u64,
    pub last_index: u64,
    /// Term of the durable entry at the message's `index` (None: not durable).
    pub term_at_msg_index: Option<u64>,
}

/// One event. Its `EventTag` (the variant without its fields) is what checkers
/// declare they read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, strum::EnumDiscriminants)]
#[strum_discriminants(name(EventTag), derive(strum::EnumCount, strum::EnumIter))]
#[serde(tag = "type")]
pub enum EventKind {
    /// The node opened its storage (start or restart).
    Recovered {
        term: u64,
        vote: u64,
        commit: u64,
        snapshot_index: u64,
        snapshot_term: u64,
        last_index: u64,
        applied: u64,
        /// The entries on disk after the snapshot, as recovered.
        entries: Vec<EntryMeta>,
    },
    Role {
        role: String,
        term: u64,
        leader: u64,
    },
    Persisted {
        /// (term, vote, commit) when the batch carried a HardState.
        hard_state: Option<(u64, u64, u64)>,
        entries: Vec<EntryMeta>,
        synced: bool,
    },
    SnapshotPersisted {
        index: u64,
        term: u64,
    },
    Sent {
        msg: MsgMeta,
        durable: DurableView,
    },
    Received {
        msg: MsgMeta,
    },
    Applied {
        entry: EntryMeta,
        /// The KV command it carried, e.g. `put k1=c101-4` (None: not a KV command).
        command: Option<String>,
    },
    Stopped {
        reason: String,
    },
    /// A LogicNode started a communication loop.
    LoopStarted {
        mode: String,
    },
    /// A LogicNode's loop stopped and released its receivers.
    LoopStopped {
        mode: String,
    },
    ModeSwitched {
        from: String,
        to: String,
    },
    ReceiverRegistered {
        registration: u64,
    },
    ReceiverReleased {
        registration: u64,
    },
    ReportDelivered {
        seq: u64,
        local: bool,
    },
    TopicViewApplied {
        version: u64,
    },
    CooRpcSent {
        rpc: String,
    },
    LogicNodeStopped,
    /// Coordination: a command at `index` applied; the store is at `revision`.
    CoordApplied {
        index: u64,
        revision: i64,
    },
    /// Coordination: a lease and its keys were removed at `revision`.
    LeaseRemoved {
        lease: i64,
        expired: bool,
        revision: i64,
    },
    /// Coordination: the Lock service granted `name` (key and fencing token).
    LockGranted {
        name: String,
        key: String,
        create_revision: i64,
        revision: i64,
    },
    /// Coordination: the leader of `term` (re)started `lease`'s TTL of `ttl_ms`
    /// from now (`reason`: `keep-alive`, `new-leader` or `first-seen`).
    LeaseRenewed {
        lease: i64,
        ttl_ms: u64,
        term: u64,
        reason: String,
    },
    /// etcd KV workload: a client started an operation on an integer register key
    /// (`kind`: `read`, `write` (of `value`) or `cas` (from `expect` to `value`)).
    RegisterInvoke {
        client: u64,
        op: u64,
        key: String,
        kind: String,
        value: Option<i64>,
        expect: Option<i64>,
    },
    /// etcd KV workload: the operation ended `ok`, `fail` (certainly no effect) or
    /// `unknown`; a read's value, a cas's verdict, the response header's revision.
    RegisterComplete {
        client: u64,
        op: u64,
        outcome: String,
        value: Option<i64>,
        swapped: Option<bool>,
        revision: Option<i64>,
        /// What failed, when it did.
        error: Option<String>,
    },
    /// A client was granted `lease` (asked for at `sent_ms`) with this TTL.
    LeaseGranted {
        client: u64,
        lease: i64,
        ttl_ms: u64,
        sent_ms: u64,
    },
    /// A keep-alive of `lease` sent at `sent_ms` was answered: `ok` (with the TTL
    /// the leader restarted), `not_found` (TTL 0: the lease is gone) or `error`.
    KeepAlive {
        client: u64,
        lease: i64,
        sent_ms: u64,
        outcome: String,
        ttl_ms: u64,
    },
    /// A client's revoke of `lease` (sent at `sent_ms`) ended with `outcome`.
    LeaseRevoke {
        client: u64,
        lease: i64,
        sent_ms: u64,
        outcome: String,
    },
    /// A put of `key` attached to `lease` ended with `outcome` (at `revision` when ok).
    LeaseKeyPut {
        client: u64,
        lease: i64,
        key: String,
        value: String,
        outcome: String,
        revision: Option<i64>,
    },
    /// A linearizable read (invoked at `invoked_ms`) of a key attached to `lease`
    /// found it `present` or not, at store `revision`.
    LeaseKeyRead {
        client: u64,
        lease: i64,
        key: String,
        invoked_ms: u64,
        present: bool,
        revision: i64,
    },
    /// A watcher opened a watch on `prefix` from `start_revision`.
    WatchOpened {
        watcher: u64,
        prefix: String,
        start_revision: i64,
    },
    /// A watcher received these events, in the order received.
    WatchEvents {
        watcher: u64,
        events: Vec<WatchedEvent>,
    },
    /// A watcher's stream ended (`compact_revision` > 0: cancelled because its start
    /// revision was compacted; the watcher resumes there).
    WatchClosed {
        watcher: u64,
        reason: String,
        compact_revision: i64,
    },
    /// A client asked to compact the store at `revision`.
    Compacted {
        client: u64,
        revision: i64,
        outcome: String,
    },
    /// A lock client holds `name` as `key`, with the fencing token it read (the
    /// key's create revision).
    LockAcquired {
        client: u64,
        name: String,
        key: String,
        token: i64,
        lease: i64,
    },
    /// A lock client's Unlock of `key` ended with `outcome`.
    LockReleased {
        client: u64,
        name: String,
        key: String,
        outcome: String,
    },
    /// A write to a harness resource guarded by a lock: `action` is `enter` or
    /// `exit` of the critical section; a fenced resource refuses stale tokens.
    ResourceWrite {
        resource: String,
        client: u64,
        token: i64,
        action: String,
        accepted: bool,
    },
    /// The end-of-run audit starts: what it reads was decided now, so later lock
    /// grants go unaudited.
    AuditStarted,
    /// End-of-run audit: the keys under lock `name`'s prefix, with their create
    /// revisions, as a historical read at `revision` showed them (or the error).
    LockAudit {
        name: String,
        revision: i64,
        keys: Vec<(String, i64)>,
        error: Option<String>,
    },
    /// The harness injected or healed a fault.
    Fault {
        action: String,
    },
    /// The harness changed this node's process: `killed` (its tasks are gone until
    /// a restart, whose recovery the node reports itself), `paused` or `resumed`.
    Process {
        change: String,
    },
    /// An event of the client-library workload (`sim/library/`).
    Library(LibraryEvent),
    /// A client started an operation.
    ClientInvoke {
        client: u64,
        op: u64,
        kind: String,
        key: String,
        value: Option<String>,
    },
    /// Put `op` of `client`, acknowledged earlier, reached member `to` once more
    /// after the client's next write (a retry the network delayed).
    LateDuplicate {
        client: u64,
        op: u64,
        to: u64,
    },
    /// A client's operation ended: `ok` (with a read's value), `fail` (certainly not
    /// applied) or `unknown` (may or may not have taken effect).
    ClientComplete {
        client: u64,
        op: u64,
        outcome: String,
        value: Option<String>,
        /// The revision the cluster said the write made.
        revision: Option<i64>,
    },
    /// An event of the Link Bridge workload (`sim/bridge/`). Last, so that the
    /// other kinds keep their hash tags.
    Bridge(BridgeEvent),
    /// An event of the FlowBuilder workload (`sim/flow/`). Last, so that the
    /// other kinds keep their hash tags.
    Flow(FlowEvent),
    // New kinds go after every older one, so that the older keep their hash tags.
    /// MQ: this node's coo applied a metadata change (or restored a snapshot) to
    /// `version`: the registered brokers and each topic's placement.
    CooPlacement {
        version: u64,
        brokers: Vec<u64>,
        topics: Vec<TopicPlacement>,
    },
    /// MQ: this node's coo applied a change of consumer group `group` to
    /// `generation`: its topics (with partition counts; 0: no such topic) and each
    /// member's partitions (none: every member left; the group keeps its generation).
    CooGroup {
        group: String,
        generation: u64,
        topics: Vec<(String, u32)>,
        members: Vec<(String, Vec<(String, u32)>)>,
    },
    /// MQ: a consumer's `SyncConsumerAssignments` call (a join, or a `leave`)
    /// ended with `outcome` (`ok` with the coo's answer, else the error).
    GroupSynced {
        group: String,
        member: String,
        leave: bool,
        outcome: String,
        generation: u64,
        partitions: Vec<(String, u32)>,
    },
}

/// One topic's placement as a coo applied it: the replicas of partition 0, 1, …
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TopicPlacement {
    pub name: String,
    pub replication: u32,
    pub replicas: Vec<Vec<u64>>,
}

/// One event of a watch response, as a watcher received it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WatchedEvent {
    /// The key's mod revision (for a delete: the deletion's revision).
    pub revision: i64,
    pub key: String,
    /// `put` or `delete`.
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TraceEvent {
    pub seq: u64,
    /// Simulated milliseconds since the run started.
    pub time_ms: u64,
    /// Node id (0: the harness itself; clients use their own ids).
    pub node: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl TraceEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("trace events serialize")
    }
}

/// The trace's hash: stable across releases and platforms (std's hashers are not),
/// and a word at a time. FNV-1a, used before, took one multiply per byte: 5 % of a
/// reference run. Each step `h -> (rotl(h, 5) ^ w) * K` is a bijection of the state
/// for a fixed word and of the word for a fixed state, so two traces that differ in
/// a single word always hash differently; `finish` mixes the state for display.
#[derive(Debug, Clone, Copy)]
pub struct TraceHasher(u64);

/// An odd constant with well-spread bits (the golden ratio's, as in FxHash).
const TRACE_HASH_K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHasher {
    fn fold(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(TRACE_HASH_K);
    }
}

/// Integers are folded as one little-endian word each; byte strings eight bytes at a
/// time, then their length (so a zero-padded tail cannot collide with real zeros).
/// `derive(Hash)` supplies the field order and enum tags.
impl std::hash::Hasher for TraceHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.fold(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.fold(u64::from_le_bytes(word));
        }
        self.fold(bytes.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.fold(i as u64);
    }

    fn write_u16(&mut self, i: u16) {
        self.fold(i as u64);
    }

    fn write_u32(&mut self, i: u32) {
        self.fold(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.fold(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.fold(i as u64);
    }

    fn write_i64(&mut self, i: i64) {
        self.fold(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.fold(i as i64 as u64);
    }

    /// The state through a 64-bit finaliser (MurmurHash3's fmix64), so that the
    /// printed hash has every bit depend on every word.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The recorded history with its running hash.
#[derive(Debug)]
pub struct Trace {
    pub events: Vec<TraceEvent>,
    hasher: TraceHasher,
}

/// Events reserved up front (160 bytes each: 40 MiB of address space). Untouched
/// pages cost nothing, while growing by doubling copied the trace and faulted in
/// fresh pages at each step (7 % of a faults scenario's run in perf).
const RESERVED_EVENTS: usize = 1 << 18;

impl Default for Trace {
    fn default() -> Self {
        Trace {
            events: Vec::with_capacity(RESERVED_EVENTS),
            hasher: TraceHasher::default(),
        }
    }
}

impl Trace {
    /// Appends an event; returns a reference to it as stored.
    pub fn push(&mut self, time_ms: u64, node: u64, kind: EventKind) -> &TraceEvent {
        let event = TraceEvent {
            seq: self.events.len() as u64,
            time_ms,
            node,
            kind,
        };
        // A compact binary encoding (derive(Hash)); JSON only for artifacts.
        std::hash::Hash::hash(&event, &mut self.hasher);
        self.events.push(event);
        self.events.last().expect("just pushed")
    }

    /// Hash of every event so far.
    pub fn hash(&self) -> u64 {
        std::hash::Hasher::finish(&self.hasher)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_message_type_is_named_as_its_descriptor_names_it() {
        use protobuf::ProtobufEnum;
        let values = MessageType::values();
        assert_eq!(
            values.len(),
            19,
            "raft-rs has a message type the match lacks"
        );
        for &t in values {
            assert_eq!(super::msg_type_name(t), t.descriptor().name());
        }
    }

    use std::hash::Hasher;

    use proptest::prelude::*;

    use super::*;

    fn hash_bytes(bytes: &[u8]) -> u64 {
        let mut h = TraceHasher::default();
        h.write(bytes);
        h.finish()
    }

    fn hash_words(words: &[u64]) -> u64 {
        let mut h = TraceHasher::default();
        for &w in words {
            h.write_u64(w);
        }
        h.finish()
    }

    /// Known answers, computed by a separate Python transcription of the doc
    /// comment: a change to the hash would silently change every recorded trace
    /// hash, so it must show here first.
    #[test]
    fn trace_hasher_is_stable() {
        assert_eq!(hash_bytes(b""), 0xd602_5a0a_43c0_936f);
        assert_eq!(hash_bytes(b"coordlab trace"), 0x301f_adf2_3e4a_4f5f);
        assert_eq!(hash_words(&[1, 2, 3]), 0x0b7f_ff13_5708_0414);
    }

    /// Zero bytes are content: a tail padded with zeros must not collide with a
    /// string that really ends in zeros.
    #[test]
    fn byte_strings_hash_with_their_length() {
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        assert_ne!(hash_bytes(&[0; 8]), hash_bytes(&[0; 16]));
    }

    proptest! {
        /// Every step is a bijection, so traces differing in one word never collide.
        #[test]
        fn one_changed_word_always_changes_the_hash(
            words in prop::collection::vec(any::<u64>(), 1..64),
            at in any::<prop::sample::Index>(),
            flip in 1..u64::MAX,
        ) {
            let mut changed = words.clone();
            let i = at.index(words.len());
            changed[i] ^= flip;
            prop_assert_ne!(hash_words(&words), hash_words(&changed));
        }
    }
}
