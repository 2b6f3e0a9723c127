//! The trace as lanes: each node's role and term, each LogicNode's mode, each
//! client's operations (invoke to complete, by outcome) and other client events.

use std::collections::BTreeMap;

use super::{Lane, Mark, Span, Timeline};
use crate::sim::trace::{EventKind, TraceEvent};

/// Node ids below this are cluster members; the harness is 0, clients and
/// other hosts (bridge brokers, agents, library clients) use ids from 100 on.
pub const FIRST_CLIENT_ID: u64 = 100;

pub fn node_lane(id: u64) -> String {
    if id == 0 {
        "net".to_string()
    } else if id < FIRST_CLIENT_ID {
        format!("n{id}")
    } else {
        format!("c{id}")
    }
}

fn mode_lane(id: u64) -> String {
    format!("m{id}")
}

/// A span begun and not yet ended.
#[derive(Debug, Clone)]
pub struct Opened {
    pub start_ms: u64,
    pub class: String,
    pub label: String,
    pub seqs: Vec<u64>,
}

impl Opened {
    pub fn new(e: &TraceEvent, class: impl Into<String>, label: impl Into<String>) -> Self {
        Opened {
            start_ms: e.time_ms,
            class: class.into(),
            label: label.into(),
            seqs: vec![e.seq],
        }
    }

    /// The span, ended at `end_ms` (`open`: still going when the trace ends).
    pub fn close(self, lane: String, end_ms: u64, open: bool) -> Span {
        Span {
            lane,
            start_ms: self.start_ms,
            end_ms: end_ms.max(self.start_ms),
            class: self.class,
            label: self.label,
            seqs: self.seqs,
            open,
        }
    }
}

/// The event's type as the JSON names it (`Role`, `Bridge client_started`, …).
pub fn kind_name(kind: &EventKind) -> String {
    let value = serde_json::to_value(kind).unwrap_or_default();
    let name = value["type"].as_str().unwrap_or("?");
    match value["event"].as_str() {
        Some(inner) => format!("{name} {inner}"),
        None => name.to_string(),
    }
}

/// Role classes the page styles; anything else draws as `role-other`.
fn role_class(role: &str) -> &'static str {
    match role {
        "leader" => "role-leader",
        "candidate" => "role-candidate",
        "pre-candidate" | "precandidate" => "role-precandidate",
        "follower" => "role-follower",
        _ => "role-other",
    }
}

/// What is open while the trace is read.
#[derive(Default)]
struct Lanes {
    t: Timeline,
    roles: BTreeMap<u64, Opened>,
    modes: BTreeMap<u64, Opened>,
    /// (workload, client, op) → the operation's lane and bar.
    ops: BTreeMap<(u8, u64, u64), (String, Opened)>,
    nodes: BTreeMap<u64, ()>,
    mode_nodes: BTreeMap<u64, ()>,
    clients: BTreeMap<u64, ()>,
}

impl Lanes {
    fn close_role(&mut self, node: u64, at_ms: u64) {
        if let Some(o) = self.roles.remove(&node) {
            self.t.spans.push(o.close(node_lane(node), at_ms, false));
        }
    }

    fn close_mode(&mut self, node: u64, at_ms: u64) {
        if let Some(o) = self.modes.remove(&node) {
            self.t.spans.push(o.close(mode_lane(node), at_ms, false));
        }
    }

    fn mark(&mut self, lane: String, e: &TraceEvent, class: &'static str, label: String) {
        self.t.marks.push(Mark {
            lane,
            ms: e.time_ms,
            class,
            label,
            seq: e.seq,
        });
    }

    fn invoke(&mut self, e: &TraceEvent, workload: u8, client: u64, op: u64, label: String) {
        self.clients.insert(e.node, ());
        let bar = Opened::new(e, "op-unknown", label);
        self.ops
            .insert((workload, client, op), (node_lane(e.node), bar));
    }

    fn complete(&mut self, e: &TraceEvent, key: (u8, u64, u64), outcome: &str, answer: String) {
        let Some((lane, mut bar)) = self.ops.remove(&key) else {
            return;
        };
        bar.class = match outcome {
            "ok" => "op-ok",
            "fail" => "op-fail",
            _ => "op-unknown",
        }
        .to_string();
        bar.label = format!("{}: {outcome}{answer}", bar.label);
        bar.seqs.push(e.seq);
        self.t.spans.push(bar.close(lane, e.time_ms, false));
    }

    fn node_event(&mut self, e: &TraceEvent) {
        let id = e.node;
        self.nodes.insert(id, ());
        match &e.kind {
            EventKind::Role { role, term, .. } => {
                self.close_role(id, e.time_ms);
                let o = Opened::new(e, role_class(role), format!("{role} t{term}"));
                self.roles.insert(id, o);
            }
            EventKind::Process { change } if change == "killed" => {
                self.close_role(id, e.time_ms);
                self.close_mode(id, e.time_ms);
            }
            EventKind::Stopped { reason } => {
                self.close_role(id, e.time_ms);
                self.mark(node_lane(id), e, "stopped", format!("stopped: {reason}"));
            }
            EventKind::Recovered { term, commit, .. } => {
                let label = format!("started from disk: term {term}, commit {commit}");
                self.mark(node_lane(id), e, "recovered", label);
            }
            _ => self.mode_event(e),
        }
    }

