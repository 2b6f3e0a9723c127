//! The Wing–Gong–Lowe search for a linearization, with Lowe's memoisation of
//! (linearized set, state) pairs (as in Porcupine).
//!
//! Calls and returns are laid out in time order in a doubly linked list. The search
//! walks the list: at a call it tries to linearize that operation now (the model
//! must accept its output in the current state), lifting the call and its return
//! out of the list; at a return whose operation is not yet linearized it
//! backtracks. A (set, state) pair already explored is never explored again.
//!
//! Costs are kept flat (`memo.rs`): states are interned to numbers and each
//! (state, operation) transition is computed once; the linearized set is one bitset
//! updated in place and hashed incrementally, stored in the memo by the part that
//! varies. Every hash is fixed, so the search is deterministic.
//!
//! Operations of unknown outcome (`ret == u64::MAX`) have no return: the search
//! succeeds once every other operation is linearized, and an unknown operation left
//! over never took effect (or took effect after everything, which nobody saw).
//!
//! Prunings, each sound (it never drops the only linearizations) and each checked
//! against the brute-force oracle (`differential.rs`):
//! - an unknown operation is never linearized where it would not change the state
//!   (leaving it out is the same), and of identical unknown ones the earlier-called
//!   goes first (swapping them gives the same linearization);
//! - a read-only operation (the model says which) that fits is linearized at once
//!   and nothing else is tried for it: a linearization that places it later can
//!   place it here instead, since it changes no state;
//! - a state from which one of the first read-only operations due can no longer
//!   fit is abandoned at once ([`Model::may_reach`]: a string read must extend the
//!   current string or a put's value with appends that may still come);
//! - leaving a state that an operation not yet linearized needs, when nothing left
//!   can bring it back, is abandoned at once ([`Model::needs`]), and `precheck.rs`
//!   proves a stale read before any search.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};

use super::memo::{Interner, Linearized, Memo, Table, IMPOSSIBLE};
use super::precheck;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input: PartialEq;
    type Output: PartialEq;
    fn init(&self) -> Self::State;
    /// The state after `input` answered `output` (None: `output` is impossible). An
    /// unknown output (`None`) accepts any answer.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
    /// Whether `input` answering `output` never changes the state where it is
    /// possible (a read, a compare-and-set that did not swap). The search then
    /// linearizes it at the first point it fits and tries nothing else for it.
    fn is_read_only(&self, _input: &Self::Input, _output: Option<&Self::Output>) -> bool {
        false
    }

    /// The one state in which `input` answering `output` fits, if there is one (a
    /// read of a value, a compare-and-set that swapped).
    fn needs(&self, _input: &Self::Input, _output: Option<&Self::Output>) -> Option<Self::State> {
        None
    }

    /// A state `input` answering `output` may leave, whatever the state before or
    /// only in some states (a write, a compare-and-set that may have swapped), and
    /// whether it certainly leaves it when it takes effect (a write, a swap).
    /// With [`Model::needs`], this proves some histories not linearizable before
    /// any search (`precheck.rs`), and lets the search abandon a transition out of
    /// a state that an operation not yet linearized needs and nothing left can
    /// bring back. A model that implements `needs` must name here every
    /// operation that can produce a state.
    fn may_produce(
        &self,
        _input: &Self::Input,
        _output: Option<&Self::Output>,
    ) -> Option<(Self::State, bool)> {
        None
    }

    /// Whether the model prunes with [`Model::may_reach`] (the search asks
    /// nothing if not).
    const PRUNES: bool = false;

    /// Whether the read-only `goal` could fit after operations that only build on
    /// `state` run (for a string: appends), at a glance. The search caches it per
    /// (state, goal) and hands it to [`Model::may_reach`].
    fn may_lead_to(
        &self,
        _state: &Self::State,
        _goal_input: &Self::Input,
        _goal_output: Option<&Self::Output>,
    ) -> bool {
        true
    }

    /// Whether the read-only `goal` can still fit after some of the `window`
    /// operations run, in some order, on `state` (`leads`: what
    /// [`Model::may_lead_to`] said). The window holds every operation not yet
    /// linearized that is called before the goal returns: only those can go
    /// before it. False only when certain: the search then abandons `state`.
    fn may_reach(
        &self,
        _state: &Self::State,
        _leads: bool,
        _goal: (&Self::Input, Option<&Self::Output>),
        _window: &[&Self::Input],
    ) -> bool {
        true
    }
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

