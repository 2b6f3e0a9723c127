//! What the lease checkers (`lease_not_early`, `lease_lapses`, `lease_keys_removed`,
//! `lease_expiry`) read from a run: when the clients restarted each lease's TTL,
//! the clock faults injected (which may excuse an early expiry), the elections
//! (each restarts every lease's TTL) and the heal (in a faulty run, a lapsed lease
//! is judged from there), and when each lease was removed. Not a checker: shared
//! helpers.

use std::collections::BTreeMap;

use crate::sim::trace::{EventKind, TraceEvent};

/// A moment a lease's TTL restarted at the latest: a grant or a keep-alive answered `ok`.
pub struct Refresh {
    pub sent_ms: u64,
    pub ttl_ms: u64,
    pub client: u64,
    pub seq: u64,
}

/// Every lease's refreshes, in trace order.
pub fn refreshes(events: &[TraceEvent]) -> BTreeMap<i64, Vec<Refresh>> {
    let mut refreshes: BTreeMap<i64, Vec<Refresh>> = BTreeMap::new();
    for e in events {
        let (client, lease, ttl_ms, sent_ms) = match &e.kind {
            EventKind::LeaseGranted {
                client,
                lease,
                ttl_ms,
                sent_ms,
            } => (client, lease, ttl_ms, sent_ms),
            EventKind::KeepAlive {
                client,
                lease,
                sent_ms,
                outcome,
                ttl_ms,
            } if outcome == "ok" && *ttl_ms > 0 => (client, lease, ttl_ms, sent_ms),
            _ => continue,
        };
        refreshes.entry(*lease).or_default().push(Refresh {
            sent_ms: *sent_ms,
            ttl_ms: *ttl_ms,
            client: *client,
            seq: e.seq,
        });
    }
    refreshes
}

/// Each lease's first removal.
pub fn removals(events: &[TraceEvent]) -> BTreeMap<i64, Removal> {
    let mut removals = BTreeMap::new();
    for (lease, removal) in events.iter().filter_map(Removal::from_event) {
        removals.entry(lease).or_insert(removal);
    }
    removals
}

/// The first member to apply a lease's removal.
pub struct Removal {
    pub time_ms: u64,
    pub expired: bool,
    pub revision: i64,
    pub node: u64,
    pub seq: u64,
}

impl Removal {
    /// The removal `e` records, if it is a `LeaseRemoved` event: (lease, removal).
    pub fn from_event(e: &TraceEvent) -> Option<(i64, Removal)> {
        let EventKind::LeaseRemoved {
            lease,
            expired,
            revision,
        } = &e.kind
        else {
            return None;
        };
        Some((
            *lease,
            Removal {
                time_ms: e.time_ms,
                expired: *expired,
                revision: *revision,
                node: e.node,
                seq: e.seq,
            },
        ))
    }
}

/// Clock faults injected during the run, read from the harness's fault records.
#[derive(Debug, Default)]
pub struct ClockFaults {
    /// (time, node, forward jump) of every clock jumped forward.
    forward_jumps: Vec<(u64, u64, u64)>,
    /// Sum of every backward jump (a leader's deadlines come that much later).
    backward_ms: u64,
    /// (time, node, size) of every backward jump.
    backward_jumps: Vec<(u64, u64, u64)>,
    /// (from, until, node, ppm) of every fast drift (`until` = u64::MAX: never healed).
    fast_drifts: Vec<(u64, u64, u64, i64)>,
}

impl ClockFaults {
    /// Reads the `Fault` events the fault driver recorded (each action as JSON).
    pub fn from_trace(events: &[TraceEvent]) -> Self {
        let mut faults = ClockFaults::default();
        // node -> index into fast_drifts of its open window
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        for e in events {
            let EventKind::Fault { action } = &e.kind else {
                continue;
            };
            if action == "heal everything" {
                for (_, i) in std::mem::take(&mut open) {
                    faults.fast_drifts[i].1 = faults.fast_drifts[i].1.min(e.time_ms);
                }
                continue;
            }
            let Ok(json) = serde_json::from_str::<serde_json::Value>(action) else {
                continue;
            };
            let int = |name: &str| json.get(name).and_then(serde_json::Value::as_i64);
            let node = int("node").unwrap_or(0) as u64;
            match json.get("action").and_then(serde_json::Value::as_str) {
                Some("clock_jump") => match int("delta_ms") {
                    Some(delta) if delta > 0 => {
                        faults.forward_jumps.push((e.time_ms, node, delta as u64))
                    }
                    Some(delta) => {
                        faults.backward_ms += delta.unsigned_abs();
                        faults
                            .backward_jumps
                            .push((e.time_ms, node, delta.unsigned_abs()));
                    }
                    None => {}
                },
                Some("clock_drift") => {
                    if let Some(i) = open.remove(&node) {
                        faults.fast_drifts[i].1 = faults.fast_drifts[i].1.min(e.time_ms);
                    }
                    let ppm = int("ppm").unwrap_or(0);
                    if ppm > 0 {
                        let until = int("heal_after_ms")
                            .map_or(u64::MAX, |h| e.time_ms.saturating_add(h as u64));
                        faults.fast_drifts.push((e.time_ms, until, node, ppm));
                        open.insert(node, faults.fast_drifts.len() - 1);
                    }
                }
                _ => {}
            }
        }
        faults
    }

