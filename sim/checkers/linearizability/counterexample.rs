//! A failing check's shrunk sub-history as data, for the failure timeline
//! (`sim/timeline/`): the same key and operations the violation's message lists,
//! each with the trace events that invoked and completed it, and the longest
//! partial linearization the model accepts — the picture Porcupine's
//! visualisation draws for a history that is not linearizable.

use std::fmt::Debug;

use serde::Serialize;

use super::wgl::{Model, Operation};
use super::{first_failure, histories, is_read_register_write, is_read_write, models, Failure};
use crate::sim::trace::TraceEvent;

/// Orders tried before the longest partial linearization found so far is kept:
/// a shrunk history has a handful of operations, so this is never reached in
/// practice, and a cut-short search still yields a (shorter) valid prefix.
const PARTIAL_STEPS: u64 = 200_000;

/// The shrunk sub-history of the first key that is not linearizable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counterexample {
    /// `kv` (coordlab.Kv puts and gets) or `register` (etcd reads, writes, cas).
    pub workload: &'static str,
    pub key: String,
    /// Operations on the key in the whole history.
    pub total_ops: usize,
    /// The shrunk operations, in call order.
    pub ops: Vec<CounterOp>,
    /// Indices into `ops` of the longest order the model accepts that respects
    /// real time: no order takes in every operation with a known outcome.
    pub linearized: Vec<usize>,
}

/// One operation of the counterexample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterOp {
    pub client: u64,
    /// Sequence number and simulated time of the invoking event.
    pub call_seq: u64,
    pub call_ms: u64,
    /// The completing event (None: the outcome is unknown).
    pub ret_seq: Option<u64>,
    pub ret_ms: Option<u64>,
    pub input: String,
    /// What it answered (None: nothing, or unknown).
    pub output: Option<String>,
    /// The model's state after it, when it is in `linearized`.
    pub state_after: Option<String>,
}

/// The counterexample the linearizability checker reports for `events` (a
/// whole trace), if the check fails; None when it passes or is undecided.
pub fn counterexample(events: &[TraceEvent]) -> Option<Counterexample> {
    let kv = histories::from_trace(events);
    if let Some(f) = first_failure(&models::KvModel, &kv, is_read_write).ok()? {
        return Some(build(&models::KvModel, "kv", f, events));
    }
    let registers = histories::registers_from_trace(events);
    let f = first_failure(&models::CasRegister, &registers, is_read_register_write).ok()??;
    Some(build(&models::CasRegister, "register", f, events))
}

fn build<M: Model>(
    model: &M,
    workload: &'static str,
    failure: Failure<'_, M::Input, M::Output>,
    events: &[TraceEvent],
) -> Counterexample
where
    M::Input: Debug,
    M::Output: Debug,
    M::State: Debug,
{
    let mut ops = failure.shrunk;
    ops.sort_by_key(|op| op.call);
    let (linearized, states) = longest_partial_linearization(model, &ops);
    // Operation times are positions in `events`.
    let at = |pos: u64| &events[pos as usize];
    let mut counter_ops: Vec<CounterOp> = ops
        .iter()
        .map(|op| CounterOp {
            client: op.client,
            call_seq: at(op.call).seq,
            call_ms: at(op.call).time_ms,
            ret_seq: (!op.is_pending()).then(|| at(op.ret).seq),
            ret_ms: (!op.is_pending()).then(|| at(op.ret).time_ms),
            input: format!("{:?}", op.input),
            output: op.output.as_ref().map(|o| format!("{o:?}")),
            state_after: None,
        })
        .collect();
    for (&i, state) in linearized.iter().zip(states) {
        counter_ops[i].state_after = Some(format!("{state:?}"));
    }
    Counterexample {
        workload,
        key: failure.key.to_string(),
        total_ops: failure.total_ops,
        ops: counter_ops,
        linearized,
    }
}

/// The longest sequence of `ops` that respects real time (an operation that
/// returned before another was called comes first) and that the model accepts
/// from its initial state, with the state after each step. Exhaustive up to
/// [`PARTIAL_STEPS`]; ties go to the first found, so the answer is deterministic.
pub fn longest_partial_linearization<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
) -> (Vec<usize>, Vec<M::State>) {
    struct Search<'a, M: Model> {
        model: &'a M,
        ops: &'a [Operation<M::Input, M::Output>],
        done: Vec<bool>,
        path: Vec<(usize, M::State)>,
        best: Vec<(usize, M::State)>,
        steps: u64,
    }
    impl<M: Model> Search<'_, M> {
        fn go(&mut self, state: &M::State) {
            if self.path.len() > self.best.len() {
                self.best = self.path.clone();
            }
            if self.best.len() == self.ops.len() || self.steps >= PARTIAL_STEPS {
                return;
            }
            for i in 0..self.ops.len() {
                if self.done[i] || !self.may_go_next(i) {
                    continue;
                }
                self.steps += 1;
                let op = &self.ops[i];
                let Some(next) = self.model.step(state, &op.input, op.output.as_ref()) else {
                    continue;
                };
                self.done[i] = true;
                self.path.push((i, next.clone()));
                self.go(&next);
                self.path.pop();
                self.done[i] = false;
            }
        }

        /// No operation left returned before `i` was called.
        fn may_go_next(&self, i: usize) -> bool {
            let call = self.ops[i].call;
            (0..self.ops.len()).all(|j| self.done[j] || j == i || self.ops[j].ret >= call)
        }
    }
    let mut search = Search {
        model,
        ops,
        done: vec![false; ops.len()],
        path: Vec::new(),
        best: Vec::new(),
        steps: 0,
    };
    search.go(&model.init());
    search.best.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;
    use models::{KvInput, KvModel};

    fn op(
        client: u64,
        input: KvInput,
        output: Option<&str>,
        call: u64,
        ret: u64,
    ) -> histories::KvOp {
        Operation {
            client,
            input,
            output: output.map(str::to_string),
            call,
            ret,
        }
    }

    #[test]
    fn a_stale_read_stops_the_linearization_before_it() {
        // put a; put b; then a read of a: only the two puts line up.
        let ops = vec![
            op(1, KvInput::Put("a".into()), None, 0, 1),
            op(1, KvInput::Put("b".into()), None, 2, 3),
            op(2, KvInput::Get, Some("a"), 4, 5),
        ];
        let (order, states) = longest_partial_linearization(&KvModel, &ops);
        assert_eq!(order, vec![0, 1]);
        assert_eq!(format!("{:?}", states[1]), "\"b\"");
        // Linearizable histories line up whole.
        let ok = [ops[0].clone(), op(2, KvInput::Get, Some("a"), 2, 3)];
        assert_eq!(longest_partial_linearization(&KvModel, &ok).0, vec![0, 1]);
    }

    #[test]
    fn a_failing_trace_gives_the_messages_counterexample_with_its_events() {
        let events = History::default().stale_read("k1");
        let c = counterexample(&events).expect("a stale read");
        assert_eq!((c.workload, c.key.as_str(), c.total_ops), ("kv", "k1", 3));
        assert_eq!(c.ops.len(), 3);
        assert_eq!(c.linearized, vec![0, 1]);
        assert_eq!((c.ops[2].call_seq, c.ops[2].ret_seq), (4, Some(5)));
        assert_eq!(c.ops[2].output.as_deref(), Some("\"a\""));
        let message = super::super::check_trace(&events).unwrap_err().message;
        assert!(message.contains("(3 of 3 operations)"), "{message}");
        assert_eq!(counterexample(&events[..4]), None);
    }
}
