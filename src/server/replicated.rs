//! The state machine a coordd node replicates: the coo's metadata and the
//! coordination service's state (etcd v3 API), behind one command envelope
//! (`proto::Command`) and one query envelope.
//!
//! After every coo change it publishes the new topic metadata on a watch channel,
//! which in-process brokers (Local mode) and `Pull` streams follow.
//!
//! coordlab 0.1 also replicated `coordlab.Kv`, a second key-value store beside the
//! etcd keyspace. This version refuses data that holds any of it, by name, rather
//! than drop it: a snapshot with its keys does not restore, and a log entry with
//! one of its writes stops the node before it is applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::seams::observer::{Event, Observer};
use crate::sync::watch;
use prost::Message as _;

use crate::coord::state::SharedCoordState;
use crate::mq::coo::state::{CooState, TopicWatch};
use crate::proto::{self, command, query};
use crate::raft::{SnapshotEncoder, StateMachine};

pub struct ReplicatedState {
    coo: CooState,
    topics: watch::Sender<Arc<proto::TopicInfos>>,
    coord: SharedCoordState,
    observer: Arc<dyn Observer>,
    member_id: u64,
}

impl ReplicatedState {
    /// `coord` is shared with the coordination services, which read and watch it.
    pub fn new(coord: SharedCoordState) -> (Self, TopicWatch) {
        let coo = CooState::new();
        let (topics, rx) = watch::channel(Arc::new(coo.topic_infos()));
        let (observer, member_id) = {
            let state = coord.lock();
            (state.observer(), state.header().member_id)
        };
        let state = ReplicatedState {
            coo,
            topics,
            coord,
            observer,
            member_id,
        };
        (state, rx)
    }

    /// Tells the observer what a coo command (or a snapshot) changed: the placement
    /// when the metadata version moved; each group that went (or, in a snapshot,
    /// went and started again: its generation is lower), then each group whose
    /// generation moved.
    fn report_coo_changes(&self, version: u64, generations: &BTreeMap<String, u64>) {
        if self.coo.version() != version {
            self.report_placement();
        }
        let now = self.coo.group_generations();
        if now == *generations {
            return;
        }
        for (group, generation) in generations {
            if now.get(group).is_none_or(|g| g < generation) {
                let gone = Event::GroupChanged {
                    group,
                    generation: generation + 1,
                    topics: &[],
                    members: &[],
                };
                self.observer.observe(self.member_id, &gone);
            }
        }
        let info = self.coo.group_list();
        for g in info.groups {
            if generations.get(&g.name) == Some(&g.generation) {
                continue;
            }
            let members: Vec<(String, Vec<(String, u32)>)> = g
                .members
                .iter()
                .map(|m| {
                    let parts = m.partitions.iter().map(|p| (p.topic.clone(), p.partition));
                    (m.member.clone(), parts.collect())
                })
                .collect();
            self.observer.observe(
                self.member_id,
                &Event::GroupChanged {
                    group: &g.name,
                    generation: g.generation,
                    topics: &self.coo.group_topics(&g.name),
                    members: &members,
                },
            );
        }
    }

    fn report_placement(&self) {
        let infos = self.coo.topic_infos();
        let topics: Vec<(String, u32, Vec<Vec<u64>>)> = infos
            .topics
            .iter()
            .map(|t| {
                let replicas = t.assignment.iter().map(|a| a.replicas.clone());
                (t.name.clone(), t.replication, replicas.collect())
            })
            .collect();
        self.observer.observe(
            self.member_id,
            &Event::PlacementChanged {
                version: infos.version,
                brokers: &self.coo.broker_ids(),
                topics: &topics,
            },
        );
    }

    fn publish_if_changed(&self) {
        if self.topics.borrow().version != self.coo.version() {
            self.topics.send_replace(Arc::new(self.coo.topic_infos()));
        }
    }
}

/// What a node of this version says of coordlab 0.1's `coordlab.Kv` data.
fn retired_kv(what: &str) -> String {
    format!(
        "{what} of coordlab.Kv, the key-value store coordlab 0.1 served beside the etcd \
         keyspace; coordlab {} serves the etcd keyspace only. Read the keys out with \
         coordlab 0.1 (`coordctl get`), write them with `etcdctl put`, and start from \
         a fresh data dir",
        env!("CARGO_PKG_VERSION")
    )
}

impl StateMachine for ReplicatedState {
    /// Decodes the command once: coordlab 0.1's key-value writes are refused by
    /// name; a malformed command is ignored alike on every replica.
    fn apply(&mut self, index: u64, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(match proto::Command::decode(bytes).map(|c| c.op) {
            Ok(Some(command::Op::Coo(coo))) => {
                let (version, generations) = (self.coo.version(), self.coo.group_generations());
                let answer = self.coo.apply(coo);
                self.report_coo_changes(version, &generations);
                self.publish_if_changed();
                answer
            }
            Ok(Some(command::Op::Coord(cmd))) => {
                self.coord.lock().apply(index, cmd).encode_to_vec()
            }
            Ok(Some(command::Op::RetiredKvPut(w))) => {
                return Err(retired_kv(&format!("the log holds a put of {:?}", w.key)))
            }
            Ok(Some(command::Op::RetiredKvDelete(w))) => {
                return Err(retired_kv(&format!(
                    "the log holds a delete of {:?}",
                    w.key
                )))
            }
            _ => Vec::new(),
        })
    }

