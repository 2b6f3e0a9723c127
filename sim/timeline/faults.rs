//! The harness's faults as shaded spans: a node down from its kill to its
//! restart, paused to resumed; partitions, one-way links and an isolated leader
//! until the network heals; link, latency, disk and clock-drift faults for as long
//! as they were drawn; clock jumps as marks. Every `Fault` event is also a mark
//! on the harness lane, so what the harness did is one click away.
//!
//! Reads what `sim/faults.rs` and `sim/world.rs` record: a plan action as the JSON
//! of [`Action`], or a sentence (`isolating leader 2`, `resume node 3`, `pause
//! client 301 for 900 ms`, `heal everything`, …); the node's own `Process`
//! events (`killed`, `paused`, `resumed`), and its `Recovered` at a restart.

use std::collections::BTreeMap;

use super::lanes::{node_lane, Opened};
use super::{Lane, Mark, Timeline};
use crate::sim::scenario::Action;
use crate::sim::trace::{EventKind, TraceEvent};

/// Spans open while the trace is read.
#[derive(Default)]
struct Open {
    /// Partitions, one-way links, isolated leaders: until the network heals.
    network: Vec<(String, Opened)>,
    /// Faults that heal by themselves: (lane, span, planned end).
    timed: Vec<(String, Opened, Option<u64>)>,
    down: BTreeMap<u64, Opened>,
    paused: BTreeMap<u64, Opened>,
}

/// Adds the fault spans and marks of `events` to `t` (and any lane they need).
pub fn draw(events: &[TraceEvent], t: &mut Timeline) {
    let mut open = Open::default();
    for e in events {
        match &e.kind {
            EventKind::Fault { action } => {
                t.marks.push(Mark {
                    lane: "net".into(),
                    ms: e.time_ms,
                    class: "fault",
                    label: action.clone(),
                    seq: e.seq,
                });
                match serde_json::from_str::<Action>(action) {
                    Ok(a) => planned(e, a, &mut open, t),
                    Err(_) => sentence(e, action, &mut open, t),
                }
            }
            EventKind::Process { change } => process(e, change, &mut open, t),
            EventKind::Recovered { .. } => {
                if let Some(o) = open.down.remove(&e.node) {
                    t.spans.push(o.close(node_lane(e.node), e.time_ms, false));
                }
            }
            _ => {}
        }
    }
    let end_ms = t.end_ms;
    heal_network(&mut open, t, end_ms, true);
    for (lane, o, until) in open.timed {
        let end = until.unwrap_or(u64::MAX);
        t.spans.push(o.close(lane, end.min(end_ms), end > end_ms));
    }
    for (node, o) in open.down.into_iter().chain(open.paused) {
        t.spans.push(o.close(node_lane(node), end_ms, true));
    }
    add_missing_lanes(t);
}

/// A fault of the plan (`sim/faults.rs`): its span, when it has one.
fn planned(e: &TraceEvent, action: Action, open: &mut Open, t: &mut Timeline) {
    let heals = |after: Option<u64>| after.map(|ms| e.time_ms + ms);
    match action {
        Action::Partition { groups, .. } => {
            let o = Opened::new(e, "fault-net", format!("partition {groups:?}"));
            open.network.push(("net".into(), o));
        }
        Action::OneWay { from, to, .. } => {
            let o = Opened::new(e, "fault-net", format!("one-way link {from} -> {to} cut"));
            open.network.push(("net".into(), o));
        }
        Action::HealNetwork => heal_network(open, t, e.time_ms, false),
        Action::LinkFaults {
            drop,
            duplicate,
            delay,
            max_delay_ms,
            heal_after_ms,
        } => {
            let label = format!(
                "link faults: drop {drop:.2}, duplicate {duplicate:.2}, delay {delay:.2} up to {max_delay_ms} ms"
            );
            let o = Opened::new(e, "fault-link", label);
            open.timed.push(("net".into(), o, heals(heal_after_ms)));
        }
        Action::Latency {
            min_ms,
            max_ms,
            heal_after_ms,
        } => {
            let o = Opened::new(e, "fault-link", format!("latency {min_ms}..{max_ms} ms"));
            open.timed.push(("net".into(), o, heals(heal_after_ms)));
        }
        Action::DiskFaults {
            node,
            heal_after_ms,
            ..
        } => {
            let o = Opened::new(e, "fault-disk", "disk faults");
            open.timed.push((node_lane(node), o, heals(heal_after_ms)));
        }
        Action::ClockDrift {
            node,
            ppm,
            heal_after_ms,
        } => {
            let o = Opened::new(e, "fault-clock", format!("clock drift {ppm} ppm"));
            open.timed.push((node_lane(node), o, heals(heal_after_ms)));
        }
        Action::ClockJump { node, delta_ms } => t.marks.push(Mark {
            lane: node_lane(node),
            ms: e.time_ms,
            class: "clock-jump",
            label: format!("clock jumps {delta_ms:+} ms"),
            seq: e.seq,
        }),
        // Kills, restarts, pauses and crashes show as the node's own Process
        // events; membership changes as sentences.
        _ => {}
    }
}

