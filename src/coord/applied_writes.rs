//! The latest request applied for each client that numbers its requests
//! (`coordlab-write-id`): a retry whose first attempt was applied is answered
//! from here, not applied again (Raft dissertation §6.3). etcd promises nothing
//! for retried writes; coordd promises exactly-once to clients that send an id.
//!
//! The table is bounded: past [`CAPACITY`] clients, the one applied longest ago is
//! forgotten. Every replica applies the same log, so every replica forgets the same
//! client at the same index.

use std::collections::BTreeMap;

use crate::proto::{AppliedWrite, CoordAnswer, WriteId};
use crate::seams::mutants;

/// Clients remembered at most.
pub const CAPACITY: usize = 10_000;

/// What the table knows of a request about to be applied.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Not applied yet: apply it.
    Fresh,
    /// Applied already: this is its answer.
    Retry(CoordAnswer),
    /// Older than the client's latest applied request (a retry the network delayed
    /// past the next request): the client gave up on it, so it must not apply.
    Overtaken { latest: u64 },
}

#[derive(Debug, Clone, PartialEq)]
struct Latest {
    seq: u64,
    index: u64,
    answer: CoordAnswer,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct AppliedWrites {
    by_client: BTreeMap<u64, Latest>,
    /// index → client applied there, to find the oldest when full.
    by_index: BTreeMap<u64, u64>,
}

impl AppliedWrites {
    pub fn seen(&self, id: &WriteId) -> Seen {
        if mutants::active("retry_reapplies_writes") {
            return Seen::Fresh;
        }
        let Some(latest) = self.by_client.get(&id.client) else {
            return Seen::Fresh;
        };
        match id.seq.cmp(&latest.seq) {
            std::cmp::Ordering::Equal => Seen::Retry(latest.answer.clone()),
            std::cmp::Ordering::Less if !mutants::active("apply_overtaken_retry") => {
                Seen::Overtaken { latest: latest.seq }
            }
            _ => Seen::Fresh,
        }
    }

    /// Records `id` as the client's latest request, applied at `index`.
    pub fn remember(&mut self, id: &WriteId, index: u64, answer: &CoordAnswer) {
        let latest = Latest {
            seq: id.seq,
            index,
            answer: answer.clone(),
        };
        if let Some(old) = self.by_client.insert(id.client, latest) {
            self.by_index.remove(&old.index);
        }
        self.by_index.insert(index, id.client);
        while self.by_client.len() > CAPACITY {
            let Some((_, client)) = self.by_index.pop_first() else {
                break;
            };
            self.by_client.remove(&client);
        }
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    pub fn snapshot(&self) -> Vec<AppliedWrite> {
        self.by_client
            .iter()
            .map(|(client, l)| AppliedWrite {
                client: *client,
                seq: l.seq,
                index: l.index,
                answer: Some(l.answer.clone()),
            })
            .collect()
    }

    pub fn restore(records: Vec<AppliedWrite>) -> Self {
        let mut table = AppliedWrites::default();
        for r in records {
            let id = WriteId {
                client: r.client,
                seq: r.seq,
            };
            table.remember(&id, r.index, &r.answer.unwrap_or_default());
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::coord_answer::Answer;
    use crate::proto::etcdserverpb::ResponseHeader;

    fn id(client: u64, seq: u64) -> WriteId {
        WriteId { client, seq }
    }

    fn answer(revision: i64) -> CoordAnswer {
        CoordAnswer {
            answer: Some(Answer::Done(ResponseHeader {
                revision,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_retry_is_answered_and_an_overtaken_request_refused() {
        let mut t = AppliedWrites::default();
        assert_eq!(t.seen(&id(7, 1)), Seen::Fresh);
        t.remember(&id(7, 1), 10, &answer(2));
        assert_eq!(t.seen(&id(7, 1)), Seen::Retry(answer(2)));
        assert_eq!(t.seen(&id(7, 2)), Seen::Fresh);
        t.remember(&id(7, 2), 11, &answer(3));
        assert_eq!(t.seen(&id(7, 1)), Seen::Overtaken { latest: 2 });
        assert_eq!(t.seen(&id(8, 1)), Seen::Fresh, "clients are apart");
    }

    #[test]
    fn the_client_applied_longest_ago_is_forgotten_first() {
        let mut t = AppliedWrites::default();
        for client in 1..=CAPACITY as u64 {
            t.remember(&id(client, 1), client, &answer(1));
        }
        // Client 1 writes again: client 2 is now the oldest.
        t.remember(&id(1, 2), 20_000, &answer(2));
        t.remember(&id(CAPACITY as u64 + 1, 1), 20_001, &answer(3));
        assert_eq!(t.len(), CAPACITY);
        assert_eq!(t.seen(&id(2, 1)), Seen::Fresh, "client 2 was forgotten");
        assert_eq!(t.seen(&id(1, 2)), Seen::Retry(answer(2)));
        assert_eq!(t.seen(&id(3, 1)), Seen::Retry(answer(1)));
    }

    #[test]
    fn a_snapshot_restores_the_same_table() {
        let mut t = AppliedWrites::default();
        t.remember(&id(5, 3), 40, &answer(9));
        t.remember(&id(6, 1), 41, &answer(10));
        assert_eq!(AppliedWrites::restore(t.snapshot()), t);
    }
}
