//! The ids of the proposals a node has seen enter its log, so that a leader appends
//! a forwarded proposal once.
//!
//! A Raft message can arrive twice (the simulated network duplicates them), and
//! raft-rs appends every proposal it is handed: a forwarded put delivered twice
//! would be applied twice. A copy can also arrive late at a member that has since
//! lost leadership, whose Raft forwards it to the new leader. So every node
//! remembers the id (the [`RequestId`] a proposer puts in the entry's context) of
//! every entry it persists, and of every entry in its log at start-up; a leader
//! appends a forwarded entry only if its id is new. The last [`CAPACITY`] ids are
//! kept. Not airtight: a copy delayed past that many entries, or past a restart
//! whose log no longer holds the original, would be appended again. Real streams do
//! not duplicate (the transport never resends a batch), and the simulation's
//! message delays are milliseconds.

use std::collections::{BTreeSet, VecDeque};

use raft::eraftpb::Entry;

use super::pending::RequestId;

/// Ids remembered; at 24 bytes of id and two copies, about 0.8 MB.
pub const CAPACITY: usize = 16_384;

#[derive(Debug, Default)]
pub struct SeenProposals {
    ids: BTreeSet<RequestId>,
    order: VecDeque<RequestId>,
}

impl SeenProposals {
    /// The ids in the recovered log's entries.
    pub fn from_log(entries: &[Entry]) -> Self {
        let mut seen = SeenProposals::default();
        seen.remember(entries);
        seen
    }

    /// Remembers the ids of entries entering this node's log.
    pub fn remember(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let Some(id) = RequestId::decode(&entry.context) {
                self.first_sighting(id);
            }
        }
    }

    /// Whether `id` is new; remembers it either way.
    pub fn first_sighting(&mut self, id: RequestId) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        true
    }

    /// Keeps the entries seen for the first time (and those without an id).
    pub fn keep_first_sightings(&mut self, entries: Vec<Entry>) -> Vec<Entry> {
        entries
            .into_iter()
            .filter(|e| RequestId::decode(&e.context).is_none_or(|id| self.first_sighting(id)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> RequestId {
        RequestId {
            node_id: 2,
            incarnation: 7,
            seq,
        }
    }

    #[test]
    fn an_id_is_new_once_and_forgotten_past_the_window() {
        let mut seen = SeenProposals::default();
        assert!(seen.first_sighting(id(1)));
        assert!(!seen.first_sighting(id(1)));
        for seq in 2..=CAPACITY as u64 + 1 {
            assert!(seen.first_sighting(id(seq)));
        }
        assert!(seen.first_sighting(id(1)), "the oldest id left the window");
        assert!(!seen.first_sighting(id(CAPACITY as u64 + 1)));
    }

    #[test]
    fn the_log_seeds_the_ids_and_entries_without_one_pass() {
        let entry = |context: Vec<u8>| Entry {
            context: context.into(),
            ..Default::default()
        };
        let mut seen = SeenProposals::from_log(&[entry(id(1).encode())]);
        let kept = seen.keep_first_sightings(vec![
            entry(id(1).encode()),
            entry(Vec::new()),
            entry(id(2).encode()),
            entry(id(2).encode()),
        ]);
        let contexts: Vec<&[u8]> = kept.iter().map(|e| &e.context[..]).collect();
        assert_eq!(contexts, vec![&[][..], &id(2).encode()[..]]);
    }
}