/// A fault the harness describes in words.
fn sentence(e: &TraceEvent, text: &str, open: &mut Open, t: &mut Timeline) {
    if text == "heal everything" {
        heal_network(open, t, e.time_ms, false);
        for (lane, o, until) in std::mem::take(&mut open.timed) {
            let end = until.map_or(e.time_ms, |u| u.min(e.time_ms));
            t.spans.push(o.close(lane, end, false));
        }
    } else if let Some(node) = number_after(text, "isolating leader ") {
        let label = format!("leader {node} isolated");
        open.network
            .push(("net".into(), Opened::new(e, "fault-net", &label)));
        open.network
            .push((node_lane(node), Opened::new(e, "fault-net", label)));
    } else if let Some(rest) = text.strip_prefix("pause client ") {
        // `pause client <id> for <ms> ms`
        let mut words = rest.split_whitespace();
        let client = words.next().and_then(|w| w.parse::<u64>().ok());
        let ms = words.nth(1).and_then(|w| w.parse::<u64>().ok());
        if let Some(client) = client {
            let o = Opened::new(e, "fault-paused", format!("paused {}", ms.unwrap_or(0)));
            open.timed
                .push((node_lane(client), o, ms.map(|ms| e.time_ms + ms)));
        }
    }
}

fn number_after(text: &str, prefix: &str) -> Option<u64> {
    text.strip_prefix(prefix)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A node's process, as the harness changed it.
fn process(e: &TraceEvent, change: &str, open: &mut Open, t: &mut Timeline) {
    let lane = node_lane(e.node);
    match change {
        "killed" => {
            if let Some(p) = open.paused.remove(&e.node) {
                t.spans.push(p.close(lane, e.time_ms, false));
            }
            open.down
                .entry(e.node)
                .or_insert_with(|| Opened::new(e, "fault-down", "down"));
        }
        "paused" => {
            open.paused
                .insert(e.node, Opened::new(e, "fault-paused", "paused"));
        }
        "resumed" => {
            if let Some(p) = open.paused.remove(&e.node) {
                t.spans.push(p.close(lane, e.time_ms, false));
            }
        }
        _ => {}
    }
}

fn heal_network(open: &mut Open, t: &mut Timeline, at_ms: u64, at_end: bool) {
    for (lane, o) in std::mem::take(&mut open.network) {
        t.spans.push(o.close(lane, at_ms, at_end));
    }
}

/// Lanes for faults on nodes that recorded nothing themselves.
fn add_missing_lanes(t: &mut Timeline) {
    let known: Vec<String> = t.lanes.iter().map(|l| l.id.clone()).collect();
    let mut missing: BTreeMap<String, ()> = BTreeMap::new();
    for lane in t
        .spans
        .iter()
        .map(|s| &s.lane)
        .chain(t.marks.iter().map(|m| &m.lane))
    {
        if !known.contains(lane) {
            missing.insert(lane.clone(), ());
        }
    }
    for id in missing.into_keys() {
        let label = format!("{id} (no events of its own)");
        t.lanes.push(Lane { id, label });
    }
}