impl<I, O> Operation<I, O> {
    /// Whether the outcome is unknown (no return).
    pub fn is_pending(&self) -> bool {
        self.ret == u64::MAX
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
    search(model, ops, max_steps, None)
}

/// [`linearizable_within`] that also gives up (`None`) soon after `cancel` is
/// raised: another thread found the verdict, or time ran out.
pub fn search<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
    cancel: Option<&AtomicBool>,
) -> Option<bool> {
    Search::new(model, ops).run(max_steps, cancel)
}

const NIL: usize = usize::MAX;
/// How many read-only operations due the search checks can still fit.
const GOALS_CHECKED: usize = 3;
/// How many earlier unknown-outcome operations are searched for an identical one.
const TWINS_SEARCHED: usize = 64;
/// How many steps pass between two looks at the cancel flag.
const CANCEL_EVERY_STEPS: u64 = 1 << 12;

#[derive(Clone, Copy)]
struct Node {
    op: usize,
    prev: usize,
    next: usize,
    /// For a call: the node of its return (NIL for an unknown outcome).
    /// For a return: NIL.
    ret: usize,
    is_call: bool,
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Input, M::Output>],
    /// Node 0 is the head sentinel.
    nodes: Vec<Node>,
    /// For an unknown-outcome operation: an identical one called earlier.
    earlier_twin: Vec<Option<usize>>,
    /// Per operation: whether the model calls it read-only.
    read_only: Vec<bool>,
    /// Operations of known outcome, in call order, then the others.
    known_in_call_order: Vec<usize>,
    pending: Vec<usize>,
    states: Interner<M::State>,
    /// (state, op) → the state after it (or IMPOSSIBLE).
    transitions: Table,
    /// (state, read-only op) → [`Model::may_lead_to`], 0 or 1.
    leads: Table,
    /// Per operation: the interned state it [`Model::needs`] / [`Model::may_produce`].
    need: Vec<Option<u32>>,
    produce: Vec<Option<(u32, bool)>>,
    /// Per interned state (those named by `need` or `produce`): how many
    /// operations not yet linearized need it, and how many may produce it.
    needers: Vec<u32>,
    producers: Vec<u32>,
    /// Scratch space for [`Search::viable`].
    window: Vec<&'a M::Input>,
    memo: Memo,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [Operation<M::Input, M::Output>]) -> Self {
        let n = ops.len();
        // (time, is_return, op): calls sort before returns at equal times (concurrent).
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, false, i));
            if !op.is_pending() {
                events.push((op.ret, true, i));
            }
        }
        events.sort_unstable();
        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Node {
            op: NIL,
            prev: NIL,
            next: NIL,
            ret: NIL,
            is_call: false,
        });
        let mut call_node = vec![NIL; n];
        for &(_, is_ret, op) in &events {
            let idx = nodes.len();
            nodes[idx - 1].next = idx;
            nodes.push(Node {
                op,
                prev: idx - 1,
                next: NIL,
                ret: NIL,
                is_call: !is_ret,
            });
            if is_ret {
                nodes[call_node[op]].ret = idx;
            } else {
                call_node[op] = idx;
            }
        }
        let mut earlier_twin = vec![None; n];
        let mut known_in_call_order = Vec::new();
        let mut pending: Vec<usize> = Vec::new();
        for &(_, is_ret, op) in &events {
            if is_ret {
                continue;
            }
            if !ops[op].is_pending() {
                known_in_call_order.push(op);
                continue;
            }
            // The nearest among the last few (a bound that only forgoes pruning).
            earlier_twin[op] = pending
                .iter()
                .rev()
                .take(TWINS_SEARCHED)
                .copied()
                .find(|&i| ops[i].input == ops[op].input && ops[i].output == ops[op].output);
            pending.push(op);
        }
        let mut states = Interner::default();
        states.intern(model.init());
        let mut intern = |s: Option<M::State>| s.map(|s| states.intern(s));
        let need: Vec<Option<u32>> = ops
            .iter()
            .map(|op| intern(model.needs(&op.input, op.output.as_ref())))
            .collect();
        let produce: Vec<Option<(u32, bool)>> = ops
            .iter()
            .map(|op| {
                let produced = model.may_produce(&op.input, op.output.as_ref());
                produced.map(|(s, surely)| (states.intern(s), surely))
            })
            .collect();
        let named = states.len();
        let mut needers = vec![0; named];
        let mut producers = vec![0; named];
        for (i, op) in ops.iter().enumerate() {
            if let (Some(s), false) = (need[i], op.is_pending()) {
                needers[s as usize] += 1;
            }
            if let Some((s, _)) = produce[i] {
                producers[s as usize] += 1;
            }
        }
        Search {
            model,
            ops,
            nodes,
            earlier_twin,
            read_only: ops
                .iter()
                .map(|op| model.is_read_only(&op.input, op.output.as_ref()))
                .collect(),
            known_in_call_order,
            pending,
            states,
            need,
            produce,
            needers,
            producers,
            transitions: Table::default(),
            leads: Table::default(),
            window: Vec::new(),
            memo: Memo::default(),
        }
    }

    /// The state after `op` in `state`, computed once per pair.
    fn transition(&mut self, state: u32, op: usize) -> Option<u32> {
        let key = (u64::from(state) << 32) | op as u64;
        match self.transitions.get(key) {
            Some(IMPOSSIBLE) => return None,
            Some(next) => return Some(next),
            None => {}
        }
        let o = &self.ops[op];
        let next = self
            .model
            .step(self.states.get(state), &o.input, o.output.as_ref())
            .map(|s| self.states.intern(s));
        self.transitions.set(key, next.unwrap_or(IMPOSSIBLE));
        next
    }

    fn lift(&mut self, call: usize) {
        for idx in [call, self.nodes[call].ret] {
            if idx == NIL {
                continue;
            }
            let Node { prev, next, .. } = self.nodes[idx];
            self.nodes[prev].next = next;
            if next != NIL {
                self.nodes[next].prev = prev;
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        for idx in [self.nodes[call].ret, call] {
            if idx == NIL {
                continue;
            }
            let Node { prev, next, .. } = self.nodes[idx];
            self.nodes[prev].next = idx;
            if next != NIL {
                self.nodes[next].prev = idx;
            }
        }
    }

    /// Counts `op` as linearized (`+1`: undone) for [`Search::abandons`].
    fn count(&mut self, op: usize, linearized: bool) {
        let step = |n: &mut u32| *n = if linearized { *n - 1 } else { *n + 1 };
        if let (Some(s), false) = (self.need[op], self.ops[op].is_pending()) {
            step(&mut self.needers[s as usize]);
        }
        if let Some((s, _)) = self.produce[op] {
            step(&mut self.producers[s as usize]);
        }
    }

    /// Whether leaving `state` strands an operation not yet linearized that needs
    /// it: nothing left may bring it back.
    fn abandons(&self, state: u32) -> bool {
        let s = state as usize;
        s < self.needers.len() && self.needers[s] > 0 && self.producers[s] == 0
    }

    /// Whether the first few read-only operations due (returns not yet linearized)
    /// can still fit, as far as the model can tell cheaply: every operation due
    /// must go before any operation called after its return.
    fn viable(&mut self, state: u32) -> bool {
        if !M::PRUNES {
            return true;
        }
        let mut checked = 0;
        let mut window = std::mem::take(&mut self.window);
        window.clear();
        let mut at = self.nodes[0].next;
        let mut viable = true;
        while at != NIL && checked < GOALS_CHECKED {
            let node = self.nodes[at];
            at = node.next;
            if node.is_call {
                window.push(&self.ops[node.op].input);
                continue;
            }
            if !self.read_only[node.op] {
                continue;
            }
            checked += 1;
            let goal = &self.ops[node.op];
            let key = (u64::from(state) << 32) | node.op as u64;
            let leads = match self.leads.get(key) {
                Some(known) => known == 1,
                None => {
                    let leads = self.model.may_lead_to(
                        self.states.get(state),
                        &goal.input,
                        goal.output.as_ref(),
                    );
                    self.leads.set(key, u32::from(leads));
                    leads
                }
            };
            let goal = (&goal.input, goal.output.as_ref());
            if !self
                .model
                .may_reach(self.states.get(state), leads, goal, &window)
            {
                viable = false;
                break;
            }
        }
        self.window = window;
        viable
    }

    /// Whether `precheck.rs` proves the history not linearizable.
    fn stranded(&self) -> bool {
        if self.need.iter().all(Option::is_none) {
            return false;
        }
        let ops: Vec<precheck::Op> = (0..self.ops.len())
            .map(|i| precheck::Op {
                call: self.ops[i].call,
                ret: (!self.ops[i].is_pending()).then_some(self.ops[i].ret),
                needs: self.need[i],
                produces: self.produce[i],
            })
            .collect();
        precheck::stranded(&ops, 0).is_some()
    }

    fn run(mut self, max_steps: u64, cancel: Option<&AtomicBool>) -> Option<bool> {
        if self.stranded() {
            return Some(false);
        }
        let mut definite_left = self.known_in_call_order.len();
        let mut linearized = Linearized::new(&self.known_in_call_order, &self.pending);
        let mut state = 0u32;
        // (call node, state before it)
        let mut stack: Vec<(usize, u32)> = Vec::new();
        let mut entry = self.nodes[0].next;
        let mut steps = 0u64;
        while definite_left > 0 {
            steps += 1;
            if steps > max_steps {
                return None;
            }
            if steps.is_multiple_of(CANCEL_EVERY_STEPS)
                && cancel.is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return None;
            }
            let node = self.nodes[entry];
            let mut backtrack = !node.is_call;
            if node.is_call {
                let op = node.op;
                let pending = node.ret == NIL;
                let twin_waits = self.earlier_twin[op].is_some_and(|i| !linearized.contains(i));
                match self.transition(state, op) {
                    Some(next) if !twin_waits => {
                        let useless = pending && next == state;
                        linearized.insert(op);
                        if !useless && self.memo.insert(&linearized, next) {
                            stack.push((entry, state));
                            self.count(op, true);
                            let left = state;
                            state = next;
                            definite_left -= usize::from(!pending);
                            self.lift(entry);
                            entry = self.nodes[0].next;
                            // A state the model rules out is a dead end at once.
                            let stranded = left != next && self.abandons(left);
                            if definite_left == 0 || !stranded && self.viable(state) {
                                continue;
                            }
                        } else {
                            linearized.remove(op);
                        }
                        // A read-only operation that fits here belongs here: a
                        // linearization placing it later can place it here instead.
                        // This one was explored already, so it is a dead end.
                        backtrack = self.read_only[op] || linearized.contains(op);
                    }
                    _ => {}
                }
            }
            if !backtrack {
                entry = node.next;
                continue;
            }
            // Undo the last choice; a read-only one has no alternative, so undo on.
            loop {
                let Some((call, previous)) = stack.pop() else {
                    return Some(false);
                };
                let op = self.nodes[call].op;
                self.count(op, false);
                state = previous;
                linearized.remove(op);
                definite_left += usize::from(self.nodes[call].ret != NIL);
                self.unlift(call);
                entry = self.nodes[call].next;
                if !self.read_only[op] {
                    break;
                }
            }
        }
        Some(true)
    }
}
