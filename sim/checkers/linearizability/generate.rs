//! Generated histories of known verdict, for benchmarks (`lincheck --generate`,
//! `ci/bench-lincheck.sh`): concurrent clients of a correct store, written in the
//! golden formats — Porcupine's key/value lines (append / put / get on ten keys)
//! or a Jepsen etcd log (read / write / cas on one register).
//!
//! The store is simulated: each operation takes effect at one moment between its
//! invocation and its completion, so the history is linearizable. One injected
//! fault makes it not:
//! - a stale read: a read answers what an earlier read saw, though a write invoked
//!   after that read completed has completed since (values and appended tokens
//!   are unique, so nothing brings the old value back);
//! - a lost write (key/value only): an append is acknowledged but never applied,
//!   and its client's next operation reads that key — the token is missing.
//!
//! Deterministic: the same arguments give the same text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The file format, and so the object checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Porcupine's key/value lines, ten keys.
    Kv,
    /// A Jepsen etcd log: one compare-and-set register.
    Etcd,
}

/// The fault that makes the history not linearizable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    StaleRead,
    LostWrite,
}

const KV_KEYS: u64 = 10;

/// A seeded generator (splitmix64): the same seed, the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone)]
enum Op {
    Get(u64),
    Put(u64, String),
    Append(u64, String),
    Read,
    Write(i64),
    Cas(i64, i64),
}

impl Op {
    fn key(&self) -> u64 {
        match self {
            Op::Get(k) | Op::Put(k, _) | Op::Append(k, _) => *k,
            _ => 0,
        }
    }

    fn is_read(&self) -> bool {
        matches!(self, Op::Get(_) | Op::Read)
    }
}

/// A value of the simulated store: a string (key/value) or an integer register.
#[derive(Clone, PartialEq)]
enum Value {
    Text(String),
    Int(Option<i64>),
}

struct InFlight {
    op: Op,
    /// What it answered, once it took effect.
    answer: Option<Answer>,
    /// Inject the stale read here.
    stale: bool,
    /// Inject the lost write here.
    lost: bool,
    /// For a write: the newest value a completed read had seen when it was invoked.
    seen_before: Option<Value>,
}

#[derive(Clone)]
enum Answer {
    Value(Value),
    Swapped(bool),
    Done,
}

struct Store {
    shape: Shape,
    values: BTreeMap<u64, Value>,
    /// Per key: what the newest completed read saw.
    last_read: BTreeMap<u64, Value>,
    /// Per key: a value surely stale for a read invoked now.
    stale: BTreeMap<u64, Value>,
}

impl Store {
    fn initial(&self) -> Value {
        match self.shape {
            Shape::Kv => Value::Text(String::new()),
            Shape::Etcd => Value::Int(None),
        }
    }

    fn get(&self, key: u64) -> Value {
        self.values
            .get(&key)
            .cloned()
            .unwrap_or_else(|| self.initial())
    }

    /// Takes `op` into effect; returns its answer.
    fn apply(&mut self, op: &Op, lost: bool) -> Answer {
        let key = op.key();
        let old = self.get(key);
        let new = match (op, &old) {
            (Op::Get(_) | Op::Read, _) => return Answer::Value(old),
            (Op::Put(_, v), _) => Value::Text(v.clone()),
            (Op::Append(_, v), Value::Text(s)) => Value::Text(format!("{s}{v}")),
            (Op::Write(v), _) => Value::Int(Some(*v)),
            (Op::Cas(from, to), Value::Int(current)) => {
                if *current != Some(*from) {
                    return Answer::Swapped(false);
                }
                Value::Int(Some(*to))
            }
            _ => unreachable!("operation of the other shape"),
        };
        if !lost {
            self.values.insert(key, new);
        }
        match op {
            Op::Cas(..) => Answer::Swapped(true),
            _ => Answer::Done,
        }
    }
}

