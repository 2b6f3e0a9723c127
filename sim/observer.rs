//! The harness's Observer: turns the stack's events into trace events, stamps them
//! with simulated time, computes what each sender has durable, and feeds every
//! online checker as the event is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use coordlab::raft::storage::recovery::IncrementalRecovery;
use coordlab::seams::observer::{Event, Observer};
use madsim::time::TimeHandle;
use raft::eraftpb::{Entry, Message};
use raft::StateRole;

use super::checkers::{violation_at_seq, Checker, Routes, Violation};
use super::disk::SimDisk;
use super::trace::{
    DurableView, EntryMeta, EventKind, MsgMeta, TopicPlacement, Trace, TraceEvent, TraceHasher,
};

/// What the observer knows of one node's durable image.
#[derive(Default)]
struct DurableCache {
    /// The disk generation `recovery` is current for (None: not yet, or failed).
    generation: Option<u64>,
    rewrites: u64,
    recovery: IncrementalRecovery,
}

/// Everything recorded in one run.
pub struct RecorderState {
    pub trace: Trace,
    checkers: Routes,
    /// The first invariant broken.
    pub violation: Option<Violation>,
    /// The runtime's clock and its reading when the run started. Read through
    /// the handle: `Instant::now()` goes through madsim's `clock_gettime`
    /// override, 1.4 % of a reference run when every event asked it.
    start: Option<(TimeHandle, Duration)>,
    disks: BTreeMap<u64, Arc<SimDisk>>,
    /// Per node: the disk generation and rewrite count last seen, the recovery
    /// kept current over the durable image, and its summary.
    durable_cache: BTreeMap<u64, DurableCache>,
    /// Latest (role, term) of each node.
    pub roles: BTreeMap<u64, (StateRole, u64)>,
    /// Nodes whose Raft loop has stopped since they last started.
    pub stopped: BTreeSet<u64>,
}

/// Shared by every node's observer and the harness.
pub struct Recorder {
    state: Mutex<RecorderState>,
}

