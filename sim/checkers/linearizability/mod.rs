//! Linearizability of KV operations per key (Herlihy & Wing; checked with the
//! Wing–Gong–Lowe search and Lowe's memoised states, as Porcupine does).
//!
//! Histories are split by key — each key is an independent object, so the history
//! is linearizable iff every key's is (P-compositionality). An operation whose
//! outcome is unknown may or may not have taken effect. On failure the checker
//! shrinks the offending key's history to a small sub-history that is still not
//! linearizable, for the report. Keys are checked smallest first, and the first
//! that fails ends the check.
//!
//! Validated two ways (STYLE.md §9): against Porcupine's golden histories and
//! verdicts (`testdata/`, see `tests`), and against a brute-force oracle on
//! generated histories in every format the checker reads (`differential.rs`).
//!
//! - `histories.rs` reads the formats into per-key operations;
//! - `models.rs` (with `text.rs`) holds the sequential specifications;
//! - `wgl.rs` (with `memo.rs`) is the search;
//! - `counterexample.rs` gives a failing check's shrunk sub-history as data, with
//!   its longest partial linearization (for the failure timeline);
//! - `files.rs` decides a history file (`lincheck`), also on threads;
//! - `generate.rs` writes histories of known verdict for benchmarks.

pub mod counterexample;
#[cfg(test)]
mod differential;
pub mod files;
pub mod generate;
pub mod histories;
mod memo;
pub mod models;
#[cfg(test)]
mod oracle;
mod precheck;
mod text;
pub mod wgl;

use std::collections::BTreeMap;
use std::fmt::Debug;

use super::Violation;
use crate::sim::trace::TraceEvent;
use wgl::{linearizable_within, Model, Operation};

pub const NAME: &str = "linearizability";

/// Search steps allowed for one key's verdict: seconds of work, far beyond what a
/// key's short history needs; a run that exhausts it fails loudly rather than hang.
const VERDICT_STEPS: u64 = 20_000_000;

/// Search steps allowed for one shrinking check (undecided counts as linearizable,
/// so the shrunk history stays a proven counterexample).
const SHRINK_STEPS: u64 = 2_000_000;

/// Greedily drops operations while the rest stays non-linearizable: a small
/// counterexample for a human (at most `budget` checks), from which no single
/// operation can be dropped. `keep(ops, i)` protects an
/// operation the rest depends on (a write whose value a remaining read saw), so the
/// result stays a meaningful witness rather than a lone read of a value never written.
pub fn shrink<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    budget: usize,
    keep: impl Fn(&[Operation<M::Input, M::Output>], usize) -> bool,
) -> Vec<Operation<M::Input, M::Output>>
where
    M::Input: Clone,
    M::Output: Clone,
{
    let mut current: Vec<_> = ops.to_vec();
    let mut checks = 0;
    // Halves first, then quarters…: a long history whose fault is local loses
    // most of itself in a few checks (as in delta debugging).
    let mut chunk = current.len() / 2;
    while chunk > 1 && checks < budget {
        let mut start = 0;
        while start < current.len() && checks < budget {
            let end = (start + chunk).min(current.len());
            if (start..end).any(|i| keep(&current, i)) {
                start = end;
                continue;
            }
            let candidate = [&current[..start], &current[end..]].concat();
            checks += 1;
            if linearizable_within(model, &candidate, SHRINK_STEPS) == Some(false) {
                current = candidate;
            } else {
                start = end;
            }
        }
        chunk /= 2;
    }
    // Then one at a time, in passes until one removes nothing: dropping a read can
    // free the write it protected, earlier in the list.
    loop {
        let before = current.len();
        let mut i = 0;
        while i < current.len() && checks < budget {
            if keep(&current, i) {
                i += 1;
                continue;
            }
            let mut candidate = current.clone();
            candidate.remove(i);
            checks += 1;
            if linearizable_within(model, &candidate, SHRINK_STEPS) == Some(false) {
                current = candidate;
            } else {
                i += 1;
            }
        }
        if current.len() == before || checks >= budget {
            return current;
        }
    }
}

/// Whether `ops[i]` wrote a value some remaining read returned.
fn is_read_write(ops: &[histories::KvOp], i: usize) -> bool {
    let written = match &ops[i].input {
        models::KvInput::Put(v) | models::KvInput::Append(v) => v,
        models::KvInput::Get => return false,
    };
    ops.iter().any(|op| {
        op.input == models::KvInput::Get
            && op
                .output
                .as_deref()
                .is_some_and(|r| r.contains(written.as_str()))
    })
}