    fn query(&self, bytes: &[u8]) -> Vec<u8> {
        match proto::Query::decode(bytes).map(|q| q.q) {
            Ok(Some(query::Q::Coo(coo))) => self.coo.query(&coo),
            _ => Vec::new(),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.snapshot_later()()
    }

    /// The control plane is small and copied now; the keyspace is encoded later
    /// (see `CoordState::snapshot_later`).
    fn snapshot_later(&self) -> SnapshotEncoder {
        let coo = self.coo.snapshot();
        let coord = self.coord.lock().snapshot_later();
        Box::new(move || {
            proto::ReplicatedSnapshot {
                retired_kv: Vec::new(),
                coo,
                coord: coord(),
            }
            .encode_to_vec()
        })
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap = proto::ReplicatedSnapshot::decode(bytes)
            .map_err(|e| format!("node state snapshot: {e}"))?;
        if !snap.retired_kv.is_empty() {
            return Err(retired_kv(&format!(
                "the snapshot holds {} bytes of keys",
                snap.retired_kv.len()
            )));
        }
        let (version, generations) = (self.coo.version(), self.coo.group_generations());
        self.coo.restore(&snap.coo)?;
        self.coord.lock().restore(&snap.coord)?;
        self.report_coo_changes(version, &generations);
        self.publish_if_changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mq::coo::state::{coo_command, coo_query};

    fn coord() -> SharedCoordState {
        SharedCoordState::new(1, Arc::new(crate::seams::observer::NoopObserver))
    }

    #[test]
    fn coo_and_coord_commands_reach_their_machines() {
        let (mut s, topics) = ReplicatedState::new(coord());
        let create = coo_command(proto::coo_command::Op::CreateTopic(
            proto::CreateTopicRequest {
                name: "t".into(),
                partitions: 2,
                replication: 1,
            },
        ));
        s.apply(1, &create).unwrap();
        let put = proto::Command {
            op: Some(command::Op::Coord(proto::CoordCommand {
                op: Some(proto::coord_command::Op::Put(
                    proto::etcdserverpb::PutRequest {
                        key: b"k".to_vec(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            })),
        };
        s.apply(2, &put.encode_to_vec()).unwrap();
        assert_eq!(s.coord.lock().mvcc.revision(), 2, "the put made revision 2");
        let infos = proto::TopicInfos::decode(
            &s.query(&coo_query(proto::coo_query::Q::Topics(
                proto::ListRequest {},
            )))[..],
        )
        .unwrap();
        assert_eq!(infos.topics.len(), 1);
        assert_eq!(
            topics.borrow().version,
            infos.version,
            "the watch saw the change"
        );
        let (mut copy, _) = ReplicatedState::new(coord());
        copy.restore(&s.snapshot()).unwrap();
        assert_eq!(copy.snapshot(), s.snapshot());
    }

    /// Bytes as coordlab 0.1 wrote them: `Command { put: PutRequest { key: "greeting",
    /// value: "hello", session: { client_id: 7, request_seq: 1 } } }`.
    const V01_KV_PUT: &[u8] = &[
        0x0a, 0x17, 0x0a, 0x08, b'g', b'r', b'e', b'e', b't', b'i', b'n', b'g', 0x12, 0x05, b'h',
        b'e', b'l', b'l', b'o', 0x1a, 0x04, 0x08, 0x07, 0x10, 0x01,
    ];

    #[test]
    fn coordlab_0_1_kv_data_is_refused_by_name() {
        let (mut s, _) = ReplicatedState::new(coord());
        let before = s.snapshot();
        let why = s.apply(3, V01_KV_PUT).expect_err("a 0.1 KV put is refused");
        assert_eq!(s.snapshot(), before, "a refused command changes nothing");
        assert!(why.contains("a put of \"greeting\""), "{why}");
        assert!(why.contains("coordlab 0.1"), "{why}");
        assert!(why.contains(env!("CARGO_PKG_VERSION")), "{why}");
        let old_snapshot = proto::ReplicatedSnapshot {
            retired_kv: vec![0x0a, 0x03, 0x0a, 0x01, b'k'],
            ..Default::default()
        };
        let err = s.restore(&old_snapshot.encode_to_vec()).unwrap_err();
        assert!(
            err.contains("coordlab.Kv") && err.contains("5 bytes"),
            "{err}"
        );
        // A 0.1 snapshot whose KV store was empty restores: nothing is lost.
        let empty_kv = proto::ReplicatedSnapshot::default();
        s.restore(&empty_kv.encode_to_vec()).unwrap();
    }
}
