//! Reading histories: the golden formats (Porcupine's key/value EDN lines and
//! Jepsen's etcd logs) and the harness's own trace.

use std::collections::BTreeMap;

use super::models::{CasInput, CasOutput, KvInput};
use super::wgl::Operation;
use crate::sim::trace::{EventKind, TraceEvent};

pub type KvOp = Operation<KvInput, String>;
pub type CasOp = Operation<CasInput, CasOutput>;

/// The fields of one key/value line, an EDN map such as
/// `{:process 3, :type :ok, :f :get, :key "4", :value "x 3 1 y"}`.
#[derive(Default)]
struct KvLine<'a> {
    process: Option<&'a str>,
    kind: Option<&'a str>,
    f: Option<&'a str>,
    key: Option<&'a str>,
    /// None: `nil` (or absent).
    value: Option<&'a str>,
}

/// Reads a line's fields in one pass: keyword, number and `nil` values end at a
/// comma, strings at their closing quote (escapes are kept as written).
fn kv_line(line: &str) -> Result<KvLine<'_>, &'static str> {
    let body = line
        .trim()
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .ok_or("not a {…} map")?;
    let mut fields = KvLine::default();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return Ok(fields);
        }
        let name_end = rest.find(' ').ok_or("a field without a value")?;
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let bytes = quoted.as_bytes();
            let mut end = 0;
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            if end >= bytes.len() {
                return Err("an unterminated string");
            }
            rest = &quoted[end + 1..];
            Some(&quoted[..end])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let bare = rest[..end].trim();
            rest = &rest[end..];
            (bare != "nil").then_some(bare)
        };
        match name {
            ":process" => fields.process = value,
            ":type" => fields.kind = value,
            ":f" => fields.f = value,
            ":key" => fields.key = value,
            ":value" => fields.value = value,
            _ => {}
        }
    }
}

/// Parses Porcupine's key/value format into per-key histories.
///
/// `:ok` completes an operation; as in Jepsen, `:fail` means it certainly had no
/// effect (dropped) and `:info` that its outcome is unknown (pending), as is an
/// operation never completed. Gets that never answered observed nothing.
pub fn parse_kv(text: &str) -> Result<BTreeMap<String, Vec<KvOp>>, String> {
    let mut by_key: BTreeMap<String, (Vec<KvOp>, Vec<bool>)> = BTreeMap::new();
    // process → (key, index into that key's ops)
    let mut open: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |what: &str| format!("line {}: {what}: {line}", n + 1);
        let fields = kv_line(line).map_err(bad)?;
        let process: u64 = fields
            .process
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("no :process"))?;
        let kind = fields.kind.ok_or_else(|| bad("no :type"))?;
        let f = fields.f.ok_or_else(|| bad("no :f"))?;
        let key = fields.key.ok_or_else(|| bad("no :key"))?.to_string();
        let value = fields.value.map(str::to_string);
        let time = n as u64;
        if kind == ":invoke" {
            let input = match f {
                ":get" => KvInput::Get,
                ":put" => KvInput::Put(value.unwrap_or_default()),
                ":append" => KvInput::Append(value.unwrap_or_default()),
                other => return Err(bad(&format!("unknown :f {other}"))),
            };
            let (ops, keep) = by_key.entry(key.clone()).or_default();
            ops.push(Operation {
                client: process,
                input,
                output: None,
                call: time,
                ret: u64::MAX,
            });
            keep.push(true);
            open.insert(process, (key, ops.len() - 1));
            continue;
        }
        if !matches!(kind, ":ok" | ":fail" | ":info") {
            return Err(bad(&format!("unknown :type {kind}")));
        }
        let (key, i) = open
            .remove(&process)
            .ok_or_else(|| bad("completion without invocation"))?;
        let (ops, keep) = by_key.get_mut(&key).expect("opened key");
        match kind {
            ":ok" => {
                let op = &mut ops[i];
                op.ret = time;
                // Puts and appends answer nothing; a get answers what it read.
                op.output = (op.input == KvInput::Get).then(|| value.unwrap_or_default());
            }
            ":fail" => keep[i] = false,
            _ => {}
        }
    }
    Ok(by_key
        .into_iter()
        .map(|(key, (ops, keep))| (key, kept(ops, &keep, |i| *i == KvInput::Get)))
        .collect())
}

