//! Differential tests: small generated histories, written out in each format the
//! checker reads (Jepsen etcd log lines, Porcupine key/value lines, the harness's
//! own trace events), decided by the checker's real path — text → parser →
//! per-key partitions → search, as `lincheck` and `check_trace` do — and by the
//! brute-force oracle (`oracle.rs`) straight from what the generator knows
//! happened. The verdicts must agree (STYLE.md §9: validate a checker against an
//! oracle you did not write).
//!
//! The generator simulates clients of a real register or key/value store, so most
//! histories are linearizable; some answers are then corrupted (a stale read, a
//! flipped compare-and-set) so that many are not. Outcomes follow each format's
//! semantics: `:ok`, `:fail` (certainly no effect, except a Jepsen cas, where
//! `:fail` means the compare failed), `:info` / `unknown` (may take effect, even
//! later), and operations still pending at the end.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use super::oracle::{self, Act};
use super::{check_trace, files};
use crate::sim::trace::{EventKind, TraceEvent};

/// The text or trace a history is written as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    /// Jepsen etcd log: one compare-and-set register.
    Jepsen,
    /// Porcupine's key/value lines: get / put / append on a few keys.
    KvLines,
    /// The harness's trace: coordlab.Kv gets and puts and etcd register operations.
    Trace,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Read,
    Write(i64),
    Cas(i64, i64),
    Get,
    Put(String),
    Append(String),
}

impl Kind {
    fn is_register(&self) -> bool {
        matches!(self, Kind::Read | Kind::Write(_) | Kind::Cas(..))
    }
}

/// What a completed operation reported.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok,
    /// Jepsen: `:fail`; trace: `fail`; key/value lines: `:fail`.
    Fail,
    /// Jepsen / key/value lines: `:info`; trace: `unknown`.
    Info,
}

#[derive(Debug, Clone)]
struct GenOp {
    process: u64,
    /// Per-client operation number (the trace's `op`).
    number: u64,
    key: String,
    kind: Kind,
    /// What it saw when it took effect: a read's value, a get's string, whether a
    /// cas swapped. None until it takes effect.
    result: Option<Seen>,
    /// What the client was told; may differ from `result` (a corrupted answer).
    reported: Option<Seen>,
    outcome: Option<Outcome>,
    invoked_at: usize,
    completed_at: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Int(Option<i64>),
    Text(String),
    Swapped(bool),
    /// A write's effect (nothing to report).
    Done,
}

#[derive(Debug, Clone)]
enum Event {
    Invoke(usize),
    Complete(usize),
    /// A line or event that carries no operation; `tick` advances the trace clock.
    Noise,
}

/// A generated history: what happened, in real-time order.
#[derive(Debug, Default)]
struct History {
    ops: Vec<GenOp>,
    events: Vec<Event>,
    /// Per event: whether the simulated clock ticked before it (trace only; the
    /// trace's milliseconds often tie).
    ticks: Vec<bool>,
}

struct Generator {
    format: Format,
    max_ops: usize,
    keys: u8,
    history: History,
    registers: BTreeMap<String, Option<i64>>,
    strings: BTreeMap<String, String>,
    /// Per client slot: its current process number and the operation in flight.
    clients: Vec<(u64, Option<usize>)>,
    next_process: u64,
    /// Operations reported `:info` that have not taken effect: they still may.
    zombies: Vec<usize>,
}

impl Generator {
    fn new(format: Format, clients: u8, keys: u8, max_ops: usize) -> Self {
        Generator {
            format,
            max_ops,
            keys,
            history: History::default(),
            registers: BTreeMap::new(),
            strings: BTreeMap::new(),
            clients: (0..u64::from(clients)).map(|p| (p, None)).collect(),
            next_process: u64::from(clients),
            zombies: Vec::new(),
        }
    }

    fn push(&mut self, event: Event, tick: bool) -> usize {
        self.history.events.push(event);
        self.history.ticks.push(tick);
        self.history.events.len() - 1
    }

    fn step(&mut self, (a, b, c, d): Step) {
        match a % 8 {
            0..=2 => self.invoke(b, c, d),
            3 | 4 => self.take_effect(b),
            5 | 6 => self.complete(b, c, d),
            _ => {
                self.push(Event::Noise, d % 2 == 0);
            }
        }
    }

