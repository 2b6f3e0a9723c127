//! Topic views converge after healing (seed 000; DESIGN.md "LogicNode"
//! invariants): every live broker's topic view ends at the same, newest metadata
//! version any of them applied.

use std::collections::BTreeMap;

use super::{violation_at_end, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "topic_views_converge";

/// `brokers`: ids of the brokers alive at the end.
pub fn check(events: &[TraceEvent], brokers: &[u64]) -> Result<(), Violation> {
    let mut views: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events {
        if let EventKind::TopicViewApplied { version } = &e.kind {
            views.insert(e.node, *version);
        }
    }
    let newest = brokers
        .iter()
        .filter_map(|b| views.get(b))
        .max()
        .copied()
        .unwrap_or(0);
    for &b in brokers {
        let v = views.get(&b).copied().unwrap_or(0);
        if v != newest {
            return Err(violation_at_end(
                NAME,
                events,
                format!("broker {b} has topic view v{v}, others v{newest}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_a_broker_keeps_an_older_view() {
        let mut h = History::default();
        let events = vec![
            h.push(2, EventKind::TopicViewApplied { version: 3 }),
            h.push(3, EventKind::TopicViewApplied { version: 3 }),
        ];
        check(&events, &[2, 3]).unwrap();
        let mut stale = events.clone();
        stale.push(h.push(2, EventKind::TopicViewApplied { version: 4 }));
        assert!(check(&stale, &[2, 3]).is_err());
    }
}
