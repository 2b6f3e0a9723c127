//! A brute-force linearizability oracle for the differential tests, written apart
//! from the checker (no `wgl`, no `models`): it tries every order of the
//! operations that real time allows, on all keys at once (no per-key split), and
//! lets each operation of unknown outcome either take effect at some point after
//! its call or never. Only for histories of a few operations.

use std::collections::{BTreeMap, BTreeSet};

/// What an operation does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// A register read that returned this (None: absent).
    Read(Option<i64>),
    Write(i64),
    /// Compare-and-set that swapped (`Some(true)`), certainly did not (`Some(false)`),
    /// or whose outcome is unknown (`None`: swaps if it can).
    Cas {
        from: i64,
        to: i64,
        swapped: Option<bool>,
    },
    /// A string get that returned this.
    Get(String),
    Put(String),
    Append(String),
}

/// A key's value: registers start absent, strings start empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Value {
    Int(Option<i64>),
    Text(String),
}

/// One operation the history constrains. `call` and `ret` are positions in the
/// history's real-time order; `ret: None` means the outcome is unknown.
#[derive(Debug, Clone)]
pub struct Op {
    pub key: String,
    pub act: Act,
    pub call: usize,
    pub ret: Option<usize>,
}

/// The value of `key` after `act`, if `act`'s answer is possible in `value`.
fn apply(act: &Act, value: Option<&Value>) -> Option<Value> {
    let int = match value {
        Some(Value::Int(v)) => *v,
        _ => None,
    };
    let text = match value {
        Some(Value::Text(t)) => t.clone(),
        _ => String::new(),
    };
    match act {
        Act::Read(seen) => (*seen == int).then_some(Value::Int(int)),
        Act::Write(v) => Some(Value::Int(Some(*v))),
        Act::Cas { from, to, swapped } => {
            let matches = int == Some(*from);
            match swapped {
                Some(s) if *s != matches => None,
                _ if matches => Some(Value::Int(Some(*to))),
                _ => Some(Value::Int(int)),
            }
        }
        Act::Get(seen) => (*seen == text).then_some(Value::Text(text)),
        Act::Put(v) => Some(Value::Text(v.clone())),
        Act::Append(v) => Some(Value::Text(text + v)),
    }
}

/// Whether some order of `ops` respects real time (an operation that returned
/// before another was called comes first) and the sequential semantics, with every
/// operation of known outcome included.
pub fn linearizable(ops: &[Op]) -> bool {
    assert!(ops.len() <= 20, "the oracle is for small histories");
    let mut failed = BTreeSet::new();
    search(ops, 0, &BTreeMap::new(), &mut failed)
}

fn search(
    ops: &[Op],
    done: u32,
    state: &BTreeMap<String, Value>,
    failed: &mut BTreeSet<(u32, BTreeMap<String, Value>)>,
) -> bool {
    let required_done = ops
        .iter()
        .enumerate()
        .all(|(i, op)| op.ret.is_none() || done & (1 << i) != 0);
    if required_done {
        return true;
    }
    if failed.contains(&(done, state.clone())) {
        return false;
    }
    for (i, op) in ops.iter().enumerate() {
        if done & (1 << i) != 0 {
            continue;
        }
        // Everything that returned before this call must already be in the order.
        let blocked = ops
            .iter()
            .enumerate()
            .any(|(j, other)| done & (1 << j) == 0 && other.ret.is_some_and(|r| r < op.call));
        if blocked {
            continue;
        }
        if let Some(value) = apply(&op.act, state.get(&op.key)) {
            let mut next = state.clone();
            next.insert(op.key.clone(), value);
            if search(ops, done | (1 << i), &next, failed) {
                return true;
            }
        }
    }
    failed.insert((done, state.clone()));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(act: Act, call: usize, ret: Option<usize>) -> Op {
        Op {
            key: "k".into(),
            act,
            call,
            ret,
        }
    }

    /// The oracle itself on hand-checked cases (Herlihy & Wing's definition).
    #[test]
    fn the_oracle_decides_hand_checked_histories() {
        // write 1; then a read of absent: stale.
        let stale = [
            op(Act::Write(1), 0, Some(1)),
            op(Act::Read(None), 2, Some(3)),
        ];
        assert!(!linearizable(&stale));
        // Concurrent: the read may come first.
        let concurrent = [
            op(Act::Write(1), 0, Some(2)),
            op(Act::Read(None), 1, Some(3)),
        ];
        assert!(linearizable(&concurrent));
        // An unknown write may take effect late, or never.
        let late = [op(Act::Write(1), 0, None), op(Act::Read(None), 1, Some(2))];
        assert!(linearizable(&late));
        let seen = [
            op(Act::Write(1), 0, None),
            op(Act::Read(Some(1)), 5, Some(6)),
        ];
        assert!(linearizable(&seen));
        let flip = [
            op(Act::Write(1), 0, None),
            op(Act::Read(Some(1)), 1, Some(2)),
            op(Act::Read(None), 3, Some(4)),
        ];
        assert!(!linearizable(&flip));
        // A cas that did not swap needs a moment when the value differed.
        let no_swap = [
            op(Act::Write(1), 0, Some(1)),
            op(
                Act::Cas {
                    from: 1,
                    to: 2,
                    swapped: Some(false),
                },
                2,
                Some(3),
            ),
        ];
        assert!(!linearizable(&no_swap));
        // Keys are independent.
        let two_keys = [
            Op {
                key: "a".into(),
                act: Act::Put("x".into()),
                call: 0,
                ret: Some(1),
            },
            Op {
                key: "b".into(),
                act: Act::Get(String::new()),
                call: 2,
                ret: Some(3),
            },
            Op {
                key: "a".into(),
                act: Act::Append("y".into()),
                call: 4,
                ret: Some(5),
            },
            Op {
                key: "a".into(),
                act: Act::Get("xy".into()),
                call: 6,
                ret: Some(7),
            },
        ];
        assert!(linearizable(&two_keys));
    }
}