    fn invoke(&mut self, b: u8, c: u8, d: u8) {
        let idle: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].1.is_none())
            .collect();
        if idle.is_empty() || self.history.ops.len() >= self.max_ops {
            return;
        }
        let slot = idle[usize::from(b) % idle.len()];
        let n = self.history.ops.len();
        let value = i64::from(d % 4);
        let register = match self.format {
            Format::Jepsen => true,
            Format::KvLines => false,
            Format::Trace => c & 0x80 != 0,
        };
        let kind = if register {
            match c % 3 {
                0 => Kind::Read,
                1 => Kind::Write(value),
                _ => Kind::Cas(i64::from((d >> 2) % 4), value),
            }
        } else {
            let token = format!("x {} {n} y", self.clients[slot].0);
            match (c % 3, self.format) {
                (0, _) => Kind::Get,
                (1, _) | (_, Format::Trace) => Kind::Put(token),
                _ => Kind::Append(token),
            }
        };
        let key = match (self.format, register) {
            (Format::Jepsen, _) => String::new(),
            (_, true) => format!("reg/{}", (d >> 4) % self.keys),
            (_, false) => format!("{}", (d >> 4) % self.keys),
        };
        let invoked_at = self.push(Event::Invoke(n), c & 0x40 != 0);
        let (process, number) = (self.clients[slot].0, n as u64);
        self.history.ops.push(GenOp {
            process,
            number,
            key,
            kind,
            result: None,
            reported: None,
            outcome: None,
            invoked_at,
            completed_at: None,
        });
        self.clients[slot].1 = Some(n);
    }

    /// The linearization point of an operation in flight (or of a zombie).
    fn take_effect(&mut self, b: u8) {
        let mut candidates: Vec<usize> = self
            .clients
            .iter()
            .filter_map(|c| c.1)
            .filter(|&i| self.history.ops[i].result.is_none())
            .collect();
        candidates.extend(self.zombies.iter().copied());
        if candidates.is_empty() {
            return;
        }
        let i = candidates[usize::from(b) % candidates.len()];
        self.zombies.retain(|&z| z != i);
        self.apply(i);
    }

    fn apply(&mut self, i: usize) {
        let op = &self.history.ops[i];
        let key = op.key.clone();
        let register = self.registers.entry(key.clone()).or_default();
        let string = self.strings.entry(key).or_default();
        let seen = match &op.kind {
            Kind::Read => Seen::Int(*register),
            Kind::Write(v) => {
                *register = Some(*v);
                Seen::Done
            }
            Kind::Cas(from, to) => {
                let swapped = *register == Some(*from);
                if swapped {
                    *register = Some(*to);
                }
                Seen::Swapped(swapped)
            }
            Kind::Get => Seen::Text(string.clone()),
            Kind::Put(v) => {
                v.clone_into(string);
                Seen::Done
            }
            Kind::Append(v) => {
                string.push_str(v);
                Seen::Done
            }
        };
        self.history.ops[i].result = Some(seen);
    }

    fn complete(&mut self, b: u8, c: u8, d: u8) {
        let busy: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].1.is_some())
            .collect();
        if busy.is_empty() {
            return;
        }
        let slot = busy[usize::from(b) % busy.len()];
        let i = self.clients[slot].1.take().expect("busy");
        let applied = self.history.ops[i].result.is_some();
        let is_read = matches!(self.history.ops[i].kind, Kind::Read | Kind::Get);
        let jepsen_cas =
            self.format == Format::Jepsen && matches!(self.history.ops[i].kind, Kind::Cas(..));
        let mut outcome = match c % 8 {
            0..=4 => Outcome::Ok,
            5 => Outcome::Fail,
            _ => Outcome::Info,
        };
        // A failure is certainly without effect — except a Jepsen cas, whose
        // `:fail` says the compare failed (and, rarely, is a lie: never applied).
        if outcome == Outcome::Fail && applied && !is_read && !jepsen_cas {
            outcome = Outcome::Ok;
        }
        let definite_cas = jepsen_cas && outcome != Outcome::Info;
        if (outcome == Outcome::Ok || definite_cas && !d.is_multiple_of(4)) && !applied {
            self.apply(i);
        }
        let op = &mut self.history.ops[i];
        op.reported = op.result.clone();
        if (outcome == Outcome::Ok || definite_cas) && d.is_multiple_of(4) {
            op.reported = corrupt(&op.reported, d, &op.kind);
        }
        if definite_cas {
            let swapped = op.reported == Some(Seen::Swapped(true));
            outcome = if swapped { Outcome::Ok } else { Outcome::Fail };
        }
        if outcome == Outcome::Info && op.result.is_none() {
            self.zombies.push(i);
        }
        op.outcome = Some(outcome.clone());
        let at = self.push(Event::Complete(i), c & 0x40 != 0);
        self.history.ops[i].completed_at = Some(at);
        // Jepsen retires a process after `:info` (a new number takes its place);
        // sometimes reuse the number anyway.
        if outcome == Outcome::Info && d & 0x80 == 0 {
            self.clients[slot].0 = self.next_process;
            self.next_process += 1;
        }
    }
}

