//! Reading histories: the golden formats (Porcupine's key/value EDN lines and
//! Jepsen's etcd logs) and the harness's own trace.

use std::collections::BTreeMap;

use super::models::{CasInput, CasOutput, KvInput};
use super::wgl::Operation;
use crate::sim::trace::{EventKind, TraceEvent};

pub type KvOp = Operation<KvInput, String>;
pub type CasOp = Operation<CasInput, CasOutput>;

/// The value after `:name ` in an EDN-like line: a keyword, number, nil or string.
fn edn_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(":{name} "))? + name.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return Some(&quoted[..quoted.find('"')?]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Parses Porcupine's key/value format into per-key histories.
pub fn parse_kv(text: &str) -> Result<BTreeMap<String, Vec<KvOp>>, String> {
    let mut by_key: BTreeMap<String, Vec<KvOp>> = BTreeMap::new();
    // process → (key, index into that key's ops)
    let mut open: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |what: &str| format!("line {}: {what}: {line}", n + 1);
        let process: u64 = edn_field(line, "process")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("no :process"))?;
        let kind = edn_field(line, "type").ok_or_else(|| bad("no :type"))?;
        let f = edn_field(line, "f").ok_or_else(|| bad("no :f"))?;
        let key = edn_field(line, "key")
            .ok_or_else(|| bad("no :key"))?
            .to_string();
        let value = edn_field(line, "value")
            .filter(|v| *v != "nil")
            .map(str::to_string);
        let time = n as u64;
        match kind {
            ":invoke" => {
                let input = match f {
                    ":get" => KvInput::Get,
                    ":put" => KvInput::Put(value.unwrap_or_default()),
                    ":append" => KvInput::Append(value.unwrap_or_default()),
                    other => return Err(bad(&format!("unknown :f {other}"))),
                };
                let ops = by_key.entry(key.clone()).or_default();
                ops.push(Operation {
                    client: process,
                    input,
                    output: None,
                    call: time,
                    ret: u64::MAX,
                });
                open.insert(process, (key, ops.len() - 1));
            }
            ":ok" => {
                let (key, i) = open
                    .remove(&process)
                    .ok_or_else(|| bad("completion without invocation"))?;
                let op = &mut by_key.get_mut(&key).expect("opened key")[i];
                op.ret = time;
                // Puts and appends answer nothing; a get answers what it read.
                op.output = (f == ":get").then(|| value.unwrap_or_default());
            }
            other => return Err(bad(&format!("unknown :type {other}"))),
        }
    }
    // A get still pending observed nothing: drop it. Writes stay pending (unknown).
    for ops in by_key.values_mut() {
        ops.retain(|op| !(op.ret == u64::MAX && op.input == KvInput::Get));
    }
    Ok(by_key)
}

fn parse_int(v: &str) -> Option<i64> {
    v.parse().ok()
}

/// Parses a Jepsen etcd log into one compare-and-set register history.
pub fn parse_etcd_log(text: &str) -> Result<Vec<CasOp>, String> {
    let mut ops: Vec<CasOp> = Vec::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut dropped: Vec<usize> = Vec::new();
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
        match kind {
            ":invoke" => {
                let input = match f {
                    ":read" => CasInput::Read,
                    ":write" => CasInput::Write(
                        parse_int(&value).ok_or_else(|| bad("write of a non-number"))?,
                    ),
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
                open.insert(process, ops.len() - 1);
            }
            ":ok" | ":fail" | ":info" => {
                let Some(i) = open.remove(&process) else {
                    continue;
                };
                let op = &mut ops[i];
                match (kind, &op.input) {
                    // Unknown outcome: stays pending.
                    (":info", _) => {}
                    // A read that failed (timed out) constrains nothing.
                    (":fail", CasInput::Read) => dropped.push(i),
                    (":ok", CasInput::Read) => {
                        op.ret = time;
                        op.output = Some(CasOutput::Read(parse_int(&value)));
                    }
                    (":ok", CasInput::Write(_)) => {
                        op.ret = time;
                        op.output = Some(CasOutput::Written);
                    }
                    // A failed write did not happen.
                    (":fail", CasInput::Write(_)) => dropped.push(i),
                    (_, CasInput::Cas { .. }) => {
                        op.ret = time;
                        op.output = Some(CasOutput::Swapped(kind == ":ok"));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Reads still pending at the end observed nothing.
    let pending_reads: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.ret == u64::MAX && op.input == CasInput::Read)
        .map(|(i, _)| i)
        .collect();
    dropped.extend(pending_reads);
    dropped.sort_unstable();
    for i in dropped.into_iter().rev() {
        ops.remove(i);
    }
    Ok(ops)
}

/// The harness's KV client operations, per key: puts and linearizable gets, with
/// unknown outcomes pending. Times are simulated milliseconds.
pub fn from_trace(events: &[TraceEvent]) -> BTreeMap<String, Vec<KvOp>> {
    let mut by_key: BTreeMap<String, Vec<KvOp>> = BTreeMap::new();
    let mut open: BTreeMap<(u64, u64), (String, usize)> = BTreeMap::new();
    for e in events {
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
                let ops = by_key.entry(key.clone()).or_default();
                ops.push(Operation {
                    client: *client,
                    input,
                    output: None,
                    call: e.time_ms,
                    ret: u64::MAX,
                });
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
                let ops = by_key.get_mut(&key).expect("opened key");
                match outcome.as_str() {
                    "ok" => {
                        ops[i].ret = e.time_ms;
                        if ops[i].input == KvInput::Get {
                            ops[i].output = Some(value.clone().unwrap_or_default());
                        }
                    }
                    // Certainly not applied: it never happened.
                    "fail" => ops[i].ret = u64::MAX - 1,
                    // Unknown: stays pending.
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for ops in by_key.values_mut() {
        ops.retain(|op| {
            op.ret != u64::MAX - 1 && !(op.ret == u64::MAX && op.input == KvInput::Get)
        });
    }
    by_key
}

/// The etcd KV workload's register operations, per key: linearizable reads, puts and
/// compare-and-set transactions on integer values, with unknown outcomes pending.
pub fn registers_from_trace(events: &[TraceEvent]) -> BTreeMap<String, Vec<CasOp>> {
    let mut by_key: BTreeMap<String, Vec<CasOp>> = BTreeMap::new();
    let mut open: BTreeMap<(u64, u64), (String, usize)> = BTreeMap::new();
    let mut dropped: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for e in events {
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
                let ops = by_key.entry(key.clone()).or_default();
                ops.push(Operation {
                    client: *client,
                    input,
                    output: None,
                    call: e.time_ms,
                    ret: u64::MAX,
                });
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
                let op = &mut by_key.get_mut(&key).expect("opened key")[i];
                match outcome.as_str() {
                    "ok" => {
                        op.ret = e.time_ms;
                        op.output = Some(match op.input {
                            CasInput::Read => CasOutput::Read(*value),
                            CasInput::Write(_) => CasOutput::Written,
                            CasInput::Cas { .. } => CasOutput::Swapped(swapped.unwrap_or(false)),
                        });
                    }
                    // Certainly without effect (a failed read, a refused write).
                    "fail" => dropped.entry(key).or_default().push(i),
                    // Unknown: stays pending.
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for (key, ops) in by_key.iter_mut() {
        let gone = dropped.remove(key).unwrap_or_default();
        let mut i = 0;
        ops.retain(|op| {
            // Drop what certainly had no effect, and reads that never answered.
            let pending_read = op.ret == u64::MAX && op.input == CasInput::Read;
            let keep = !gone.contains(&i) && !pending_read;
            i += 1;
            keep
        });
    }
    by_key
}
