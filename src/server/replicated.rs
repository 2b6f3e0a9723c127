//! The state machine a coordd node replicates: the KV store, the coo's metadata and
//! the coordination service's state (etcd v3 API), behind one command envelope
//! (`proto::Command`) and one query envelope.
//!
//! After every coo change it publishes the new topic metadata on a watch channel,
//! which in-process brokers (Local mode) and `Pull` streams follow.

use std::sync::Arc;

use crate::sync::watch;
use prost::Message as _;

use crate::coord::state::SharedCoordState;
use crate::kv::KvStateMachine;
use crate::mq::coo::state::{CooState, TopicWatch};
use crate::proto::{self, command, query};
use crate::raft::StateMachine;

pub struct ReplicatedState {
    kv: KvStateMachine,
    coo: CooState,
    topics: watch::Sender<Arc<proto::TopicInfos>>,
    coord: SharedCoordState,
}

impl ReplicatedState {
    /// `coord` is shared with the coordination services, which read and watch it.
    pub fn new(coord: SharedCoordState) -> (Self, TopicWatch) {
        let coo = CooState::new();
        let (topics, rx) = watch::channel(Arc::new(coo.topic_infos()));
        (
            ReplicatedState {
                kv: KvStateMachine::new(),
                coo,
                topics,
                coord,
            },
            rx,
        )
    }

    fn publish_if_changed(&self) {
        if self.topics.borrow().version != self.coo.version() {
            self.topics.send_replace(Arc::new(self.coo.topic_infos()));
        }
    }
}

/// Encodes a KV read as a node query.
pub fn get_query(key: &str, serializable: bool) -> Vec<u8> {
    proto::Query {
        q: Some(query::Q::Get(proto::GetRequest {
            key: key.to_string(),
            serializable,
        })),
    }
    .encode_to_vec()
}

impl StateMachine for ReplicatedState {
    fn apply(&mut self, index: u64, bytes: &[u8]) -> Vec<u8> {
        match proto::Command::decode(bytes).map(|c| c.op) {
            Ok(Some(command::Op::Coo(coo))) => {
                let answer = self.coo.apply(coo);
                self.publish_if_changed();
                answer
            }
            Ok(Some(command::Op::Coord(cmd))) => {
                self.coord.lock().apply(index, cmd).encode_to_vec()
            }
            // KV commands (and malformed ones, which the KV machine ignores alike on
            // every replica).
            _ => self.kv.apply(index, bytes),
        }
    }

    fn query(&self, bytes: &[u8]) -> Vec<u8> {
        match proto::Query::decode(bytes).map(|q| q.q) {
            Ok(Some(query::Q::Get(get))) => self.kv.query(&get.encode_to_vec()),
            Ok(Some(query::Q::Coo(coo))) => self.coo.query(&coo),
            _ => Vec::new(),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        proto::ReplicatedSnapshot {
            kv: self.kv.snapshot(),
            coo: self.coo.snapshot(),
            coord: self.coord.lock().snapshot(),
        }
        .encode_to_vec()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap = proto::ReplicatedSnapshot::decode(bytes)
            .map_err(|e| format!("node state snapshot: {e}"))?;
        self.kv.restore(&snap.kv)?;
        self.coo.restore(&snap.coo)?;
        self.coord.lock().restore(&snap.coord)?;
        self.publish_if_changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv;
    use crate::mq::coo::state::{coo_command, coo_query};

    #[test]
    fn kv_and_coo_commands_reach_their_machines() {
        let coord = || SharedCoordState::new(1, Arc::new(crate::seams::observer::NoopObserver));
        let (mut s, topics) = ReplicatedState::new(coord());
        s.apply(1, &kv::put_command("k", b"v"));
        let create = coo_command(proto::coo_command::Op::CreateTopic(
            proto::CreateTopicRequest {
                name: "t".into(),
                partitions: 2,
                replication: 1,
            },
        ));
        s.apply(2, &create);
        let got = proto::GetResponse::decode(&s.query(&get_query("k", false))[..]).unwrap();
        assert_eq!(got.value.as_deref(), Some(&b"v"[..]));
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
}
