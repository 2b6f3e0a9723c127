//! Broker expiry is safe: a broker whose reports reach the leader coo within the
//! expiry timeout is never expired — every expiry that removes a broker comes at
//! least `BROKER_TIMEOUT` after the broker's last accepted report, on the clock of
//! the leader that decided it (seed 000: "a broker silent for the timeout on the
//! leader's clock is expired"; `Coo::run_broker_expiry`).
//!
//! A report reaches the leader when its entry is committed and the coo accepts it
//! ([`Registry`]: a report older than the broker's last sequence number does not
//! count). The expiry's entry names its decider: the leader of the entry's term
//! (one leader per term). The report counts from its first application anywhere —
//! no member applies it earlier than that, so the decider cannot have seen it
//! earlier either — and the expiry from its own first application. Clock faults on
//! the decider are credited as `lease_expiry` credits them ([`ClockFaults`]): a
//! forward jump in between by its size, a fast drift by its rate. A jump of another
//! member's clock is not: the decider's own clock must measure the silence.

use super::coo_history::{leader_of, Registry, BROKER_TIMEOUT_MS};
use super::lease_timeline::ClockFaults;
use super::Violation;
use crate::sim::trace::TraceEvent;

pub const NAME: &str = "broker_expiry_safe";

pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    let registry = Registry::from_trace(events);
    if registry.expiries.is_empty() {
        return Ok(());
    }
    let clocks = ClockFaults::from_trace(events);
    for expiry in &registry.expiries {
        let report = expiry.last_report;
        let decider = leader_of(events, expiry.term);
        let silent_ms = expiry.time_ms.saturating_sub(report.time_ms);
        let allowed_ms =
            clocks.shortest_ttl_ms(BROKER_TIMEOUT_MS, report.time_ms, expiry.time_ms, decider);
        if silent_ms >= allowed_ms {
            continue;
        }
        return Err(Violation {
            invariant: NAME,
            event_seq: expiry.event,
            message: format!(
                "broker {} was expired at {} ms (decided by {} in term {}), only {silent_ms} ms after its report #{} was accepted at {} ms: it must stay registered until at least {} ms ({} ms timeout, clock faults on the decider credited)",
                expiry.broker,
                expiry.time_ms,
                decider.map_or("an unknown leader".into(), |n| format!("node {n}")),
                expiry.term,
                report.report_seq,
                report.time_ms,
                report.time_ms + allowed_ms,
                BROKER_TIMEOUT_MS,
            ),
            related: vec![report.event],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::coo_history::testing::applied;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::EventKind;

    fn history(h: &mut History, expired_at_ms: u64) -> Vec<TraceEvent> {
        let mut lead = h.role(2, "leader", 3, 2);
        lead.time_ms = 10;
        vec![
            lead,
            applied(h, 2, 1, 3, 1_000, "coo report broker=51 seq=1"),
            applied(h, 2, 2, 3, 2_000, "coo report broker=51 seq=2"),
            applied(h, 2, 3, 3, expired_at_ms, "coo expire broker=51 seq=2"),
        ]
    }

    #[test]
    fn an_expiry_a_timeout_after_the_last_report_passes() {
        let mut h = History::default();
        check(&history(&mut h, 8_100)).unwrap();
    }

    #[test]
    fn fires_on_an_expiry_inside_the_timeout_unless_the_deciders_clock_jumped() {
        let mut h = History::default();
        let events = history(&mut h, 5_000);
        let v = check(&events).unwrap_err();
        assert_eq!(v.event_seq, events[3].seq);
        assert_eq!(v.related, vec![events[2].seq]);
        assert!(v.message.contains("until at least 8000 ms"), "{v}");
        let jump = |h: &mut History, node: u64| {
            let mut e = h.push(
                0,
                EventKind::Fault {
                    action: format!(r#"{{"action":"clock_jump","node":{node},"delta_ms":3500}}"#),
                },
            );
            e.time_ms = 3_000;
            e
        };
        let mut excused = events.clone();
        excused.insert(3, jump(&mut h, 2));
        check(&excused).unwrap();
        // Another member's clock does not decide.
        let mut elsewhere = events.clone();
        elsewhere.insert(3, jump(&mut h, 1));
        assert!(check(&elsewhere).is_err());
    }
}
