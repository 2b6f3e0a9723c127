//! `SIM_SWEEP=bridge-times`: Link Bridge's figures in simulated time, over
//! `SIM_BENCH_SEEDS` seeds of every scenario with a `[bridge]` section:
//!
//! - shutdown notice → every client moved: from the agent's `shutdown_notice` call
//!   to the last client whose view no longer shows the instance serving (so its
//!   balanced channel has dropped it);
//! - broker crash or graceful stop → client served again: from the crash (or the
//!   start of the stop) to each of its clients being subscribed through another
//!   broker.

use std::collections::BTreeMap;

use super::run::run_once;
use super::scenario::Scenario;
use super::trace::{BridgeEvent, EventKind, TraceEvent};

fn bridge(e: &TraceEvent) -> Option<&BridgeEvent> {
    match &e.kind {
        EventKind::Bridge(b) => Some(b),
        _ => None,
    }
}

/// Per acknowledged notice: how long until every client that was following the
/// service had moved off the instance (None: some client never did before it
/// ended).
pub fn notice_to_every_client_ms(events: &[TraceEvent]) -> Vec<Option<u64>> {
    let clients: Vec<&str> = events
        .iter()
        .filter_map(|e| match bridge(e) {
            Some(BridgeEvent::ClientStarted { client, .. }) => Some(client.as_str()),
            _ => None,
        })
        .collect();
    let serving = |instances: &[(String, String)], id: &str| {
        instances
            .iter()
            .any(|(i, status)| i == id && status == "serving")
    };
    let mut out = Vec::new();
    for e in events {
        let Some(BridgeEvent::NoticeSent {
            sent_ms,
            instance,
            outcome,
            ..
        }) = bridge(e)
        else {
            continue;
        };
        if outcome != "ok" {
            continue;
        }
        let mut worst = Some(0u64);
        for client in &clients {
            // The client's view when the notice was sent, then its changes.
            let mut shown = true;
            let mut moved = None;
            for v in events {
                let Some(BridgeEvent::ClientViewed {
                    client: c,
                    instances,
                    ..
                }) = bridge(v)
                else {
                    continue;
                };
                if c != client {
                    continue;
                }
                if v.time_ms <= *sent_ms {
                    shown = serving(instances, instance);
                } else if !serving(instances, instance) {
                    moved = Some(v.time_ms - sent_ms);
                    break;
                }
            }
            let took = if shown { moved } else { Some(0) };
            worst = match (worst, took) {
                (Some(w), Some(t)) => Some(w.max(t)),
                _ => None,
            };
        }
        out.push(worst);
    }
    out
}

/// Per client of a crashed broker: how long until it was subscribed through
/// another broker.
pub fn failover_ms(events: &[TraceEvent]) -> Vec<u64> {
    let mut on: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut stranded: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        match bridge(e) {
            Some(BridgeEvent::ClientViewed { client, broker, .. }) => {
                if let (Some(b), Some(&(at, dead))) = (broker, stranded.get(client.as_str())) {
                    if b != dead {
                        out.push(e.time_ms - at);
                        stranded.remove(client.as_str());
                    }
                }
                on.insert(client, broker.as_deref());
            }
            Some(
                BridgeEvent::BrokerStopping { broker } | BridgeEvent::BrokerCrashed { broker },
            ) => {
                for (client, current) in &on {
                    if *current == Some(broker.as_str()) && !stranded.contains_key(client) {
                        stranded.insert(client, (e.time_ms, broker));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn spread(mut times: Vec<u64>) -> String {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    if times.is_empty() {
        return "none".into();
    }
    format!(
        "{} cases: median {} ms, p90 {} ms, worst {} ms",
        times.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    )
}

pub fn main(scenarios: Vec<Scenario>) -> i32 {
    let seeds: u64 = std::env::var("SIM_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    for scenario in scenarios.iter().filter(|s| s.bridge.any()) {
        let (mut notices, mut never, mut failovers, mut failures) = (Vec::new(), 0, Vec::new(), 0);
        for seed in 1..=seeds {
            let r = run_once(scenario, seed);
            failures += u64::from(r.failure.is_some());
            for t in notice_to_every_client_ms(&r.events) {
                match t {
                    Some(t) => notices.push(t),
                    None => never += 1,
                }
            }
            failovers.extend(failover_ms(&r.events));
        }
        println!(
            "{}: {seeds} seeds{}\n  shutdown notice -> every client moved: {}{}\n  broker crash or stop -> client subscribed on another broker: {}",
            scenario.name,
            if failures > 0 { format!(" ({failures} failing)") } else { String::new() },
            spread(notices),
            if never > 0 { format!(" ({never} notices some client ended before seeing)") } else { String::new() },
            spread(failovers)
        );
    }
    0
}
