//! Requests waiting inside the node: proposals until applied, reads until served.
//!
//! A proposal is matched to its client by the unique id carried in its entry's
//! `context`, never by FIFO order: after a leader change an index can hold another
//! leader's entry, and the waiting client must then hear "dropped", not someone
//! else's answer.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::error::RaftError;
use crate::seams::mutants;

/// Unique id of a request issued by this node in this incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub node_id: u64,
    /// Random per start of the node, so ids never repeat across restarts.
    pub incarnation: u64,
    pub seq: u64,
}

impl RequestId {
    pub const ENCODED_LEN: usize = 24;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::ENCODED_LEN);
        out.extend_from_slice(&self.node_id.to_le_bytes());
        out.extend_from_slice(&self.incarnation.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<RequestId> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        let word =
            |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(RequestId {
            node_id: word(0),
            incarnation: word(1),
            seq: word(2),
        })
    }
}

/// Issues this node's request ids.
#[derive(Debug)]
pub struct RequestIds {
    node_id: u64,
    incarnation: u64,
    next_seq: u64,
}

impl RequestIds {
    pub fn new(node_id: u64, incarnation: u64) -> Self {
        RequestIds {
            node_id,
            incarnation,
            next_seq: 1,
        }
    }

    pub fn next_id(&mut self) -> RequestId {
        let id = RequestId {
            node_id: self.node_id,
            incarnation: self.incarnation,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        id
    }
}

/// The answer of an applied proposal, or why it failed.
pub type ProposalResult = Result<Vec<u8>, RaftError>;

struct PendingProposal {
    id: RequestId,
    deadline_ms: u64,
    reply: oneshot::Sender<ProposalResult>,
}

/// Proposals waiting for their entry to be applied: appended to this leader's log,
/// keyed by their log index; or forwarded by Raft to the leader, keyed by id.
#[derive(Default)]
pub struct PendingProposals {
    by_index: BTreeMap<u64, PendingProposal>,
    /// Proposals this node handed to Raft as a follower: their index is unknown
    /// until the entry comes back in the committed log.
    forwarded: BTreeMap<RequestId, PendingProposal>,
    counts: ProposalCounts,
}

/// This node's proposals since it started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProposalCounts {
    /// Appended to the log while this node led.
    pub appended: u64,
    /// Handed to the leader by Raft (MsgProp) while this node followed.
    pub forwarded: u64,
    /// Appended and not yet answered.
    pub pending: u64,
    /// Answered with an error: dropped, overwritten, timed out, or failed when the
    /// node stopped (a proposal Raft refused to append counts too).
    pub failed: u64,
}

impl PendingProposals {
    pub fn insert(
        &mut self,
        index: u64,
        id: RequestId,
        deadline_ms: u64,
        reply: oneshot::Sender<ProposalResult>,
    ) {
        self.counts.appended += 1;
        if let Some(old) = self.by_index.insert(
            index,
            PendingProposal {
                id,
                deadline_ms,
                reply,
            },
        ) {
            // Our own earlier proposal at this index was overwritten before we knew.
            self.counts.failed += 1;
            let _ = old.reply.send(Err(RaftError::ProposalDropped(format!(
                "index {index} was reused by a later proposal"
            ))));
        }
    }

    /// Waits for the entry with context `id`, which Raft forwarded to the leader.
    pub fn insert_forwarded(
        &mut self,
        id: RequestId,
        deadline_ms: u64,
        reply: oneshot::Sender<ProposalResult>,
    ) {
        self.counts.forwarded += 1;
        let waiter = PendingProposal {
            id,
            deadline_ms,
            reply,
        };
        self.forwarded.insert(id, waiter);
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty() && self.forwarded.is_empty()
    }

    /// Counts since the node started, and the proposals waiting now.
    pub fn counts(&self) -> ProposalCounts {
        ProposalCounts {
            pending: (self.by_index.len() + self.forwarded.len()) as u64,
            ..self.counts
        }
    }

    /// Counts a proposal Raft refused to append (no waiter was inserted).
    pub fn count_refused(&mut self) {
        self.counts.failed += 1;
    }

