//! The replicated key-value state machine: a sorted map of string keys to bytes.
//!
//! Commands are `proto::KvCommand`, queries `proto::GetRequest`; both travel as
//! protobuf bytes through the Raft log and the read path. A write carrying a
//! session (client id, request number) is applied at most once: a retry is
//! answered from the session, not applied again. This is `coordlab.Kv`'s store,
//! separate from the etcd keyspace that `coord` serves.

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
    /// client id → (last request seq applied, its answer): a retried write is
    /// answered, not applied again (Raft dissertation §6.3).
    sessions: BTreeMap<u64, (u64, Vec<u8>)>,
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
    encode_put(proto::PutRequest {
        key: key.to_string(),
        value: value.to_vec(),
        session: None,
    })
}

/// Encodes a delete as a Raft command.
pub fn delete_command(key: &str) -> Vec<u8> {
    encode_delete(proto::DeleteRequest {
        key: key.to_string(),
        session: None,
    })
}

/// Encodes a client's put request (with its session, if any) as a Raft command.
pub fn encode_put(put: proto::PutRequest) -> Vec<u8> {
    proto::KvCommand {
        op: Some(Op::Put(put)),
    }
    .encode_to_vec()
}

/// Encodes a client's delete request (with its session, if any) as a Raft command.
pub fn encode_delete(delete: proto::DeleteRequest) -> Vec<u8> {
    proto::KvCommand {
        op: Some(Op::Delete(delete)),
    }
    .encode_to_vec()
}

impl KvStateMachine {
    /// The answer to a write already seen from this session, if it is a retry.
    fn replayed(&self, session: Option<&proto::RequestSession>) -> Option<Vec<u8>> {
        if crate::seams::mutants::active("retry_reapplies_writes") {
            return None;
        }
        let s = session.filter(|s| s.client_id != 0)?;
        let (seq, answer) = self.sessions.get(&s.client_id)?;
        match s.request_seq.cmp(seq) {
            std::cmp::Ordering::Equal => Some(answer.clone()),
            // Older than the client's latest write (a retry delayed in the network,
            // overtaken by the next write): the client gave up on it long ago.
            std::cmp::Ordering::Less if !crate::seams::mutants::active("apply_overtaken_retry") => {
                Some(proto::KvApplied { prev_value: None }.encode_to_vec())
            }
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Greater => None,
        }
    }

    fn remember(&mut self, session: Option<&proto::RequestSession>, answer: &[u8]) {
        if let Some(s) = session.filter(|s| s.client_id != 0) {
            self.sessions
                .insert(s.client_id, (s.request_seq, answer.to_vec()));
        }
    }
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
        let op = match proto::KvCommand::decode(command).map(|c| c.op) {
            Ok(Some(op)) => op,
            Ok(None) | Err(_) => {
                tracing::warn!("ignoring malformed KV command");
                return proto::KvApplied { prev_value: None }.encode_to_vec();
            }
        };
        let session = match &op {
            Op::Put(put) => put.session,
            Op::Delete(del) => del.session,
        };
        if let Some(answer) = self.replayed(session.as_ref()) {
            return answer;
        }
        let prev_value = match op {
            Op::Put(put) => self.data.insert(put.key, put.value),
            Op::Delete(del) => self.data.remove(&del.key),
        };
        let answer = proto::KvApplied { prev_value }.encode_to_vec();
        self.remember(session.as_ref(), &answer);
        answer
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
            sessions: self
                .sessions
                .iter()
                .map(|(&client_id, (request_seq, answer))| proto::ClientSession {
                    client_id,
                    request_seq: *request_seq,
                    answer: answer.clone(),
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
        self.sessions = snapshot
            .sessions
            .into_iter()
            .map(|s| (s.client_id, (s.request_seq, s.answer)))
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
    fn a_retried_write_is_answered_not_applied_again() {
        let mut sm = KvStateMachine::new();
        let session = |seq| {
            Some(proto::RequestSession {
                client_id: 7,
                request_seq: seq,
            })
        };
        let put = |v: &str, seq| {
            encode_put(proto::PutRequest {
                key: "k".into(),
                value: v.as_bytes().to_vec(),
                session: session(seq),
            })
        };
        sm.apply(1, &put("a", 1));
        sm.apply(2, &put_command("k", b"other"));
        // The retry of seq 1 (its first answer was lost) must not bring "a" back.
        let answer = proto::KvApplied::decode(&sm.apply(3, &put("a", 1))[..]).unwrap();
        assert_eq!(answer.prev_value, None, "the first application's answer");
        assert_eq!(sm.get("k"), Some(&b"other"[..]));
        sm.apply(4, &put("b", 2));
        assert_eq!(sm.get("k"), Some(&b"b"[..]));
        let mut copy = KvStateMachine::new();
        copy.restore(&sm.snapshot()).unwrap();
        assert_eq!(copy, sm, "sessions survive snapshots");
    }

    #[test]
    fn malformed_command_changes_nothing() {
        let mut sm = KvStateMachine::new();
        sm.apply(1, b"\xff\x00garbage");
        assert!(sm.is_empty());
    }
}
