//! What the coo checkers (`broker_expiry_safe`, `broker_expiry_live`,
//! `partition_placement`) read from a run: the committed coo log of broker reports
//! and expiries (each index as first applied by any member), and the broker
//! registry replayed from it — which reports the coo accepted and which expiries
//! removed a broker. Not a checker: shared helpers.
//!
//! The replay follows the coo's documented rules (`src/mq/coo/state.rs`): a report
//! registers an unknown broker, and otherwise counts only if its sequence number is
//! above the broker's last (older ones are retries that arrived late, or a restarted
//! broker counting from 1 again); an expiry removes the broker only if the
//! broker's last accepted report is still the one the expiry names (sequence
//! number and stamp).

use std::collections::BTreeMap;

use crate::sim::trace::{EventKind, TraceEvent};

/// How long a broker may stay silent before the leader coo expires it.
pub const BROKER_TIMEOUT_MS: u64 = coordlab::mq::coo::BROKER_TIMEOUT.as_millis() as u64;

/// A coo command about a broker, as the observer describes it (`coo report
/// broker=B seq=S at=T`, `coo expire broker=B seq=S at=T`): `at_ms` is the report's
/// stamp (the accepting leader's clock), or the stamp the expiry decided on (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerCommand {
    Report { broker: u64, seq: u64, at_ms: u64 },
    Expire { broker: u64, seq: u64, at_ms: u64 },
}

impl BrokerCommand {
    pub fn parse(command: &str) -> Option<Self> {
        let (kind, rest) = command.strip_prefix("coo ")?.split_once(' ')?;
        let (broker, rest) = rest.strip_prefix("broker=")?.split_once(" seq=")?;
        let (seq, at_ms) = match rest.split_once(" at=") {
            Some((seq, at)) => (seq, at.parse().ok()?),
            None => (rest, 0),
        };
        let (broker, seq) = (broker.parse().ok()?, seq.parse().ok()?);
        match kind {
            "report" => Some(BrokerCommand::Report { broker, seq, at_ms }),
            "expire" => Some(BrokerCommand::Expire { broker, seq, at_ms }),
            _ => None,
        }
    }
}

/// A committed broker command: its index and term, and its first application.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub time_ms: u64,
    pub node: u64,
    pub seq: u64,
    pub command: BrokerCommand,
}

/// Every committed broker command, in log order.
pub fn committed(events: &[TraceEvent]) -> Vec<Committed> {
    let mut log: BTreeMap<u64, Committed> = BTreeMap::new();
    for e in events {
        let EventKind::Applied {
            entry,
            command: Some(command),
        } = &e.kind
        else {
            continue;
        };
        if let Some(c) = BrokerCommand::parse(command) {
            log.entry(entry.index).or_insert(Committed {
                index: entry.index,
                term: entry.term,
                time_ms: e.time_ms,
                node: e.node,
                seq: e.seq,
                command: c,
            });
        }
    }
    log.into_values().collect()
}

/// A report the coo accepted (it registered the broker or advanced its sequence).
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub time_ms: u64,
    pub report_seq: u64,
    /// Its stamp.
    pub at_ms: u64,
    /// The trace event that first applied it.
    pub event: u64,
}

/// An expiry that removed a broker.
#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    pub broker: u64,
    pub time_ms: u64,
    /// The term of the expiry's entry: its leader decided it.
    pub term: u64,
    pub event: u64,
    /// The last report accepted before it.
    pub last_report: Accepted,
}

/// The broker registry replayed from the committed log.
#[derive(Debug, Default)]
pub struct Registry {
    pub accepted: BTreeMap<u64, Vec<Accepted>>,
    pub expiries: Vec<Expiry>,
    /// Broker → its last accepted report, for the brokers registered at the end.
    pub registered: BTreeMap<u64, Accepted>,
}