    /// The entry at `index` was applied with context id `applied_id` and answer
    /// `answer`: resolve the waiter at that index (and any older, now impossible).
    pub fn resolve_applied(&mut self, index: u64, applied_id: Option<RequestId>, answer: Vec<u8>) {
        let mut answer = Some(answer);
        while let Some(entry) = self.by_index.first_entry() {
            if *entry.key() > index {
                break;
            }
            let at = *entry.key();
            let pending = entry.remove();
            let own_entry = Some(pending.id) == applied_id || mutants::active("ack_wrong_client");
            let result = if at == index && own_entry {
                Ok(answer.take().unwrap_or_default())
            } else {
                self.counts.failed += 1;
                Err(RaftError::ProposalDropped(format!(
                    "index {at} holds another leader's entry"
                )))
            };
            let _ = pending.reply.send(result);
            if at == index {
                break;
            }
        }
        if let Some(forwarded) = applied_id.and_then(|id| self.forwarded.remove(&id)) {
            let _ = forwarded.reply.send(Ok(answer.take().unwrap_or_default()));
        }
    }

    /// Fails every waiter at or below `index` (a snapshot replaced that part of the
    /// log). Forwarded proposals have no known index: if the snapshot holds theirs,
    /// their outcome is unknown, and their deadline says so.
    pub fn drop_through(&mut self, index: u64, why: &str) {
        let rest = self.by_index.split_off(&(index + 1));
        let dropped = std::mem::replace(&mut self.by_index, rest);
        self.counts.failed += dropped.len() as u64;
        for (_, p) in dropped {
            let _ = p
                .reply
                .send(Err(RaftError::ProposalDropped(why.to_string())));
        }
    }

    /// Fails waiters whose deadline passed: their outcome is unknown to the client.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) {
        let overdue = |p: &PendingProposal| p.deadline_ms <= now_ms;
        let mut expired = take_overdue(&mut self.by_index, overdue);
        expired.extend(take_overdue(&mut self.forwarded, overdue));
        self.counts.failed += expired.len() as u64;
        for p in expired {
            let _ = p.reply.send(Err(RaftError::Timeout(timeout_ms)));
        }
    }

    /// Fails everything (the node stops).
    pub fn fail_all(&mut self, err: &RaftError) {
        let failed = std::mem::take(&mut self.by_index).into_values();
        let failed: Vec<PendingProposal> = failed
            .chain(std::mem::take(&mut self.forwarded).into_values())
            .collect();
        self.counts.failed += failed.len() as u64;
        for p in failed {
            let _ = p.reply.send(Err(err.clone()));
        }
    }
}

/// Removes and returns, in key order, the values of `map` that are `overdue`.
fn take_overdue<K: Ord + Copy, V>(
    map: &mut BTreeMap<K, V>,
    overdue: impl Fn(&V) -> bool,
) -> Vec<V> {
    let keys: Vec<K> = map
        .iter()
        .filter(|(_, v)| overdue(v))
        .map(|(&k, _)| k)
        .collect();
    keys.iter().filter_map(|k| map.remove(k)).collect()
}

/// What a read waits for and who gets the answer.
pub struct PendingRead {
    pub query: Vec<u8>,
    pub deadline_ms: u64,
    pub reply: oneshot::Sender<Result<ReadAnswer, RaftError>>,
}

/// The answer to a read, with the index it was served at.
#[derive(Debug, Clone)]
pub struct ReadAnswer {
    pub read_index: u64,
    pub answer: Vec<u8>,
}

/// Linearizable reads: first waiting for Raft to confirm a read index, then for the
/// state machine to reach it.
#[derive(Default)]
pub struct PendingReads {
    awaiting_index: BTreeMap<RequestId, PendingRead>,
    awaiting_apply: BTreeMap<(u64, RequestId), PendingRead>,
}

impl PendingReads {
    pub fn insert(&mut self, id: RequestId, read: PendingRead) {
        self.awaiting_index.insert(id, read);
    }

