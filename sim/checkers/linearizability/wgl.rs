//! The Wing–Gong–Lowe search for a linearization, with Lowe's memoisation of
//! (linearized set, state) pairs (as in Porcupine).
//!
//! Calls and returns are laid out in time order in a doubly linked list. The search
//! walks the list: at a call it tries to linearize that operation now (the model
//! must accept its output in the current state), lifting the call and its return
//! out of the list; at a return whose operation is not yet linearized it
//! backtracks. A (set, state) pair already explored is never explored again.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    /// The state after `input` answered `output` (None: `output` is impossible). An
    /// unknown output (`None`) accepts any answer.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history. `ret` is `u64::MAX` for an operation whose outcome
/// is unknown: it may take effect at any point after its call, or never.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation<I, O> {
    pub client: u64,
    pub input: I,
    pub output: Option<O>,
    pub call: u64,
    pub ret: u64,
}

#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
    /// For a call: the list index of its return.
    partner: usize,
}

const NIL: usize = usize::MAX;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Whether `ops` has a linearization under `model`.
pub fn linearizable<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>]) -> bool {
    linearizable_within(model, ops, u64::MAX).expect("an unbounded search decides")
}

/// Whether `ops` has a linearization under `model`, deciding within `max_steps`
/// search steps (`None`: undecided). Proving a history *not* linearizable means
/// exhausting the search, which can grow exponentially with the number of
/// operations that are pending at once (unknown outcomes stay pending forever).
pub fn linearizable_within<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Option<bool> {
    let n = ops.len();
    if n == 0 {
        return Some(true);
    }
    // (time, is_return, op): calls sort before returns at equal times (concurrent).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        events.push((op.ret, true, i));
    }
    events.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    // Node 0 is the head sentinel; event k is node k + 1.
    let mut nodes = vec![
        Node {
            op: NIL,
            is_call: false,
            prev: NIL,
            next: 1,
            partner: NIL,
        };
        2 * n + 1
    ];
    let mut return_node = vec![0; n];
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        let idx = k + 1;
        nodes[idx] = Node {
            op,
            is_call: !is_ret,
            prev: idx - 1,
            next: if idx == 2 * n { NIL } else { idx + 1 },
            partner: NIL,
        };
        if is_ret {
            return_node[op] = idx;
        }
    }
    for idx in 1..=2 * n {
        if nodes[idx].is_call {
            nodes[idx].partner = return_node[nodes[idx].op];
        }
    }
    let lift = |nodes: &mut Vec<Node>, call: usize| {
        for idx in [call, nodes[call].partner] {
            let (p, nx) = (nodes[idx].prev, nodes[idx].next);
            nodes[p].next = nx;
            if nx != NIL {
                nodes[nx].prev = p;
            }
        }
    };
    let unlift = |nodes: &mut Vec<Node>, call: usize| {
        for idx in [nodes[call].partner, call] {
            let (p, nx) = (nodes[idx].prev, nodes[idx].next);
            nodes[p].next = idx;
            if nx != NIL {
                nodes[nx].prev = idx;
            }
        }
    };
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut linearized = Bits::new(n);
    let mut entry = nodes[0].next;
    let mut steps = 0u64;
    while nodes[0].next != NIL {
        steps += 1;
        if steps > max_steps {
            return None;
        }
        if entry == NIL {
            // Only possible after lifting everything; the loop condition ends it.
            break;
        }
        let node = nodes[entry];
        if node.is_call {
            let op = &ops[node.op];
            if let Some(next_state) = model.step(&state, &op.input, op.output.as_ref()) {
                let mut next_lin = linearized.clone();
                next_lin.set(node.op);
                if cache.insert((next_lin.clone(), next_state.clone())) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = next_lin;
                    lift(&mut nodes, entry);
                    entry = nodes[0].next;
                    continue;
                }
            }
            entry = node.next;
        } else {
            let Some((call, previous)) = stack.pop() else {
                return Some(false);
            };
            state = previous;
            linearized.clear(nodes[call].op);
            unlift(&mut nodes, call);
            entry = nodes[call].next;
        }
    }
    Some(true)
}