impl Registry {
    pub fn replay(log: &[Committed]) -> Self {
        let mut r = Registry::default();
        for c in log {
            match c.command {
                BrokerCommand::Report { broker, seq, at_ms } => {
                    let newer = r.registered.get(&broker).is_none_or(|a| seq > a.report_seq);
                    if newer {
                        let accepted = Accepted {
                            time_ms: c.time_ms,
                            report_seq: seq,
                            at_ms,
                            event: c.seq,
                        };
                        r.registered.insert(broker, accepted);
                        r.accepted.entry(broker).or_default().push(accepted);
                    }
                }
                BrokerCommand::Expire { broker, seq, at_ms } => {
                    let Some(&last) = r.registered.get(&broker) else {
                        continue;
                    };
                    if last.report_seq == seq && (at_ms == 0 || last.at_ms == at_ms) {
                        r.registered.remove(&broker);
                        r.expiries.push(Expiry {
                            broker,
                            time_ms: c.time_ms,
                            term: c.term,
                            event: c.seq,
                            last_report: last,
                        });
                    }
                }
            }
        }
        r
    }

    pub fn from_trace(events: &[TraceEvent]) -> Self {
        Self::replay(&committed(events))
    }
}

/// The node that led `term`, from the run's `Role` events.
pub fn leader_of(events: &[TraceEvent], term: u64) -> Option<u64> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::Role { role, term: t, .. } if role == "leader" && *t == term => Some(e.node),
        _ => None,
    })
}

#[cfg(test)]
pub mod testing {
    //! Hand-made coo histories.
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::{EntryMeta, EventKind, TraceEvent};

    /// Node `node` applies `command` at `index` of `term`, at `time_ms`.
    pub fn applied(
        h: &mut History,
        node: u64,
        index: u64,
        term: u64,
        time_ms: u64,
        command: &str,
    ) -> TraceEvent {
        let mut e = h.push(
            node,
            EventKind::Applied {
                entry: EntryMeta {
                    index,
                    term,
                    digest: index,
                },
                command: Some(command.into()),
            },
        );
        e.time_ms = time_ms;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::testing::applied;
    use super::*;
    use crate::sim::checkers::testing::History;

    #[test]
    fn the_replay_ignores_stale_reports_and_stale_expiries() {
        let mut h = History::default();
        let events = vec![
            applied(&mut h, 1, 1, 1, 100, "coo report broker=7 seq=3"),
            applied(&mut h, 2, 1, 1, 150, "coo report broker=7 seq=3"),
            applied(&mut h, 1, 2, 1, 200, "coo report broker=7 seq=2"),
            applied(&mut h, 1, 3, 1, 300, "coo expire broker=7 seq=2"),
            applied(&mut h, 1, 4, 1, 400, "coo report broker=7 seq=4"),
            applied(&mut h, 1, 5, 2, 500, "coo expire broker=7 seq=4"),
        ];
        let r = Registry::from_trace(&events);
        assert_eq!(r.accepted[&7].len(), 2, "seq 2 came after seq 3");
        assert_eq!(r.expiries.len(), 1, "the expiry of seq 2 was stale");
        assert_eq!(r.expiries[0].last_report.time_ms, 400);
        assert_eq!(r.expiries[0].term, 2);
        assert!(r.registered.is_empty());
        assert_eq!(
            BrokerCommand::parse("coo report broker=51 seq=12 at=900"),
            Some(BrokerCommand::Report {
                broker: 51,
                seq: 12,
                at_ms: 900
            })
        );
        // A broker expired and registered again up to the same sequence number is
        // not removed by an expiry decided on its earlier registration.
        let again = vec![
            applied(&mut h, 1, 1, 1, 100, "coo report broker=7 seq=3 at=100"),
            applied(&mut h, 1, 2, 1, 200, "coo expire broker=7 seq=3 at=100"),
            applied(&mut h, 1, 3, 1, 300, "coo report broker=7 seq=3 at=300"),
            applied(&mut h, 1, 4, 1, 400, "coo expire broker=7 seq=3 at=100"),
        ];
        let r = Registry::from_trace(&again);
        assert_eq!(r.expiries.len(), 1);
        assert_eq!(r.registered[&7].at_ms, 300);
        assert_eq!(BrokerCommand::parse("coo create_topic t"), None);
    }
}