    /// Sum of every backward jump of the run.
    pub fn backward_ms(&self) -> u64 {
        self.backward_ms
    }

    /// Sum of the backward jumps of `node`'s clock from `from_ms` on.
    pub fn backward_ms_on(&self, node: u64, from_ms: u64) -> u64 {
        self.backward_jumps
            .iter()
            .filter(|(t, n, _)| *n == node && *t >= from_ms)
            .map(|(_, _, d)| d)
            .sum()
    }

    /// The least true time after `from` in which a TTL of `ttl_ms` may run out on
    /// `node`'s clock (`None`: on any node's), given the faults that touch
    /// `[from, to]`: each forward jump brings the end that much closer, a fast
    /// drift of rate ρ divides what is left by ρ.
    pub fn shortest_ttl_ms(&self, ttl_ms: u64, from: u64, to: u64, node: Option<u64>) -> u64 {
        let on = |n: u64| node.is_none_or(|want| want == n);
        let jumped: u64 = self
            .forward_jumps
            .iter()
            .filter(|(t, n, _)| (from..=to).contains(t) && on(*n))
            .map(|(_, _, d)| d)
            .sum();
        let ppm = self
            .fast_drifts
            .iter()
            .filter(|(start, until, n, _)| *start <= to && *until >= from && on(*n))
            .map(|(_, _, _, ppm)| *ppm)
            .max()
            .unwrap_or(0);
        let rate = 1.0 + ppm as f64 / 1e6;
        (ttl_ms.saturating_sub(jumped) as f64 / rate).floor() as u64
    }
}

/// A node winning an election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Election {
    pub time_ms: u64,
    pub term: u64,
    pub node: u64,
}

/// The run's elections, heal and end: when a lease nobody renews must be gone.
#[derive(Debug)]
pub struct RunTimeline {
    /// Every `Role` change to leader, in order.
    pub elections: Vec<Election>,
    /// The heal, if faults were injected before it.
    pub faulty_until_ms: Option<u64>,
    /// The last event's time.
    pub end_ms: u64,
    /// How long after the heal a leader must be elected (the scenario's bound).
    pub leader_within_ms: u64,
}