/// Describes a history for a report, one operation a line.
pub fn describe<I: Debug, O: Debug>(ops: &[Operation<I, O>]) -> String {
    ops.iter()
        .map(|op| {
            let ret = if op.ret == u64::MAX {
                "…".to_string()
            } else {
                op.ret.to_string()
            };
            format!(
                "  client {} [{}, {ret}] {:?} -> {:?}",
                op.client, op.call, op.input, op.output
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `ops[i]` wrote a value some remaining read or compare-and-set saw.
fn is_read_register_write(ops: &[histories::CasOp], i: usize) -> bool {
    use models::{CasInput, CasOutput};
    let written = match ops[i].input {
        CasInput::Write(v) | CasInput::Cas { to: v, .. } => v,
        CasInput::Read => return false,
    };
    ops.iter().any(|op| match (&op.input, &op.output) {
        (CasInput::Read, Some(CasOutput::Read(Some(v)))) => *v == written,
        (CasInput::Cas { from, .. }, Some(CasOutput::Swapped(true))) => *from == written,
        _ => false,
    })
}

/// Checks every key's history of both KV workloads in a trace: the coordlab.Kv
/// clients' puts and gets, and the etcd clients' registers.
pub fn check_trace(events: &[TraceEvent]) -> Result<(), Violation> {
    let fail = |message| Violation {
        invariant: NAME,
        event_seq: events.last().map_or(0, |e| e.seq),
        message,
        related: Vec::new(),
    };
    check_kv(&histories::from_trace(events)).map_err(fail)?;
    check_registers(&histories::registers_from_trace(events)).map_err(fail)
}

/// Checks per-key register histories (etcd KV: read / put / compare-and-set);
/// `Err` names the key and a small counterexample.
pub fn check_registers(by_key: &BTreeMap<String, Vec<histories::CasOp>>) -> Result<(), String> {
    match first_failure(&models::CasRegister, by_key, is_read_register_write)? {
        None => Ok(()),
        Some(f) => Err(f.report("etcd key")),
    }
}

/// The first key (in [`smallest_first`] order) whose history is not
/// linearizable, with its shrunk sub-history.
struct Failure<'a, I, O> {
    key: &'a str,
    total_ops: usize,
    shrunk: Vec<Operation<I, O>>,
}

impl<I: Debug, O: Debug> Failure<'_, I, O> {
    /// The violation's message: the key (`what` names its kind) and the shrunk
    /// sub-history, one operation a line.
    fn report(&self, what: &str) -> String {
        format!(
            "{what} {:?} is not linearizable; a smallest failing sub-history ({} of {} operations):\n{}",
            self.key,
            self.shrunk.len(),
            self.total_ops,
            describe(&self.shrunk)
        )
    }
}

/// Finds the first failing key, if any, and shrinks its history (`keep`: see
/// [`shrink`]); `Err` when a verdict was undecided.
#[allow(clippy::type_complexity)]
fn first_failure<'a, M: Model>(
    model: &M,
    by_key: &'a BTreeMap<String, Vec<Operation<M::Input, M::Output>>>,
    keep: fn(&[Operation<M::Input, M::Output>], usize) -> bool,
) -> Result<Option<Failure<'a, M::Input, M::Output>>, String>
where
    M::Input: Clone,
    M::Output: Clone,
{
    for (key, ops) in smallest_first(by_key) {
        if !judge(model, key, ops, VERDICT_STEPS)? {
            return Ok(Some(Failure {
                key,
                total_ops: ops.len(),
                shrunk: shrink(model, ops, 2_000, keep),
            }));
        }
    }
    Ok(None)
}

/// Keys by their number of operations, then by name: a deterministic order in
/// which a cheap key that fails ends the check early.
fn smallest_first<T>(by_key: &BTreeMap<String, Vec<T>>) -> Vec<(&String, &Vec<T>)> {
    let mut keys: Vec<_> = by_key.iter().collect();
    keys.sort_by_key(|(key, ops)| (ops.len(), *key));
    keys
}

/// Whether `ops` is linearizable; `Err` when the search could not decide within
/// `max_steps`.
fn judge<M: Model>(
    model: &M,
    key: &str,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Result<bool, String> {
    linearizable_within(model, ops, max_steps).ok_or_else(|| {
        let pending = ops.iter().filter(|op| op.ret == u64::MAX).count();
        format!(
            "key {key:?}: linearizability undecided after {max_steps} search steps ({} operations, {pending} of unknown outcome); shorten the key's history",
            ops.len()
        )
    })
}

/// Checks per-key KV histories; `Err` names the key and a small counterexample.
pub fn check_kv(by_key: &BTreeMap<String, Vec<histories::KvOp>>) -> Result<(), String> {
    match first_failure(&models::KvModel, by_key, is_read_write)? {
        None => Ok(()),
        Some(f) => Err(f.report("key")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use super::models::{KvInput, KvModel};
    use super::wgl::linearizable;
    use super::*;

    /// Porcupine's histories and verdicts, copied in (see `testdata/NOTICE`).
    fn golden_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sim/checkers/linearizability/testdata")
    }

    fn put(client: u64, v: &str, call: u64, ret: u64) -> histories::KvOp {
        Operation {
            client,
            input: KvInput::Put(v.into()),
            output: None,
            call,
            ret,
        }
    }

    fn get(client: u64, v: &str, call: u64, ret: u64) -> histories::KvOp {
        Operation {
            client,
            input: KvInput::Get,
            output: Some(v.into()),
            call,
            ret,
        }
    }

    #[test]
    fn concurrent_reads_may_see_either_value_but_not_go_back() {
        // put a, then a read concurrent with put b sees b, then a later read sees a: stale.
        let bad = vec![
            put(1, "a", 0, 1),
            put(2, "b", 2, 5),
            get(3, "b", 3, 4),
            get(3, "a", 6, 7),
        ];
        assert!(!linearizable(&KvModel, &bad));
        let ok = vec![
            put(1, "a", 0, 1),
            put(2, "b", 2, 5),
            get(3, "a", 3, 4),
            get(3, "b", 6, 7),
        ];
        assert!(linearizable(&KvModel, &ok));
        let small = shrink(&KvModel, &bad, 100, |_, _| false);
        assert!(small.len() <= bad.len() && !linearizable(&KvModel, &small));
        // A write protected by a read is dropped once that read is gone.
        let stale = vec![
            put(1, "a", 0, 1),
            get(2, "a", 2, 3),
            put(1, "b", 4, 5),
            put(1, "c", 6, 7),
            get(2, "b", 8, 9),
        ];
        let small = shrink(&KvModel, &stale, 100, is_read_write);
        assert_eq!(small.len(), 3, "{}", describe(&small));
    }

    #[test]
    fn a_search_past_its_budget_is_undecided_and_reported() {
        // Unknown writes stay pending: proving this stale read needs a long search.
        let mut ops: Vec<_> = (0..12)
            .map(|i| put(i, &format!("u{i}"), 0, u64::MAX))
            .collect();
        ops.extend([put(20, "a", 1, 2), put(21, "b", 3, 4), get(22, "a", 5, 6)]);
        assert_eq!(wgl::linearizable_within(&KvModel, &ops, 10), None);
        assert_eq!(
            wgl::linearizable_within(&KvModel, &ops, u64::MAX),
            Some(false)
        );
        let err = judge(&KvModel, "k", &ops, 10).unwrap_err();
        assert!(err.contains("undecided after 10 search steps"), "{err}");
        assert_eq!(judge(&KvModel, "k", &ops, u64::MAX), Ok(false));
    }

    #[test]
    fn an_unknown_write_may_or_may_not_take_effect() {
        let seen = vec![put(1, "a", 0, u64::MAX), get(2, "a", 5, 6)];
        assert!(linearizable(&KvModel, &seen));
        let unseen = vec![put(1, "a", 0, u64::MAX), get(2, "", 5, 6)];
        assert!(linearizable(&KvModel, &unseen));
        let flip = vec![
            put(1, "a", 0, u64::MAX),
            get(2, "a", 5, 6),
            get(2, "", 7, 8),
        ];
        assert!(!linearizable(&KvModel, &flip));
    }

    #[test]
    fn etcd_register_histories_come_from_the_trace() {
        use crate::sim::checkers::testing::History;
        use crate::sim::trace::EventKind;
        let mut h = History::default();
        let invoke = |h: &mut History, op, kind: &str, value, expect| {
            h.push(
                201,
                EventKind::RegisterInvoke {
                    client: 201,
                    op,
                    key: "reg/0".into(),
                    kind: kind.into(),
                    value,
                    expect,
                },
            )
        };
        let complete = |h: &mut History, op, value, swapped| {
            h.push(
                201,
                EventKind::RegisterComplete {
                    client: 201,
                    op,
                    outcome: "ok".into(),
                    value,
                    swapped,
                    revision: Some(2),
                    error: None,
                },
            )
        };
        let mut events = vec![
            invoke(&mut h, 1, "write", Some(1), None),
            complete(&mut h, 1, None, None),
            invoke(&mut h, 2, "cas", Some(2), Some(1)),
            complete(&mut h, 2, None, Some(true)),
            invoke(&mut h, 3, "read", None, None),
            complete(&mut h, 3, Some(2), None),
        ];
        check_trace(&events).unwrap();
        // A later read of the overwritten value is stale.
        events.push(invoke(&mut h, 4, "read", None, None));
        events.push(complete(&mut h, 4, Some(1), None));
        let v = check_trace(&events).unwrap_err();
        assert!(v.message.contains("etcd key \"reg/0\""), "{v}");
    }

    /// Every golden history gets the verdict Porcupine's test suite expects, on
    /// every path: `lincheck`'s (sequential and on threads) and the simulation's
    /// end-of-run checker's (`check_kv` / `check_registers`).
    #[test]
    fn golden_histories_get_their_verdicts() {
        let dir = golden_dir();
        let verdicts = std::fs::read_to_string(dir.join("VERDICTS.tsv"))
            .unwrap_or_else(|e| panic!("golden data missing at {}: {e}", dir.display()));
        let mut checked = 0;
        let started = Instant::now();
        for line in verdicts.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let (file, expected) = line.split_once('\t').expect("file<TAB>verdict");
            let expected: bool = expected.trim().parse().expect("true/false");
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let lincheck = files::decide(&text, u64::MAX).unwrap();
            let threads = files::decide_parallel(&text, 2, &AtomicBool::new(false)).unwrap();
            let in_simulation = if file.starts_with("kv/") {
                check_kv(&histories::parse_kv(&text).unwrap()).is_ok()
            } else {
                let ops = histories::parse_etcd_log(&text).unwrap();
                check_registers(&BTreeMap::from([(String::new(), ops)])).is_ok()
            };
            let verdicts = (lincheck, threads, in_simulation);
            let want = (Some(expected), Some(expected), expected);
            assert_eq!(verdicts, want, "{file}: expected linearizable={expected}");
            checked += 1;
        }
        assert_eq!(checked, 55);
        eprintln!(
            "golden: {checked} histories decided three ways in {:.2?}",
            started.elapsed()
        );
    }

    /// Regression (Jepsen's etcd_101): a `:fail :read` was dropped twice — once as
    /// failed, once as a read still pending — and the second removal took the next
    /// operation with it, here the write the last read saw.
    #[test]
    fn a_failed_read_drops_only_itself() {
        let log = "\
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:fail\t:read\t:timed-out
INFO  jepsen.util - 1\t:invoke\t:write\t1
INFO  jepsen.util - 1\t:ok\t:write\t1
INFO  jepsen.util - 2\t:invoke\t:read\tnil
INFO  jepsen.util - 2\t:ok\t:read\t1
";
        let ops = histories::parse_etcd_log(log).unwrap();
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert_eq!(files::decide(log, u64::MAX), Ok(Some(true)));
        // The failing case the differential test shrank to: a lone failed read.
        let lone = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:fail\t:read\t:timed-out\n";
        assert_eq!(histories::parse_etcd_log(lone), Ok(vec![]));
    }

    /// Regression: the trace's operations were timed in simulated
    /// milliseconds, so a completion and a later invocation in the same millisecond
    /// counted as concurrent and a stale answer passed. Trace order is real time.
    #[test]
    fn trace_order_within_a_millisecond_is_real_time() {
        use crate::sim::trace::EventKind;
        let event = |seq, kind| TraceEvent {
            seq,
            time_ms: 7,
            node: 0,
            kind,
        };
        let events = vec![
            event(
                0,
                EventKind::RegisterInvoke {
                    client: 1,
                    op: 1,
                    key: "reg/0".into(),
                    kind: "write".into(),
                    value: Some(1),
                    expect: None,
                },
            ),
            event(
                1,
                EventKind::RegisterComplete {
                    client: 1,
                    op: 1,
                    outcome: "ok".into(),
                    value: None,
                    swapped: None,
                    revision: None,
                    error: None,
                },
            ),
            // Invoked after the write returned: it must see 1, yet did not swap.
            event(
                2,
                EventKind::RegisterInvoke {
                    client: 1,
                    op: 2,
                    key: "reg/0".into(),
                    kind: "cas".into(),
                    value: Some(0),
                    expect: Some(1),
                },
            ),
            event(
                3,
                EventKind::RegisterComplete {
                    client: 1,
                    op: 2,
                    outcome: "ok".into(),
                    value: None,
                    swapped: Some(false),
                    revision: None,
                    error: None,
                },
            ),
        ];
        let v = check_trace(&events).unwrap_err();
        assert!(v.message.contains("reg/0"), "{v}");
    }
}