fn parse_int(v: &str) -> Option<i64> {
    v.parse().ok()
}

/// Parses a Jepsen etcd log into one compare-and-set register history.
///
/// Completions: `:ok` answers; `:fail` on a read or write means it certainly had
/// no effect (the operation is dropped), on a cas that the compare failed (it
/// happened and did not swap); `:info` leaves the outcome unknown (pending). Reads
/// that never answered constrain nothing and are dropped.
pub fn parse_etcd_log(text: &str) -> Result<Vec<CasOp>, String> {
    let mut ops: Vec<CasOp> = Vec::new();
    // Whether each op stays in the history (false: certainly without effect).
    let mut keep: Vec<bool> = Vec::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let Some(at) = line.find("jepsen.util - ") else {
            continue;
        };
        let fields: Vec<&str> = line[at + "jepsen.util - ".len()..]
            .split_whitespace()
            .collect();
        let bad = |what: &str| format!("line {}: {what}: {line}", n + 1);
        if fields.len() < 3 {
            continue;
        }
        let Ok(process) = fields[0].parse::<u64>() else {
            continue;
        };
        let (kind, f) = (fields[1], fields[2]);
        if !matches!(f, ":read" | ":write" | ":cas") {
            continue;
        }
        let value = fields[3..].join(" ");
        let time = n as u64;
        if kind == ":invoke" {
            let input = match f {
                ":read" => CasInput::Read,
                ":write" => {
                    CasInput::Write(parse_int(&value).ok_or_else(|| bad("write of a non-number"))?)
                }
                _ => {
                    let inner = value.trim_start_matches('[').trim_end_matches(']');
                    let mut parts = inner.split_whitespace().map(parse_int);
                    match (parts.next().flatten(), parts.next().flatten()) {
                        (Some(from), Some(to)) => CasInput::Cas { from, to },
                        _ => return Err(bad("cas without [from to]")),
                    }
                }
            };
            ops.push(Operation {
                client: process,
                input,
                output: None,
                call: time,
                ret: u64::MAX,
            });
            keep.push(true);
            open.insert(process, ops.len() - 1);
            continue;
        }
        if !matches!(kind, ":ok" | ":fail" | ":info") {
            continue;
        }
        let Some(i) = open.remove(&process) else {
            continue;
        };
        let op = &mut ops[i];
        match (kind, &op.input) {
            // Unknown outcome: stays pending.
            (":info", _) => {}
            (":ok", CasInput::Read) => {
                op.ret = time;
                op.output = Some(CasOutput::Read(parse_int(&value)));
            }
            (":ok", CasInput::Write(_)) => {
                op.ret = time;
                op.output = Some(CasOutput::Written);
            }
            // The compare failed: it took effect without swapping.
            (_, CasInput::Cas { .. }) => {
                op.ret = time;
                op.output = Some(CasOutput::Swapped(kind == ":ok"));
            }
            // A failed (timed-out) read or a failed write: certainly no effect.
            _ => keep[i] = false,
        }
    }
    Ok(kept(ops, &keep, |i| *i == CasInput::Read))
}

/// Drops what certainly had no effect (`keep` false) and reads that never
/// answered (they observed nothing).
fn kept<I: PartialEq, O>(
    ops: Vec<Operation<I, O>>,
    keep: &[bool],
    is_read: impl Fn(&I) -> bool,
) -> Vec<Operation<I, O>> {
    ops.into_iter()
        .zip(keep)
        .filter(|(op, keep)| **keep && !(op.is_pending() && is_read(&op.input)))
        .map(|(op, _)| op)
        .collect()
}