    /// The MQ control plane's events: a LogicNode's mode and loops, its broker's
    /// receivers.
    fn mode_event(&mut self, e: &TraceEvent) {
        let id = e.node;
        let label = match &e.kind {
            EventKind::ModeSwitched { from, to } => {
                self.close_mode(id, e.time_ms);
                let o = Opened::new(e, "mode", format!("{to} (from {from})"));
                self.modes.insert(id, o);
                format!("mode {from} -> {to}")
            }
            EventKind::LogicNodeStopped => {
                self.close_mode(id, e.time_ms);
                "logic node stopped".to_string()
            }
            EventKind::LoopStarted { mode } => format!("{mode} loop started"),
            EventKind::LoopStopped { mode } => format!("{mode} loop stopped"),
            EventKind::ReceiverRegistered { registration } => {
                format!("receiver #{registration} registered")
            }
            EventKind::ReceiverReleased { registration } => {
                format!("receiver #{registration} released")
            }
            _ => return,
        };
        self.mode_nodes.insert(id, ());
        self.mark(mode_lane(id), e, "mq", label);
    }

    fn client_event(&mut self, e: &TraceEvent) {
        match &e.kind {
            EventKind::ClientInvoke {
                client,
                op,
                kind,
                key,
                value,
            } => {
                let v = value.as_ref().map(|v| format!("={v}")).unwrap_or_default();
                self.invoke(e, 0, *client, *op, format!("#{op} {kind} {key}{v}"));
            }
            EventKind::ClientComplete {
                client,
                op,
                outcome,
                value,
                ..
            } => {
                let v = value
                    .as_ref()
                    .map(|v| format!(" -> {v}"))
                    .unwrap_or_default();
                self.complete(e, (0, *client, *op), outcome, v);
            }
            EventKind::RegisterInvoke {
                client,
                op,
                key,
                kind,
                value,
                expect,
            } => {
                let args = match (expect, value) {
                    (Some(from), Some(to)) => format!(" {from}->{to}"),
                    (_, Some(v)) => format!("={v}"),
                    _ => String::new(),
                };
                self.invoke(e, 1, *client, *op, format!("#{op} {kind} {key}{args}"));
            }
            EventKind::RegisterComplete {
                client,
                op,
                outcome,
                value,
                swapped,
                ..
            } => {
                let mut answer = value.map(|v| format!(" -> {v}")).unwrap_or_default();
                if let Some(s) = swapped {
                    answer.push_str(&format!(" swapped={s}"));
                }
                self.complete(e, (1, *client, *op), outcome, answer);
            }
            other => {
                self.clients.insert(e.node, ());
                self.mark(node_lane(e.node), e, "client-event", kind_name(other));
            }
        }
    }
}

/// Lanes, role and mode spans, operation bars and client events of `events`.
/// Fault spans come from `faults::draw`; the lanes they need are created here.
pub fn draw(events: &[TraceEvent]) -> Timeline {
    let mut l = Lanes::default();
    for e in events {
        match e.node {
            0 => {
                if !matches!(e.kind, EventKind::Fault { .. }) {
                    l.mark("net".into(), e, "harness-event", kind_name(&e.kind));
                }
            }
            id if id < FIRST_CLIENT_ID => l.node_event(e),
            _ => l.client_event(e),
        }
    }
    let end_ms = events.last().map_or(0, |e| e.time_ms).max(1);
    for (id, o) in std::mem::take(&mut l.roles) {
        l.t.spans.push(o.close(node_lane(id), end_ms, true));
    }
    for (id, o) in std::mem::take(&mut l.modes) {
        l.t.spans.push(o.close(mode_lane(id), end_ms, true));
    }
    for (_, (lane, o)) in std::mem::take(&mut l.ops) {
        l.t.spans.push(o.close(lane, end_ms, true));
    }
    let mut t = l.t;
    t.end_ms = end_ms;
    t.total_events = events.len();
    t.lanes.push(Lane {
        id: "net".into(),
        label: "harness / network".into(),
    });
    for &id in l.nodes.keys() {
        t.lanes.push(Lane {
            id: node_lane(id),
            label: format!("node {id}"),
        });
        if l.mode_nodes.contains_key(&id) {
            t.lanes.push(Lane {
                id: mode_lane(id),
                label: format!("node {id} LogicNode"),
            });
        }
    }
    for &id in l.clients.keys() {
        t.lanes.push(Lane {
            id: node_lane(id),
            label: format!("client {id}"),
        });
    }
    t
}
