//! Fenced resource order: a fenced resource accepts a write exactly when its token is
//! at least the highest it accepted before — never an older token after a newer one
//! (Kleppmann, "How to do distributed locking", 2016). Judged once the run is over,
//! from each fenced resource's writes (`ResourceWrite` on `fenced:…`).

use std::collections::BTreeMap;

use super::{violation_at_seq, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "fenced_resource_order";

/// Resource names of fenced resources start with this.
pub const FENCED_PREFIX: &str = "fenced:";

/// Checks each fenced resource's writes in trace order.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    check_fenced_resources(events)
}

fn check_fenced_resources(events: &[TraceEvent]) -> Result<(), Violation> {
    // Per resource: the highest token accepted, by whom, at which event.
    let mut highest: BTreeMap<&str, (i64, u64, u64)> = BTreeMap::new();
    for e in events {
        let EventKind::ResourceWrite {
            resource,
            client,
            token,
            action,
            accepted,
        } = &e.kind
        else {
            continue;
        };
        if !resource.starts_with(FENCED_PREFIX) {
            continue;
        }
        let (top, by, at) =
            highest
                .get(resource.as_str())
                .copied()
                .unwrap_or((i64::MIN, 0, u64::MAX));
        let set_by = (at != u64::MAX).then_some(at);
        let must_accept = *token >= top;
        if *accepted && !must_accept {
            return Err(violation_at_seq(
                NAME,
                e.seq,
                format!("{resource} accepted client {client}'s {action} with token {token} after client {by}'s newer token {top}"),
            )
            .with_related(set_by));
        }
        if !*accepted && must_accept {
            return Err(violation_at_seq(
                NAME,
                e.seq,
                format!("{resource} refused client {client}'s {action} with token {token}, not older than the highest {top}"),
            )
            .with_related(set_by));
        }
        if *accepted {
            highest.insert(resource, (*token, *client, e.seq));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn write(h: &mut History, client: u64, token: i64, accepted: bool) -> TraceEvent {
        h.push(
            client,
            EventKind::ResourceWrite {
                resource: "fenced:locks/0".into(),
                client,
                token,
                action: "enter".into(),
                accepted,
            },
        )
    }

    #[test]
    fn fires_when_a_fenced_resource_takes_an_older_token() {
        let mut h = History::default();
        let good = vec![
            write(&mut h, 301, 5, true),
            write(&mut h, 302, 8, true),
            write(&mut h, 301, 5, false),
        ];
        check(&good).unwrap();
        let bad = vec![
            good[0].clone(),
            good[1].clone(),
            write(&mut h, 301, 5, true),
        ];
        let v = check(&bad).unwrap_err();
        assert!(v.message.contains("newer token 8"), "{v}");
        assert_eq!(v.related, vec![good[1].seq], "the write that set token 8");
    }
}