/// A wrong answer for a client: another register value, a stale or mangled string,
/// a flipped cas verdict.
fn corrupt(seen: &Option<Seen>, d: u8, kind: &Kind) -> Option<Seen> {
    let other = match seen {
        Some(Seen::Int(v)) => {
            let shifted = v.map_or(0, |x| x + 1 + i64::from(d >> 6) % 3) % 4;
            Seen::Int(if d & 0x10 != 0 { None } else { Some(shifted) })
        }
        Some(Seen::Text(s)) => Seen::Text(match d >> 6 {
            0 => String::new(),
            1 => s.rsplit_once('x').map_or("x 9 9 y", |(a, _)| a).into(),
            2 => format!("{s}x 0 0 y"),
            _ => "x 1 1 y".into(),
        }),
        Some(Seen::Swapped(s)) if matches!(kind, Kind::Cas(..)) => Seen::Swapped(!s),
        other => return other.clone(),
    };
    Some(other)
}

fn generate(format: Format, clients: u8, keys: u8, max_ops: usize, steps: &[Step]) -> History {
    let mut g = Generator::new(format, clients, keys, max_ops);
    for &s in steps {
        g.step(s);
    }
    g.history
}

/// The oracle's view: the operations each format's semantics says constrain the
/// history (written from the format descriptions, not from the parsers).
fn oracle_ops(h: &History, format: Format) -> Vec<oracle::Op> {
    let mut ops = Vec::new();
    for op in &h.ops {
        let definite = matches!(op.outcome, Some(Outcome::Ok))
            || (format == Format::Jepsen
                && matches!(op.kind, Kind::Cas(..))
                && op.outcome == Some(Outcome::Fail));
        let no_effect = op.outcome == Some(Outcome::Fail) && !definite;
        let act = match (&op.kind, &op.reported) {
            // A read or get constrains only when it answered.
            (Kind::Read | Kind::Get, _) if !definite => continue,
            _ if no_effect => continue,
            (Kind::Read, Some(Seen::Int(v))) => Act::Read(*v),
            (Kind::Get, Some(Seen::Text(s))) => Act::Get(s.clone()),
            (Kind::Write(v), _) => Act::Write(*v),
            (Kind::Cas(from, to), reported) => Act::Cas {
                from: *from,
                to: *to,
                swapped: match reported {
                    Some(Seen::Swapped(s)) if definite => Some(*s),
                    _ if definite => Some(false),
                    _ => None,
                },
            },
            (Kind::Put(v), _) => Act::Put(v.clone()),
            (Kind::Append(v), _) => Act::Append(v.clone()),
            (kind, reported) => unreachable!("{kind:?} answered {reported:?}"),
        };
        ops.push(oracle::Op {
            key: op.key.clone(),
            act,
            call: op.invoked_at,
            ret: if definite { op.completed_at } else { None },
        });
    }
    ops
}

