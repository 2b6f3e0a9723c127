//! The search's bookkeeping, kept flat and deterministic: the set of linearized
//! operations (a bitset hashed incrementally), the memo of explored (set, state)
//! pairs, state interning, and the open-addressing table under both. Every hash is
//! fixed (no per-process random keys), and nothing here is ever iterated, so no
//! layout can leak into a verdict.

use std::hash::{Hash, Hasher};

pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value no table holds: "impossible" for a transition.
pub const IMPOSSIBLE: u32 = u32::MAX - 1;
const EMPTY: u32 = u32::MAX;

/// Open addressing from an exact 64-bit key to a number below [`IMPOSSIBLE`] or
/// equal to it (linear probing, at most half full).
#[derive(Default)]
pub struct Table {
    slots: Vec<(u64, u32)>,
    len: usize,
}

impl Table {
    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = splitmix64(key) as usize & mask;
        while self.slots[i].1 != EMPTY && self.slots[i].0 != key {
            i = (i + 1) & mask;
        }
        i
    }

    pub fn get(&self, key: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let v = self.slots[self.slot(key)].1;
        (v != EMPTY).then_some(v)
    }

    pub fn set(&mut self, key: u64, value: u32) {
        debug_assert!(value != EMPTY);
        if 2 * (self.len + 1) > self.slots.len() {
            let size = (2 * self.slots.len()).max(64);
            let old = std::mem::replace(&mut self.slots, vec![(0, EMPTY); size]);
            for (k, v) in old.into_iter().filter(|s| s.1 != EMPTY) {
                let i = self.slot(k);
                self.slots[i] = (k, v);
            }
        }
        let i = self.slot(key);
        if self.slots[i].1 == EMPTY {
            self.len += 1;
        }
        self.slots[i] = (key, value);
    }
}

/// Equal states get equal numbers.
pub struct Interner<S> {
    states: Vec<S>,
    /// Per state: the previous state with the same hash.
    chain: Vec<u32>,
    /// Hash → the newest state with it.
    heads: Table,
}

impl<S> Default for Interner<S> {
    fn default() -> Self {
        Interner {
            states: Vec::new(),
            chain: Vec::new(),
            heads: Table::default(),
        }
    }
}

impl<S: Eq + Hash> Interner<S> {
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn get(&self, id: u32) -> &S {
        &self.states[id as usize]
    }

    pub fn intern(&mut self, state: S) -> u32 {
        let mut hasher = FxHasher::default();
        state.hash(&mut hasher);
        let h = hasher.finish();
        let head = self.heads.get(h).unwrap_or(EMPTY);
        let mut i = head;
        while i != EMPTY {
            if self.states[i as usize] == state {
                return i;
            }
            i = self.chain[i as usize];
        }
        let id = u32::try_from(self.states.len())
            .ok()
            .filter(|&id| id < IMPOSSIBLE)
            .expect("fewer than 2^32 - 2 states");
        self.states.push(state);
        self.chain.push(head);
        self.heads.set(h, id);
        id
    }
}

/// The set of linearized operations. Operations of known outcome take the low
/// bits in call order, those of unknown outcome the words after them; the set
/// keeps how many leading words are full and where the last non-zero word of the
/// known part is, so the memo stores only the part that varies (with a few
/// operations in flight at a time: a word or two, however long the history).
pub struct Linearized {
    words: Vec<u64>,
    /// Per operation: its bit.
    bit: Vec<usize>,
    /// Words of operations of known outcome.
    known_words: usize,
    /// Bits in the last known word (64 if it is full-width).
    last_bits: u32,
    /// Leading known words with every bit set.
    full: usize,
    /// One past the last non-zero known word.
    top: usize,
    /// Zobrist hash: the XOR of one random word per member.
    pub hash: u64,
    zobrist: Vec<u64>,
}

impl Linearized {
    /// `known_in_call_order` and `pending` partition the operations.
    pub fn new(known_in_call_order: &[usize], pending: &[usize]) -> Self {
        let n = known_in_call_order.len() + pending.len();
        let known_words = known_in_call_order.len().div_ceil(64);
        let mut bit = vec![0; n];
        for (b, &op) in known_in_call_order.iter().enumerate() {
            bit[op] = b;
        }
        for (b, &op) in pending.iter().enumerate() {
            bit[op] = known_words * 64 + b;
        }
        let last_bits = match known_in_call_order.len() % 64 {
            0 => 64,
            r => r as u32,
        };
        Linearized {
            words: vec![0; known_words + pending.len().div_ceil(64)],
            bit,
            known_words,
            last_bits,
            full: 0,
            top: 0,
            hash: 0,
            zobrist: (0..n as u64).map(|i| splitmix64(i ^ 0x5eed)).collect(),
        }
    }

    /// The hash the set would have with `op` toggled.
    pub fn hash_with(&self, op: usize) -> u64 {
        self.hash ^ self.zobrist[op]
    }

