//! The replicated key-value state machine: a sorted map of string keys to bytes.
//!
//! Commands are `proto::KvCommand`, queries `proto::GetRequest`; both travel as
//! protobuf bytes through the Raft log and the read path. (The full etcd-style
//! coordination state machine replaces this in `coord/`.)

use std::collections::BTreeMap;

use prost::Message as _;

use crate::proto::{self, kv_command::Op};
use crate::raft::StateMachine;

/// Keys may be at most this long.
pub const MAX_KEY_BYTES: usize = 4096;
/// Values may be at most this long.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvStateMachine {
    data: BTreeMap<String, Vec<u8>>,
}

impl KvStateMachine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Encodes a put as a Raft command.
pub fn put_command(key: &str, value: &[u8]) -> Vec<u8> {
    proto::KvCommand {
        op: Some(Op::Put(proto::PutRequest {
            key: key.to_string(),
            value: value.to_vec(),
        })),
    }
    .encode_to_vec()
}

/// Encodes a delete as a Raft command.
pub fn delete_command(key: &str) -> Vec<u8> {
    proto::KvCommand {
        op: Some(Op::Delete(proto::DeleteRequest {
            key: key.to_string(),
        })),
    }
    .encode_to_vec()
}

/// Encodes a point read as a query.
pub fn get_query(key: &str) -> Vec<u8> {
    proto::GetRequest {
        key: key.to_string(),
        serializable: false,
    }
    .encode_to_vec()
}

impl StateMachine for KvStateMachine {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        // A command that does not decode was proposed by a buggy client; every node
        // rejects it identically, so the replicas stay equal.
        let prev_value = match proto::KvCommand::decode(command).map(|c| c.op) {
            Ok(Some(Op::Put(put))) => self.data.insert(put.key, put.value),
            Ok(Some(Op::Delete(del))) => self.data.remove(&del.key),
            Ok(None) | Err(_) => {
                tracing::warn!("ignoring malformed KV command");
                None
            }
        };
        proto::KvApplied { prev_value }.encode_to_vec()
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let value = proto::GetRequest::decode(query)
            .ok()
            .and_then(|q| self.data.get(&q.key).cloned());
        proto::GetResponse {
            value,
            read_index: 0,
        }
        .encode_to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        proto::KvSnapshot {
            pairs: self
                .data
                .iter()
                .map(|(key, value)| proto::KvPair {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let snapshot =
            proto::KvSnapshot::decode(snapshot).map_err(|e| format!("KV snapshot: {e}"))?;
        self.data = snapshot
            .pairs
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_query_snapshot_restore() {
        let mut sm = KvStateMachine::new();
        let answer = proto::KvApplied::decode(&sm.apply(1, &put_command("a", b"1"))[..]).unwrap();
        assert_eq!(answer.prev_value, None);
        let answer = proto::KvApplied::decode(&sm.apply(2, &put_command("a", b"2"))[..]).unwrap();
        assert_eq!(answer.prev_value.as_deref(), Some(&b"1"[..]));
        sm.apply(3, &put_command("b", b"x"));
        sm.apply(4, &delete_command("b"));
        let got = proto::GetResponse::decode(&sm.query(&get_query("a"))[..]).unwrap();
        assert_eq!(got.value.as_deref(), Some(&b"2"[..]));
        let mut copy = KvStateMachine::new();
        copy.restore(&sm.snapshot()).unwrap();
        assert_eq!(copy, sm);
        assert!(copy.restore(b"\xff\xff").is_err());
    }

    #[test]
    fn malformed_command_changes_nothing() {
        let mut sm = KvStateMachine::new();
        sm.apply(1, b"\xff\x00garbage");
        assert!(sm.is_empty());
    }
}