/// The history as a Jepsen etcd log (`INFO  jepsen.util - ` lines).
fn jepsen_log(h: &History, tabs: bool) -> String {
    let sep = if tabs { "\t" } else { "   " };
    let mut text = String::new();
    for (n, event) in h.events.iter().enumerate() {
        let (op, completion) = match event {
            Event::Invoke(i) => (&h.ops[*i], false),
            Event::Complete(i) => (&h.ops[*i], true),
            Event::Noise => {
                let _ = writeln!(
                    text,
                    "{}",
                    if n % 2 == 0 {
                        "INFO  jepsen.util - :nemesis\t:info\t:start\tnil".to_string()
                    } else {
                        format!("INFO  jepsen.core - Worker {n} starting")
                    }
                );
                continue;
            }
        };
        let f = match op.kind {
            Kind::Read => ":read",
            Kind::Write(_) => ":write",
            _ => ":cas",
        };
        let (kind, value) = if !completion {
            let value = match op.kind {
                Kind::Read => "nil".to_string(),
                Kind::Write(v) => v.to_string(),
                Kind::Cas(from, to) => format!("[{from} {to}]"),
                _ => unreachable!(),
            };
            (":invoke", value)
        } else {
            match (&op.outcome, &op.kind, &op.reported) {
                (Some(Outcome::Info), ..) => (":info", ":timed-out".to_string()),
                (Some(Outcome::Fail), Kind::Read, _) => (":fail", ":timed-out".to_string()),
                (Some(Outcome::Fail), Kind::Write(v), _) => (":fail", v.to_string()),
                (Some(outcome), Kind::Cas(from, to), _) => (
                    if *outcome == Outcome::Ok {
                        ":ok"
                    } else {
                        ":fail"
                    },
                    format!("[{from} {to}]"),
                ),
                (_, Kind::Read, Some(Seen::Int(v))) => {
                    (":ok", v.map_or("nil".into(), |v| v.to_string()))
                }
                (_, Kind::Write(v), _) => (":ok", v.to_string()),
                other => unreachable!("{other:?}"),
            }
        };
        let _ = writeln!(
            text,
            "INFO  jepsen.util - {}{sep}{kind}{sep}{f}{sep}{value}",
            op.process
        );
    }
    text
}

/// The history as Porcupine's key/value lines.
fn kv_lines(h: &History) -> String {
    let mut text = String::new();
    for event in &h.events {
        let (op, completion) = match event {
            Event::Invoke(i) => (&h.ops[*i], false),
            Event::Complete(i) => (&h.ops[*i], true),
            Event::Noise => continue,
        };
        let (f, written) = match &op.kind {
            Kind::Get => (":get", None),
            Kind::Put(v) => (":put", Some(v)),
            Kind::Append(v) => (":append", Some(v)),
            _ => unreachable!(),
        };
        let kind = match (completion, &op.outcome) {
            (false, _) => ":invoke",
            (true, Some(Outcome::Ok)) => ":ok",
            (true, Some(Outcome::Fail)) => ":fail",
            (true, _) => ":info",
        };
        let value = match (written, &op.reported, kind) {
            (Some(v), ..) => format!("\"{v}\""),
            (None, Some(Seen::Text(s)), ":ok") => format!("\"{s}\""),
            _ => "nil".into(),
        };
        let _ = writeln!(
            text,
            "{{:process {}, :type {kind}, :f {f}, :key \"{}\", :value {value}}}",
            op.process, op.key
        );
    }
    text
}

