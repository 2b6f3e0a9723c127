//! The TTL-only demonstration shows what it claims: clients that trust the lease TTL
//! alone, without fencing, end up two at a time inside the critical section of an
//! unfenced resource once a holder is paused past its TTL (Kleppmann, "How to do
//! distributed locking", 2016; DESIGN.md, "Invariants": the harness can show it).
//!
//! Unlike the other checkers this one fails when the bad thing does *not* happen:
//! the demo forces at least one pause past the TTL while another client waits, so a
//! run without a single loss of exclusivity means the demo no longer demonstrates
//! anything (a changed workload, a lock that stopped granting) — it must not rot
//! silently. The losses themselves are expected and reported, not failures.

use std::collections::BTreeMap;

use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "ttl_only_demo";

/// Resource names of the demo's unfenced resources start with this.
pub const UNFENCED_PREFIX: &str = "unfenced:";

/// What the demo showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    /// Times a client entered the critical section while another was inside.
    pub exclusivity_lost: u64,
    /// Writes a fenced resource would have refused (a token older than one seen).
    pub stale_writes: u64,
}

impl DemoReport {
    /// The line a passing demo prints.
    pub fn line(&self) -> String {
        format!(
            "ttl_only: exclusivity lost {} times (expected); a fenced resource would have refused {} stale writes",
            self.exclusivity_lost, self.stale_writes
        )
    }
}

/// Counts the losses of exclusivity on unfenced resources; `None` when the run had
/// no TTL-only clients.
pub fn check(events: &[TraceEvent]) -> Option<Result<DemoReport, Violation>> {
    // resource → clients inside, and the highest token written
    let mut inside: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut highest: BTreeMap<&str, i64> = BTreeMap::new();
    let mut report = DemoReport {
        exclusivity_lost: 0,
        stale_writes: 0,
    };
    let mut demo_ran = false;
    for e in events {
        let EventKind::ResourceWrite {
            resource,
            client,
            token,
            action,
            ..
        } = &e.kind
        else {
            continue;
        };
        if !resource.starts_with(UNFENCED_PREFIX) {
            continue;
        }
        demo_ran = true;
        let top = highest.entry(resource).or_insert(i64::MIN);
        if *token < *top {
            report.stale_writes += 1;
        }
        *top = (*top).max(*token);
        let clients = inside.entry(resource).or_default();
        match action.as_str() {
            "enter" => {
                if clients.iter().any(|c| c != client) {
                    report.exclusivity_lost += 1;
                }
                clients.push(*client);
            }
            _ => clients.retain(|c| c != client),
        }
    }
    if !demo_ran {
        return None;
    }
    if report.exclusivity_lost == 0 {
        return Some(Err(Violation {
            invariant: NAME,
            event_seq: events.last().map_or(0, |e| e.seq),
            message: "the TTL-only demo never showed two clients inside the critical section: it no longer demonstrates why fencing is needed (check that its holders still pause past the lease TTL while another client waits)".into(),
            related: Vec::new(),
        }));
    }
    Some(Ok(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn write(h: &mut History, client: u64, token: i64, action: &str) -> TraceEvent {
        h.push(
            client,
            EventKind::ResourceWrite {
                resource: "unfenced:demo".into(),
                client,
                token,
                action: action.into(),
                accepted: true,
            },
        )
    }

    #[test]
    fn fails_when_the_demo_shows_nothing() {
        let mut h = History::default();
        let orderly = vec![
            write(&mut h, 601, 5, "enter"),
            write(&mut h, 601, 5, "exit"),
            write(&mut h, 602, 8, "enter"),
            write(&mut h, 602, 8, "exit"),
        ];
        let v = check(&orderly).unwrap().unwrap_err();
        assert_eq!(v.invariant, NAME);
        assert_eq!(check(&[]), None);
    }

    #[test]
    fn counts_overlaps_and_stale_writes() {
        let mut h = History::default();
        let overlapping = vec![
            write(&mut h, 601, 5, "enter"),
            write(&mut h, 602, 8, "enter"),
            write(&mut h, 601, 5, "exit"),
            write(&mut h, 602, 8, "exit"),
        ];
        let report = check(&overlapping).unwrap().unwrap();
        assert_eq!(
            report,
            DemoReport {
                exclusivity_lost: 1,
                stale_writes: 1
            }
        );
        assert!(report
            .line()
            .contains("exclusivity lost 1 times (expected)"));
    }
}