    fn full_word(&self, w: usize) -> u64 {
        if w + 1 == self.known_words && self.last_bits < 64 {
            (1 << self.last_bits) - 1
        } else {
            u64::MAX
        }
    }

    pub fn contains(&self, op: usize) -> bool {
        let b = self.bit[op];
        self.words[b / 64] & (1 << (b % 64)) != 0
    }

    pub fn insert(&mut self, op: usize) {
        let b = self.bit[op];
        let w = b / 64;
        self.words[w] |= 1 << (b % 64);
        self.hash ^= self.zobrist[op];
        if w < self.known_words {
            self.top = self.top.max(w + 1);
            while self.full < self.known_words && self.words[self.full] == self.full_word(self.full)
            {
                self.full += 1;
            }
        }
    }

    pub fn remove(&mut self, op: usize) {
        let b = self.bit[op];
        let w = b / 64;
        self.words[w] &= !(1 << (b % 64));
        self.hash ^= self.zobrist[op];
        if w < self.known_words {
            self.full = self.full.min(w);
            while self.top > 0 && self.words[self.top - 1] == 0 {
                self.top -= 1;
            }
        }
    }

    /// The words that tell this set from another with the same `full`: the known
    /// words from `full` to `top`, then the unknown-outcome words.
    fn varying(&self) -> (usize, &[u64], &[u64]) {
        (
            self.full,
            &self.words[self.full..self.top.max(self.full)],
            &self.words[self.known_words..],
        )
    }
}

/// The (linearized set, state) pairs already explored.
#[derive(Default)]
pub struct Memo {
    /// Hash of (set, state) → the newest entry with it.
    heads: Table,
    /// Per entry: state, previous entry with the same hash, `full`, and where its
    /// words start in `words` (they end where the next entry's start).
    entries: Vec<(u32, u32, u32, usize)>,
    words: Vec<u64>,
}

impl Memo {
    /// Records (`set`, `state`); false if it was there already.
    pub fn insert(&mut self, set: &Linearized, state: u32) -> bool {
        let h = set.hash ^ splitmix64(u64::from(state));
        let (full, known, pending) = set.varying();
        let head = self.heads.get(h).unwrap_or(EMPTY);
        let mut i = head;
        while i != EMPTY {
            let (s, previous, f, start) = self.entries[i as usize];
            let end = self
                .entries
                .get(i as usize + 1)
                .map_or(self.words.len(), |e| e.3);
            let stored = &self.words[start..end];
            if s == state
                && f as usize == full
                && stored.len() == known.len() + pending.len()
                && stored[..known.len()] == *known
                && stored[known.len()..] == *pending
            {
                return false;
            }
            i = previous;
        }
        let id = u32::try_from(self.entries.len())
            .ok()
            .filter(|&id| id < IMPOSSIBLE)
            .expect("fewer than 2^32 - 2 memo entries");
        self.entries
            .push((state, head, full as u32, self.words.len()));
        self.words.extend_from_slice(known);
        self.words.extend_from_slice(pending);
        self.heads.set(h, id);
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A fixed, fast hash for states (rustc's Fx): deterministic across runs.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn finish(&self) -> u64 {
        splitmix64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal sets compare equal in the memo however they were reached, and the
    /// compressed form tells different sets apart (here 130 operations: three
    /// known words, the last partial, and a word of unknown outcomes).
    #[test]
    fn the_memo_tells_sets_apart_exactly() {
        let known: Vec<usize> = (0..130).collect();
        let pending: Vec<usize> = (130..140).collect();
        let mut a = Linearized::new(&known, &pending);
        let mut memo = Memo::default();
        assert!(memo.insert(&a, 0));
        assert!(!memo.insert(&a, 0));
        assert!(memo.insert(&a, 1));
        for op in 0..129 {
            a.insert(op);
        }
        assert_eq!((a.full, a.top), (2, 3));
        assert!(memo.insert(&a, 0));
        a.insert(129);
        assert_eq!((a.full, a.top), (3, 3));
        assert!(memo.insert(&a, 0));
        a.insert(135);
        assert!(memo.insert(&a, 0));
        // The same set reached another way.
        let mut b = Linearized::new(&known, &pending);
        for op in (0..140).rev().filter(|&op| op < 130 || op == 135) {
            b.insert(op);
        }
        assert_eq!(a.hash, b.hash);
        assert!(!memo.insert(&b, 0));
        b.remove(3);
        assert_eq!((b.full, b.top), (0, 3));
        assert!(memo.insert(&b, 0));
        b.insert(3);
        assert!(!memo.insert(&b, 0));
        // Zero words past `top` are not stored, so an empty set after removals
        // equals a fresh one.
        for op in 0..140 {
            if b.contains(op) {
                b.remove(op);
            }
        }
        assert_eq!((b.full, b.top, b.hash), (0, 0, 0));
        assert!(!memo.insert(&b, 0));
    }
}