/// The history as the harness's trace events (both KV workloads, interleaved with
/// unrelated events; milliseconds often tie).
fn trace(h: &History) -> Vec<TraceEvent> {
    let mut time_ms = 0;
    let mut events = Vec::new();
    for (seq, event) in h.events.iter().enumerate() {
        time_ms += u64::from(h.ticks[seq]);
        let kind = match event {
            Event::Noise => EventKind::Fault {
                action: "noise".into(),
            },
            Event::Invoke(i) => {
                let op = &h.ops[*i];
                let (client, op_no, key) = (op.process, op.number, op.key.clone());
                match &op.kind {
                    Kind::Get | Kind::Put(_) => EventKind::ClientInvoke {
                        client,
                        op: op_no,
                        kind: if op.kind == Kind::Get { "get" } else { "put" }.into(),
                        key,
                        value: match &op.kind {
                            Kind::Put(v) => Some(v.clone()),
                            _ => None,
                        },
                    },
                    kind => EventKind::RegisterInvoke {
                        client,
                        op: op_no,
                        key,
                        kind: match kind {
                            Kind::Read => "read",
                            Kind::Write(_) => "write",
                            _ => "cas",
                        }
                        .into(),
                        value: match kind {
                            Kind::Write(v) | Kind::Cas(_, v) => Some(*v),
                            _ => None,
                        },
                        expect: match kind {
                            Kind::Cas(from, _) => Some(*from),
                            _ => None,
                        },
                    },
                }
            }
            Event::Complete(i) => {
                let op = &h.ops[*i];
                let outcome = match op.outcome {
                    Some(Outcome::Ok) => "ok",
                    Some(Outcome::Fail) => "fail",
                    _ => "unknown",
                }
                .to_string();
                let ok = outcome == "ok";
                if op.kind.is_register() {
                    EventKind::RegisterComplete {
                        client: op.process,
                        op: op.number,
                        outcome,
                        value: match &op.reported {
                            Some(Seen::Int(v)) if ok => *v,
                            _ => None,
                        },
                        swapped: match &op.reported {
                            Some(Seen::Swapped(s)) if ok => Some(*s),
                            _ => None,
                        },
                        revision: None,
                        error: None,
                    }
                } else {
                    EventKind::ClientComplete {
                        client: op.process,
                        op: op.number,
                        outcome,
                        // An absent key reads as no value.
                        value: match &op.reported {
                            Some(Seen::Text(s)) if ok && !s.is_empty() => Some(s.clone()),
                            _ => None,
                        },
                        revision: None,
                    }
                }
            }
        };
        events.push(TraceEvent {
            seq: seq as u64,
            time_ms,
            node: 0,
            kind,
        });
    }
    events
}

/// One generator step's choices.
type Step = (u8, u8, u8, u8);

/// Raw generator input: client count, key count, and the steps' choices.
fn case() -> impl Strategy<Value = (u8, u8, Vec<Step>)> {
    (
        1u8..=4,
        1u8..=2,
        prop::collection::vec(any::<(u8, u8, u8, u8)>(), 0..36),
    )
}

/// Runs `cases` generated histories of `format` through `decide` and the oracle.
fn differential(
    format: Format,
    cases: u32,
    decide: impl Fn(&History) -> Result<bool, String>,
) -> Result<(), String> {
    // Seeded: every run checks the same cases (LINCHECK_DIFF_SEED explores others).
    let seed: u8 = std::env::var("LINCHECK_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    );
    let verdicts = [Cell::new(0u32), Cell::new(0u32)];
    let outcome = runner.run(&case(), |(clients, keys, steps)| {
        let h = generate(format, clients, keys, 8, &steps);
        let expected = oracle::linearizable(&oracle_ops(&h, format));
        let count = &verdicts[usize::from(expected)];
        count.set(count.get() + 1);
        let got = decide(&h).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got, expected, "checker vs oracle on {:#?}", h.ops);
        Ok(())
    });
    eprintln!(
        "{format:?}: {} linearizable, {} not (of {cases} cases, shrinking included)",
        verdicts[1].get(),
        verdicts[0].get()
    );
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// What `lincheck` answers for a history file, sequentially and on two threads.
fn lincheck(text: &str) -> Result<bool, String> {
    let sequential = files::decide(text, u64::MAX)?.expect("unbounded search decides");
    let parallel =
        files::decide_parallel(text, 2, &AtomicBool::new(false))?.expect("not cancelled");
    if sequential != parallel {
        return Err(format!("sequential {sequential} but parallel {parallel}"));
    }
    Ok(sequential)
}

#[test]
fn jepsen_logs_agree_with_the_oracle() {
    let result = differential(Format::Jepsen, 3000, |h| {
        let text = jepsen_log(h, h.events.len() % 2 == 0);
        lincheck(&text).map_err(|e| format!("{e}\n{text}"))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn key_value_lines_agree_with_the_oracle() {
    let result = differential(Format::KvLines, 3000, |h| lincheck(&kv_lines(h)));
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn traces_agree_with_the_oracle() {
    let result = differential(Format::Trace, 3000, |h| Ok(check_trace(&trace(h)).is_ok()));
    if let Err(e) = result {
        panic!("{e}");
    }
}