    /// Raft confirmed `index` for the read with context `ctx`.
    pub fn confirm(&mut self, ctx: &[u8], index: u64) {
        if crate::seams::mutants::active("reuse_read_context") {
            for (id, read) in std::mem::take(&mut self.awaiting_index) {
                self.awaiting_apply.insert((index, id), read);
            }
            return;
        }
        if let Some(id) = RequestId::decode(ctx) {
            if let Some(read) = self.awaiting_index.remove(&id) {
                self.awaiting_apply.insert((index, id), read);
            }
        }
    }

    /// Takes the reads whose index is now applied.
    pub fn take_ready(&mut self, applied: u64) -> Vec<(u64, PendingRead)> {
        if crate::seams::mutants::active("read_before_apply") {
            return std::mem::take(&mut self.awaiting_apply)
                .into_iter()
                .map(|((index, _), read)| (index, read))
                .collect();
        }
        let later = self.awaiting_apply.split_off(&(
            applied + 1,
            RequestId {
                node_id: 0,
                incarnation: 0,
                seq: 0,
            },
        ));
        std::mem::replace(&mut self.awaiting_apply, later)
            .into_iter()
            .map(|((index, _), read)| (index, read))
            .collect()
    }

    /// Fails reads whose deadline passed.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) {
        let expired = |r: &PendingRead| r.deadline_ms <= now_ms;
        let mut failed = take_overdue(&mut self.awaiting_index, expired);
        failed.extend(take_overdue(&mut self.awaiting_apply, expired));
        for read in failed {
            let _ = read.reply.send(Err(RaftError::Timeout(timeout_ms)));
        }
    }

    /// Fails reads still waiting for a read index (leadership was lost: raft-rs
    /// drops them).
    pub fn fail_unconfirmed(&mut self, err: &RaftError) {
        for (_, read) in std::mem::take(&mut self.awaiting_index) {
            let _ = read.reply.send(Err(err.clone()));
        }
    }

    pub fn fail_all(&mut self, err: &RaftError) {
        self.fail_unconfirmed(err);
        for (_, read) in std::mem::take(&mut self.awaiting_apply) {
            let _ = read.reply.send(Err(err.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> RequestId {
        RequestId {
            node_id: 1,
            incarnation: 7,
            seq,
        }
    }

    #[test]
    fn request_id_round_trips() {
        assert_eq!(RequestId::decode(&id(42).encode()), Some(id(42)));
        assert_eq!(RequestId::decode(b"short"), None);
    }

    #[test]
    fn proposal_answered_only_when_its_own_entry_applies() {
        let mut pending = PendingProposals::default();
        let (tx_a, mut rx_a) = oneshot::channel();
        let (tx_b, mut rx_b) = oneshot::channel();
        pending.insert(5, id(1), 1000, tx_a);
        pending.insert(6, id(2), 1000, tx_b);
        // Another leader's entry took index 5: client A must hear "dropped".
        pending.resolve_applied(5, Some(id(99)), b"wrong".to_vec());
        assert!(matches!(
            rx_a.try_recv(),
            Ok(Err(RaftError::ProposalDropped(_)))
        ));
        pending.resolve_applied(6, Some(id(2)), b"ok".to_vec());
        assert_eq!(rx_b.try_recv().unwrap().unwrap(), b"ok");
        assert!(pending.is_empty());
    }

    #[test]
    fn reads_wait_for_apply_and_expire() {
        let mut reads = PendingReads::default();
        let (tx, mut rx) = oneshot::channel();
        reads.insert(
            id(1),
            PendingRead {
                query: vec![],
                deadline_ms: 100,
                reply: tx,
            },
        );
        reads.confirm(&id(1).encode(), 10);
        assert!(reads.take_ready(9).is_empty());
        let ready = reads.take_ready(10);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].0, 10);
        let (tx2, mut rx2) = oneshot::channel();
        reads.insert(
            id(2),
            PendingRead {
                query: vec![],
                deadline_ms: 100,
                reply: tx2,
            },
        );
        reads.expire(100, 100);
        assert!(matches!(rx2.try_recv(), Ok(Err(RaftError::Timeout(100)))));
        drop(ready);
        assert!(rx.try_recv().is_err());
    }
}
