//! A real-time argument that proves some histories not linearizable before any
//! search (a stale read, typically): an operation that needs state `v` (a read
//! of `v`) must come after the last operation that produced `v`; if, for every
//! operation that may produce `v`, some write of another value certainly falls
//! between them in real time (it was called after the producer returned and
//! returned before the reader was called), `v` cannot be current when the reader
//! runs. The search would prove the same, but only after exhausting every
//! linearization of the history before the reader.

/// One operation as the check sees it. Times as in `wgl::Operation`.
pub struct Op {
    pub call: u64,
    /// None: unknown outcome (it may take effect at any point after its call).
    pub ret: Option<u64>,
    /// The one state it fits in (a read's value).
    pub needs: Option<u32>,
    /// A state it may leave, and whether it certainly does when it completes.
    pub produces: Option<(u32, bool)>,
}

/// Producers per state above which the check skips a reader (it stays cheap).
const PRODUCERS_CHECKED: usize = 64;

/// An operation (index) that no linearization can fit, if the argument finds one.
/// `init` is the state before any operation.
pub fn stranded(ops: &[Op], init: u32) -> Option<usize> {
    // Completed operations that certainly leave a state: (call, ret, state).
    let mut writes: Vec<(u64, u64, u32)> = ops
        .iter()
        .filter_map(|op| match (op.ret, op.produces) {
            (Some(ret), Some((state, true))) => Some((op.call, ret, state)),
            _ => None,
        })
        .collect();
    writes.sort_unstable();
    // earliest[k]: the two earliest returns, of different states, among writes[k..].
    let mut earliest = vec![[(u64::MAX, u32::MAX); 2]; writes.len() + 1];
    for k in (0..writes.len()).rev() {
        let (_, ret, state) = writes[k];
        let [first, second] = earliest[k + 1];
        earliest[k] = if ret < first.0 {
            [(ret, state), if first.1 == state { second } else { first }]
        } else if state != first.1 && ret < second.0 {
            [first, (ret, state)]
        } else {
            [first, second]
        };
    }
    // The earliest return of a write leaving another state than `v`, among those
    // called after `t`.
    let overwritten_by = |t: Option<u64>, v: u32| {
        let k = t.map_or(0, |t| writes.partition_point(|w| w.0 <= t));
        let [first, second] = earliest[k];
        if first.1 != v {
            first.0
        } else {
            second.0
        }
    };
    let mut producers: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, op) in ops.iter().enumerate() {
        if let Some((state, _)) = op.produces {
            producers.entry(state).or_default().push(i);
        }
    }
    let none = Vec::new();
    ops.iter().enumerate().find_map(|(r, reader)| {
        let (v, ret) = (reader.needs?, reader.ret?);
        let makers = producers.get(&v).unwrap_or(&none);
        if makers.len() > PRODUCERS_CHECKED {
            return None;
        }
        // When each possible last producer of `v` returned (the state before
        // everything is a producer that returned at the start); None in the list:
        // a producer that could be the last and is not certainly overwritten.
        let initial = (v == init).then_some(Some(None));
        let others = makers.iter().filter(|&&p| p != r).filter_map(|&p| {
            let maker = &ops[p];
            // Called after the reader returned: it cannot come before it.
            if maker.call > ret {
                return None;
            }
            Some(maker.ret.map(Some))
        });
        let stranded = initial.into_iter().chain(others).all(|done| {
            // An unknown outcome may take effect just before the reader.
            done.is_some_and(|done| overwritten_by(done, v) < reader.call)
        });
        stranded.then_some(r)
    })
}
