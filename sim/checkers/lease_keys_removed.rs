//! Lease keys removed: once a lease is gone (expired or revoked) its keys are gone
//! for every linearizable read invoked later or at a later revision (etcd v3 API,
//! "Lease" service; the end-of-run audit reads every removed lease's keys again).

use super::lease_timeline::removals;
use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "lease_keys_removed";

/// Checks every read that found a lease's key against the lease's removal.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    let removals = removals(events);
    for e in events {
        let EventKind::LeaseKeyRead {
            client,
            lease,
            key,
            invoked_ms,
            present: true,
            revision,
        } = &e.kind
        else {
            continue;
        };
        let Some(removal) = removals.get(lease) else {
            continue;
        };
        if *invoked_ms > removal.time_ms || *revision >= removal.revision {
            let how = if removal.expired {
                "expired"
            } else {
                "revoked"
            };
            return Err(Violation {
                invariant: NAME,
                event_seq: e.seq,
                message: format!(
                    "client {client} read key {key} of lease {lease:x} at revision {revision} (invoked at {invoked_ms} ms), but the lease was {how} at revision {} (applied on node {} at {} ms) and its keys deleted",
                    removal.revision, removal.node, removal.time_ms
                ),
                related: vec![removal.seq],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::lease_timeline::testing::{at, removed};
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_a_removed_leases_key_is_still_read() {
        let mut h = History::default();
        let read = |h: &mut History, invoked_ms: u64, revision: i64| {
            h.push(
                300,
                EventKind::LeaseKeyRead {
                    client: 300,
                    lease: 7,
                    key: "lease/7/0".into(),
                    invoked_ms,
                    present: true,
                    revision,
                },
            )
        };
        let removal = at(removed(&mut h, 7, false, 12), 1000);
        let before = read(&mut h, 900, 11);
        check(&[removal.clone(), before]).unwrap();
        let after = read(&mut h, 1100, 11);
        let v = check(&[removal.clone(), after]).unwrap_err();
        assert!(v.message.contains("revoked at revision 12"), "{v}");
        let newer = read(&mut h, 900, 12);
        assert!(check(&[removal, newer]).is_err());
    }
}