/// A history of `ops` operations by `clients` concurrent clients, with `fault`.
pub fn history(shape: Shape, clients: usize, ops: usize, fault: Fault, seed: u64) -> String {
    assert!(
        !(shape == Shape::Etcd && fault == Fault::LostWrite),
        "a lost register write is not always detectable; use a stale read"
    );
    let clients = clients.max(1);
    let mut rng = Rng(seed ^ 0x11ce_c4ec);
    let mut store = Store {
        shape,
        values: BTreeMap::new(),
        last_read: BTreeMap::new(),
        stale: BTreeMap::new(),
    };
    let mut flight: Vec<Option<InFlight>> = (0..clients).map(|_| None).collect();
    // After a lost write, its client reads the key next, and nobody puts to that
    // key any more (a put could explain the missing token).
    let mut read_next: BTreeMap<usize, u64> = BTreeMap::new();
    let mut no_puts_on: Option<u64> = None;
    let mut invoked = 0;
    let mut injected = fault == Fault::None;
    let mut text = String::new();
    let mut last_seen: BTreeMap<usize, i64> = BTreeMap::new();
    // Past `ops` only to place a fault not yet placed, or a lost write's read.
    while invoked < ops || !injected || !read_next.is_empty() || flight.iter().any(Option::is_some)
    {
        let c = rng.below(clients as u64) as usize;
        let Some(f) = &mut flight[c] else {
            if invoked >= ops && injected && !read_next.contains_key(&c) {
                continue;
            }
            let mut op = match read_next.remove(&c) {
                Some(key) => Op::Get(key),
                None => next_op(shape, &mut rng, c, invoked, last_seen.get(&c).copied()),
            };
            if let Op::Put(key, v) = &op {
                if no_puts_on == Some(*key) {
                    op = Op::Append(*key, v.clone());
                }
            }
            // The fault goes near the middle, where the search is deepest.
            let due = !injected && invoked >= ops / 2;
            let key = op.key();
            let stale =
                due && fault == Fault::StaleRead && op.is_read() && store.stale.contains_key(&key);
            let putting = flight
                .iter()
                .flatten()
                .any(|f| matches!(f.op, Op::Put(k, _) if k == key));
            let lost = due && fault == Fault::LostWrite && matches!(op, Op::Append(..)) && !putting;
            injected |= stale || lost;
            if lost {
                no_puts_on = Some(key);
            }
            let answer = stale.then(|| Answer::Value(store.stale[&key].clone()));
            let seen_before = (!op.is_read())
                .then(|| store.last_read.get(&key).cloned())
                .flatten();
            write_line(&mut text, shape, c, "invoke", &op, None);
            invoked += 1;
            flight[c] = Some(InFlight {
                op,
                answer,
                stale,
                lost,
                seen_before,
            });
            continue;
        };
        if f.answer.is_none() {
            f.answer = Some(store.apply(&f.op, f.lost));
            continue;
        }
        let f = flight[c].take().expect("in flight");
        let answer = f.answer.expect("took effect");
        if let (Answer::Value(Value::Int(Some(v))), false) = (&answer, f.stale) {
            last_seen.insert(c, *v);
        }
        if let Op::Write(v) | Op::Cas(_, v) = f.op {
            if !matches!(answer, Answer::Swapped(false)) {
                last_seen.insert(c, v);
            }
        }
        let key = f.op.key();
        match (&answer, f.seen_before) {
            (Answer::Value(v), _) if !f.stale => {
                store.last_read.insert(key, v.clone());
            }
            // A write took effect after that read completed: its value is stale.
            (Answer::Done | Answer::Swapped(true), Some(seen)) if !f.lost => {
                store.stale.insert(key, seen);
            }
            _ => {}
        }
        if f.lost {
            read_next.insert(c, f.op.key());
        }
        write_line(&mut text, shape, c, "ok", &f.op, Some(&answer));
    }
    text
}

fn next_op(shape: Shape, rng: &mut Rng, client: usize, n: usize, seen: Option<i64>) -> Op {
    let roll = rng.below(100);
    match shape {
        Shape::Kv => {
            let key = rng.below(KV_KEYS);
            let token = format!("x {client} {n} y");
            match roll {
                0..=44 => Op::Get(key),
                45..=49 => Op::Put(key, token),
                _ => Op::Append(key, token),
            }
        }
        Shape::Etcd => {
            // Unique values: a stale value is never written again.
            let value = n as i64;
            match (roll, seen) {
                (0..=39, _) => Op::Read,
                (40..=69, Some(from)) => Op::Cas(from, value),
                _ => Op::Write(value),
            }
        }
    }
}

fn write_line(
    text: &mut String,
    shape: Shape,
    client: usize,
    kind: &str,
    op: &Op,
    answer: Option<&Answer>,
) {
    let _ = match shape {
        Shape::Kv => {
            let (f, key, value) = match (op, answer) {
                (Op::Get(k), Some(Answer::Value(Value::Text(s)))) => ("get", k, format!("\"{s}\"")),
                (Op::Get(k), _) => ("get", k, "nil".into()),
                (Op::Put(k, v), _) => ("put", k, format!("\"{v}\"")),
                (Op::Append(k, v), _) => ("append", k, format!("\"{v}\"")),
                _ => unreachable!("register operation in a key/value history"),
            };
            writeln!(
                text,
                "{{:process {client}, :type :{kind}, :f :{f}, :key \"{key}\", :value {value}}}"
            )
        }
        Shape::Etcd => {
            let (kind, f, value) = match (op, answer) {
                (Op::Read, Some(Answer::Value(Value::Int(v)))) => {
                    (kind, "read", v.map_or("nil".into(), |v| v.to_string()))
                }
                (Op::Read, _) => (kind, "read", "nil".into()),
                (Op::Write(v), _) => (kind, "write", v.to_string()),
                (Op::Cas(from, to), Some(Answer::Swapped(false))) => {
                    ("fail", "cas", format!("[{from} {to}]"))
                }
                (Op::Cas(from, to), _) => (kind, "cas", format!("[{from} {to}]")),
                _ => unreachable!("key/value operation in a register history"),
            };
            writeln!(text, "INFO  jepsen.util - {client}\t:{kind}\t:{f}\t{value}")
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::linearizability::files::decide;

    /// The generated verdicts hold: correct stores give linearizable histories,
    /// each injected fault one that is not.
    #[test]
    fn generated_histories_have_their_verdicts() {
        for seed in 0..100 {
            for (shape, fault, expected) in [
                (Shape::Kv, Fault::None, true),
                (Shape::Kv, Fault::StaleRead, false),
                (Shape::Kv, Fault::LostWrite, false),
                (Shape::Etcd, Fault::None, true),
                (Shape::Etcd, Fault::StaleRead, false),
            ] {
                let clients = 1 + seed as usize % 6;
                let text = history(shape, clients, 60, fault, seed);
                let got = decide(&text, 10_000_000).unwrap();
                assert_eq!(
                    got,
                    Some(expected),
                    "{shape:?} {fault:?} seed {seed}:\n{text}"
                );
            }
        }
    }

    #[test]
    fn the_same_arguments_give_the_same_history() {
        let a = history(Shape::Kv, 5, 100, Fault::StaleRead, 3);
        assert_eq!(a, history(Shape::Kv, 5, 100, Fault::StaleRead, 3));
        assert_ne!(a, history(Shape::Kv, 5, 100, Fault::StaleRead, 4));
    }
}