impl RunTimeline {
    pub fn from_trace(events: &[TraceEvent], leader_within_ms: u64) -> Self {
        let heal_ms = events.iter().find_map(|e| match &e.kind {
            EventKind::Fault { action } if action == "heal everything" => Some(e.time_ms),
            _ => None,
        });
        let faulty_until_ms = heal_ms.filter(|&heal| {
            events.iter().any(|e| {
                e.time_ms < heal
                    && matches!(&e.kind, EventKind::Fault { action } if action != "heal everything")
            })
        });
        let elections = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Role { role, term, .. } if role == "leader" => Some(Election {
                    time_ms: e.time_ms,
                    term: *term,
                    node: e.node,
                }),
                _ => None,
            })
            .collect();
        RunTimeline {
            elections,
            faulty_until_ms,
            end_ms: events.last().map_or(0, |e| e.time_ms),
            leader_within_ms,
        }
    }

    /// When a lease of `ttl_ms` whose TTL last restarted at `restarted_ms`, and
    /// that nobody renewed since, must be gone: `grace_ms` after its TTL ran out,
    /// counted from the heal (plus the election bound) if it restarted before the
    /// heal of a faulty run, and from every election that came before it was due
    /// (a new leader restarts every TTL).
    pub fn lapse_due_ms(&self, restarted_ms: u64, ttl_ms: u64, grace_ms: u64) -> u64 {
        let mut from = match self.faulty_until_ms {
            Some(heal) if restarted_ms < heal => heal + self.leader_within_ms,
            _ => restarted_ms,
        };
        while let Some(elected) = self
            .elections
            .iter()
            .find(|e| e.time_ms > from && e.time_ms <= from + ttl_ms + grace_ms)
        {
            from = elected.time_ms;
        }
        from + ttl_ms + grace_ms
    }

    /// The first election of a term above `term`, if any.
    pub fn superseded_ms(&self, term: u64) -> Option<u64> {
        self.elections
            .iter()
            .find(|e| e.term > term)
            .map(|e| e.time_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn fault(h: &mut History, time_ms: u64, action: &str) -> TraceEvent {
        let mut e = h.push(
            0,
            EventKind::Fault {
                action: action.into(),
            },
        );
        e.time_ms = time_ms;
        e
    }

    #[test]
    fn clock_faults_are_credited_per_node_or_for_any() {
        let mut h = History::default();
        let events = vec![
            fault(
                &mut h,
                100,
                r#"{"action":"clock_jump","node":2,"delta_ms":500}"#,
            ),
            fault(
                &mut h,
                200,
                r#"{"action":"clock_drift","node":3,"ppm":250000,"heal_after_ms":1000}"#,
            ),
            fault(
                &mut h,
                300,
                r#"{"action":"clock_jump","node":1,"delta_ms":-700}"#,
            ),
        ];
        let clocks = ClockFaults::from_trace(&events);
        assert_eq!(clocks.backward_ms(), 700);
        assert_eq!(clocks.shortest_ttl_ms(2_000, 0, 1_000, Some(1)), 2_000);
        assert_eq!(clocks.shortest_ttl_ms(2_000, 0, 1_000, Some(2)), 1_500);
        assert_eq!(clocks.shortest_ttl_ms(2_000, 0, 1_000, Some(3)), 1_600);
        // Any node: the jump and the drift together.
        assert_eq!(clocks.shortest_ttl_ms(2_000, 0, 1_000, None), 1_200);
        // The drift healed at 1200 ms, the jump came before 150 ms.
        assert_eq!(clocks.shortest_ttl_ms(2_000, 1_300, 3_000, None), 2_000);
    }

    #[test]
    fn a_lapsed_lease_is_due_after_the_last_restart_election_or_heal() {
        let mut h = History::default();
        let lead = |h: &mut History, time_ms: u64, term: u64| {
            let mut e = h.role(1, "leader", term, 1);
            e.time_ms = time_ms;
            e
        };
        let steady = vec![lead(&mut h, 10, 1), lead(&mut h, 3_000, 2)];
        let timeline = RunTimeline::from_trace(&steady, 5_000);
        // Restarted at 2000 ms: the election at 3000 ms restarts it again.
        assert_eq!(timeline.lapse_due_ms(2_000, 2_000, 1_000), 6_000);
        // Restarted at 0: each election restarts it before it is due.
        assert_eq!(timeline.lapse_due_ms(0, 2_000, 1_000), 6_000);
        assert_eq!(timeline.lapse_due_ms(3_500, 2_000, 1_000), 6_500);
        assert_eq!(timeline.superseded_ms(1), Some(3_000));
        assert_eq!(timeline.superseded_ms(2), None);
        let faulty = vec![
            steady[0].clone(),
            fault(&mut h, 500, "kill"),
            fault(&mut h, 1_000, "heal everything"),
        ];
        let timeline = RunTimeline::from_trace(&faulty, 5_000);
        assert_eq!(timeline.faulty_until_ms, Some(1_000));
        assert_eq!(timeline.lapse_due_ms(200, 2_000, 1_000), 9_000);
        assert_eq!(timeline.lapse_due_ms(1_200, 2_000, 1_000), 4_200);
    }
}

#[cfg(test)]
pub mod testing {
    //! Hand-made lease histories.
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::{EventKind, TraceEvent};

    pub fn granted(h: &mut History, lease: i64, sent_ms: u64) -> TraceEvent {
        h.push(
            300,
            EventKind::LeaseGranted {
                client: 300,
                lease,
                ttl_ms: 2000,
                sent_ms,
            },
        )
    }

    pub fn kept_alive(h: &mut History, lease: i64, sent_ms: u64) -> TraceEvent {
        h.push(
            300,
            EventKind::KeepAlive {
                client: 300,
                lease,
                sent_ms,
                outcome: "ok".into(),
                ttl_ms: 2000,
            },
        )
    }

    pub fn removed(h: &mut History, lease: i64, expired: bool, revision: i64) -> TraceEvent {
        h.push(
            2,
            EventKind::LeaseRemoved {
                lease,
                expired,
                revision,
            },
        )
    }

    pub fn at(mut e: TraceEvent, time_ms: u64) -> TraceEvent {
        e.time_ms = time_ms;
        e
    }
}