/// The harness's KV client operations, per key: puts and linearizable gets, with
/// unknown outcomes pending.
///
/// Time is an event's position in `events` (for a whole trace, its `seq`), not its
/// simulated millisecond: many events share a millisecond, and a completion
/// recorded before an invocation in the same millisecond still happened before it.
pub fn from_trace(events: &[TraceEvent]) -> BTreeMap<String, Vec<KvOp>> {
    let mut by_key: BTreeMap<String, (Vec<KvOp>, Vec<bool>)> = BTreeMap::new();
    let mut open: BTreeMap<(u64, u64), (String, usize)> = BTreeMap::new();
    for (time, e) in events.iter().enumerate() {
        let time = time as u64;
        match &e.kind {
            EventKind::ClientInvoke {
                client,
                op,
                kind,
                key,
                value,
            } => {
                let input = if kind == "get" {
                    KvInput::Get
                } else {
                    KvInput::Put(value.clone().unwrap_or_default())
                };
                let (ops, keep) = by_key.entry(key.clone()).or_default();
                ops.push(Operation {
                    client: *client,
                    input,
                    output: None,
                    call: time,
                    ret: u64::MAX,
                });
                keep.push(true);
                open.insert((*client, *op), (key.clone(), ops.len() - 1));
            }
            EventKind::ClientComplete {
                client,
                op,
                outcome,
                value,
                ..
            } => {
                let Some((key, i)) = open.remove(&(*client, *op)) else {
                    continue;
                };
                let (ops, keep) = by_key.get_mut(&key).expect("opened key");
                match outcome.as_str() {
                    "ok" => {
                        ops[i].ret = time;
                        if ops[i].input == KvInput::Get {
                            // An absent key reads as the empty string.
                            ops[i].output = Some(value.clone().unwrap_or_default());
                        }
                    }
                    // Certainly not applied: it never happened.
                    "fail" => keep[i] = false,
                    // Unknown: stays pending.
                    _ => {}
                }
            }
            _ => {}
        }
    }
    by_key
        .into_iter()
        .map(|(key, (ops, keep))| (key, kept(ops, &keep, |i| *i == KvInput::Get)))
        .collect()
}

/// The etcd KV workload's register operations, per key: linearizable reads, puts and
/// compare-and-set transactions on integer values, with unknown outcomes pending.
/// Time is an event's position in `events`, as in [`from_trace`].
pub fn registers_from_trace(events: &[TraceEvent]) -> BTreeMap<String, Vec<CasOp>> {
    let mut by_key: BTreeMap<String, (Vec<CasOp>, Vec<bool>)> = BTreeMap::new();
    let mut open: BTreeMap<(u64, u64), (String, usize)> = BTreeMap::new();
    for (time, e) in events.iter().enumerate() {
        let time = time as u64;
        match &e.kind {
            EventKind::RegisterInvoke {
                client,
                op,
                key,
                kind,
                value,
                expect,
            } => {
                let input = match (kind.as_str(), value, expect) {
                    ("write", Some(v), _) => CasInput::Write(*v),
                    ("cas", Some(to), Some(from)) => CasInput::Cas {
                        from: *from,
                        to: *to,
                    },
                    _ => CasInput::Read,
                };
                let (ops, keep) = by_key.entry(key.clone()).or_default();
                ops.push(Operation {
                    client: *client,
                    input,
                    output: None,
                    call: time,
                    ret: u64::MAX,
                });
                keep.push(true);
                open.insert((*client, *op), (key.clone(), ops.len() - 1));
            }
            EventKind::RegisterComplete {
                client,
                op,
                outcome,
                value,
                swapped,
                ..
            } => {
                let Some((key, i)) = open.remove(&(*client, *op)) else {
                    continue;
                };
                let (ops, keep) = by_key.get_mut(&key).expect("opened key");
                let op = &mut ops[i];
                match outcome.as_str() {
                    "ok" => {
                        op.ret = time;
                        op.output = Some(match op.input {
                            CasInput::Read => CasOutput::Read(*value),
                            CasInput::Write(_) => CasOutput::Written,
                            CasInput::Cas { .. } => CasOutput::Swapped(swapped.unwrap_or(false)),
                        });
                    }
                    // Certainly without effect (a failed read, a refused write).
                    "fail" => keep[i] = false,
                    // Unknown: stays pending.
                    _ => {}
                }
            }
            _ => {}
        }
    }
    by_key
        .into_iter()
        .map(|(key, (ops, keep))| (key, kept(ops, &keep, |i| *i == CasInput::Read)))
        .collect()
}