impl Recorder {
    pub fn new(checkers: Vec<Box<dyn Checker>>) -> Arc<Self> {
        Arc::new(Recorder {
            state: Mutex::new(RecorderState {
                trace: Trace::default(),
                checkers: Routes::new(checkers),
                violation: None,
                start: None,
                disks: BTreeMap::new(),
                durable_cache: BTreeMap::new(),
                roles: BTreeMap::new(),
                stopped: BTreeSet::new(),
            }),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, RecorderState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the run's clock (call inside the simulation).
    pub fn start(&self) {
        let clock = TimeHandle::current();
        let at = clock.elapsed();
        self.lock().start = Some((clock, at));
    }

    pub fn add_disk(&self, node: u64, disk: Arc<SimDisk>) {
        self.lock().disks.insert(node, disk);
    }

    /// Every member's simulated disk, by member id.
    pub fn disks(&self) -> Vec<(u64, Arc<SimDisk>)> {
        self.lock()
            .disks
            .iter()
            .map(|(id, disk)| (*id, disk.clone()))
            .collect()
    }

    /// Records an event and runs the online checkers on it.
    pub fn record(&self, node: u64, kind: EventKind) {
        self.lock().record(node, kind);
    }

    pub fn violation(&self) -> Option<Violation> {
        self.lock().violation.clone()
    }

    /// The node that leads the highest term seen, if it still leads.
    pub fn current_leader(&self) -> Option<u64> {
        let state = self.lock();
        let max_term = state.roles.values().map(|&(_, t)| t).max()?;
        state
            .roles
            .iter()
            .find(|(n, &(role, term))| {
                role == StateRole::Leader && term == max_term && !state.stopped.contains(n)
            })
            .map(|(&n, _)| n)
    }
}

impl RecorderState {
    pub fn now_ms(&self) -> u64 {
        self.start
            .as_ref()
            .map_or(0, |(clock, at)| (clock.elapsed() - *at).as_millis() as u64)
    }

    fn record(&mut self, node: u64, kind: EventKind) {
        match &kind {
            EventKind::Stopped { .. } => {
                self.stopped.insert(node);
            }
            EventKind::Recovered { .. } => {
                self.stopped.remove(&node);
            }
            _ => {}
        }
        let time_ms = self.now_ms();
        let event: &TraceEvent = self.trace.push(time_ms, node, kind);
        if self.violation.is_some() {
            return;
        }
        if let Err(v) = self.checkers.observe(event) {
            self.violation = Some(v);
        }
    }

    /// What `node` would recover right now, via the storage engine's recovery over
    /// its disk's durable bytes, as seen by a message about `index`: only bytes
    /// that became durable since the last look are decoded, unless durable bytes
    /// were rewritten (then all of them).
    fn durable_view(&mut self, node: u64, index: u64) -> Result<DurableView, String> {
        let disk = self
            .disks
            .get(&node)
            .ok_or("node has no simulated disk")?
            .clone();
        let cache = self.durable_cache.entry(node).or_default();
        let generation = disk.generation();
        if cache.generation != Some(generation) {
            cache.generation = None;
            let rewrites = disk.rewrites();
            if rewrites != cache.rewrites {
                cache.recovery = IncrementalRecovery::new();
                cache.rewrites = rewrites;
            }
            cache
                .recovery
                .advance(&disk.durable_image())
                .map_err(|e| e.to_string())?;
            cache.generation = Some(generation);
        }
        let recovered = cache.recovery.state();
        Ok(DurableView {
            term: recovered.hard_state.term,
            vote: recovered.hard_state.vote,
            last_index: recovered.last_index(),
            term_at_msg_index: recovered.term_of(index),
        })
    }
}

/// The Observer given to one simulated node.
pub struct SimObserver {
    pub recorder: Arc<Recorder>,
}

fn entry_meta(entry: &Entry) -> EntryMeta {
    use std::hash::Hasher;
    let mut h = TraceHasher::default();
    h.write_u8(entry.get_entry_type() as u8);
    h.write(&entry.data);
    h.write(&entry.context);
    EntryMeta {
        index: entry.index,
        term: entry.term,
        digest: h.finish(),
    }
}

fn msg_meta(m: &Message) -> MsgMeta {
    MsgMeta {
        kind: super::trace::msg_type_name(m.get_msg_type()),
        from: m.from,
        to: m.to,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        commit: m.commit,
        reject: m.reject,
        last_entry: m.entries.last().map(|e| (e.index, e.term)),
    }
}

/// A readable form of a node command (`etcd put k=v`, `coo report broker=3
/// seq=7`, …), if the bytes are one.
fn node_command(data: &[u8]) -> Option<String> {
    use coordlab::proto::{command::Op, coo_command::Op as CooOp, Command};
    use prost::Message as _;
    if data.is_empty() {
        return None;
    }
    match Command::decode(data).ok()?.op? {
        Op::RetiredKvPut(w) => Some(format!("retired coordlab.Kv put {}", w.key)),
        Op::RetiredKvDelete(w) => Some(format!("retired coordlab.Kv delete {}", w.key)),
        Op::Coo(c) => Some(match c.op? {
            CooOp::Report(r) => {
                let at_ms = r.at_ms;
                let r = r.report.unwrap_or_default();
                format!("coo report broker={} seq={} at={at_ms}", r.broker_id, r.seq)
            }
            CooOp::CreateTopic(t) => format!("coo create_topic {}", t.name),
            CooOp::DeleteTopic(t) => format!("coo delete_topic {}", t.name),
            CooOp::ExpireBroker(e) => format!(
                "coo expire broker={} seq={} at={}",
                e.broker_id, e.last_seq, e.last_report_ms
            ),
            CooOp::SyncGroup(g) => format!("coo sync_group {} member={}", g.group, g.member),
        }),
        Op::Coord(c) => Some(coord_command(c.op?)),
    }
}

/// A readable form of a coordination command.
fn coord_command(op: coordlab::proto::coord_command::Op) -> String {
    use coordlab::proto::coord_command::Op;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match op {
        Op::Put(p) => format!("etcd put {}={}", text(&p.key), text(&p.value)),
        Op::DeleteRange(d) => format!("etcd delete {}..{}", text(&d.key), text(&d.range_end)),
        Op::Txn(t) => format!(
            "etcd txn compares={} success={} failure={}",
            t.compare.len(),
            t.success.len(),
            t.failure.len()
        ),
        Op::Compaction(c) => format!("etcd compact {}", c.revision),
        Op::LeaseGrant(g) => format!("etcd lease grant {:x} ttl={}", g.id, g.ttl),
        Op::LeaseRevoke(r) => format!("etcd lease revoke {:x}", r.id),
        Op::LeaseExpired(e) => format!("etcd lease expired {:x} by {}", e.id, e.decided_by),
        Op::Auth(_) => "etcd auth".to_string(),
    }
}

pub fn role_name(role: StateRole) -> &'static str {
    coordlab::raft::role_name(role)
}

impl Observer for SimObserver {
    fn observe(&self, node: u64, event: &Event<'_>) {
        let mut state = self.recorder.lock();
        let kind = match event {
            Event::Recovered {
                hard_state,
                snapshot_index,
                snapshot_term,
                last_index,
                applied_index,
                entries,
            } => EventKind::Recovered {
                term: hard_state.term,
                vote: hard_state.vote,
                commit: hard_state.commit,
                snapshot_index: *snapshot_index,
                snapshot_term: *snapshot_term,
                last_index: *last_index,
                applied: *applied_index,
                entries: entries.iter().map(entry_meta).collect(),
            },
            Event::RoleChanged {
                role,
                term,
                leader_id,
            } => {
                state.roles.insert(node, (*role, *term));
                EventKind::Role {
                    role: role_name(*role).to_string(),
                    term: *term,
                    leader: *leader_id,
                }
            }
            Event::Persisted {
                hard_state,
                entries,
                synced,
            } => EventKind::Persisted {
                hard_state: hard_state.map(|hs| (hs.term, hs.vote, hs.commit)),
                entries: entries.iter().map(entry_meta).collect(),
                synced: *synced,
            },
            Event::SnapshotPersisted { index, term } => EventKind::SnapshotPersisted {
                index: *index,
                term: *term,
            },
            Event::Sent { message } => {
                let msg = msg_meta(message);
                let durable = match state.durable_view(node, msg.index) {
                    Ok(view) => view,
                    Err(e) => {
                        if state.violation.is_none() {
                            let seq = state.trace.events.len() as u64;
                            state.violation = Some(violation_at_seq(
                                "durability",
                                seq,
                                format!("node {node}'s durable image does not recover: {e}"),
                            ));
                        }
                        DurableView::default()
                    }
                };
                EventKind::Sent { msg, durable }
            }
            Event::Received { message } => EventKind::Received {
                msg: msg_meta(message),
            },
            // Timing marks for production metrics: not part of the trace, whose
            // hash must not change with them.
            Event::PersistStarted | Event::ApplyStarted { .. } => return,
            Event::Applied { entry } => EventKind::Applied {
                entry: entry_meta(entry),
                command: node_command(&entry.data),
            },
            Event::Stopped { reason } => EventKind::Stopped {
                reason: reason.to_string(),
            },
            Event::LoopStarted { mode } => EventKind::LoopStarted {
                mode: mode.to_string(),
            },
            Event::LoopStopped { mode } => EventKind::LoopStopped {
                mode: mode.to_string(),
            },
            Event::ModeSwitched { from, to } => EventKind::ModeSwitched {
                from: from.to_string(),
                to: to.to_string(),
            },
            Event::ReceiverRegistered { registration } => EventKind::ReceiverRegistered {
                registration: *registration,
            },
            Event::ReceiverReleased { registration } => EventKind::ReceiverReleased {
                registration: *registration,
            },
            Event::ReportDelivered { seq, local } => EventKind::ReportDelivered {
                seq: *seq,
                local: *local,
            },
            Event::TopicViewApplied { version } => {
                EventKind::TopicViewApplied { version: *version }
            }
            Event::CooRpcSent { rpc } => EventKind::CooRpcSent {
                rpc: rpc.to_string(),
            },
            Event::LogicNodeStopped => EventKind::LogicNodeStopped,
            Event::CoordApplied { index, revision } => EventKind::CoordApplied {
                index: *index,
                revision: *revision,
            },
            Event::LeaseRemoved {
                lease,
                expired,
                revision,
            } => EventKind::LeaseRemoved {
                lease: *lease,
                expired: *expired,
                revision: *revision,
            },
            Event::LockGranted {
                name,
                key,
                create_revision,
                revision,
            } => EventKind::LockGranted {
                name: String::from_utf8_lossy(name).into_owned(),
                key: String::from_utf8_lossy(key).into_owned(),
                create_revision: *create_revision,
                revision: *revision,
            },
            Event::LeaseRenewed {
                lease,
                ttl_ms,
                term,
                reason,
            } => EventKind::LeaseRenewed {
                lease: *lease,
                ttl_ms: *ttl_ms,
                term: *term,
                reason: reason.to_string(),
            },
            Event::PlacementChanged {
                version,
                brokers,
                topics,
            } => EventKind::CooPlacement {
                version: *version,
                brokers: brokers.to_vec(),
                topics: topics
                    .iter()
                    .map(|(name, replication, replicas)| TopicPlacement {
                        name: name.clone(),
                        replication: *replication,
                        replicas: replicas.clone(),
                    })
                    .collect(),
            },
            Event::GroupChanged {
                group,
                generation,
                topics,
                members,
            } => EventKind::CooGroup {
                group: group.to_string(),
                generation: *generation,
                topics: topics.to_vec(),
                members: members.to_vec(),
            },
        };
        state.record(node, kind);
    }
}
