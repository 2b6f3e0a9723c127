//! Lock token order: the fencing tokens of a lock's successive grants strictly
//! increase — a different key granted later has a larger token (Kleppmann, "How to do
//! distributed locking", 2016). Judged once the run is over, from the `LockGranted`
//! events reported before the audit started.

use super::lock_grants::{grants, Grant};
use super::{violation_at_seq, Violation};
use crate::sim::trace::TraceEvent;

pub const NAME: &str = "lock_token_order";

/// Checks the grants of each lock in revision order.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    check_tokens_increase(&mut grants(events))
}

fn check_tokens_increase(grants: &mut [Grant<'_>]) -> Result<(), Violation> {
    grants.sort_by_key(|g| (g.name, g.revision, g.seq));
    for pair in grants.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.name != b.name || a.key == b.key {
            continue;
        }
        if b.token <= a.token || b.revision == a.revision {
            return Err(violation_at_seq(
                NAME,
                b.seq,
                format!(
                    "lock {}: {} was granted token {} at revision {}, after {} was granted token {} at revision {}: fencing tokens must strictly increase",
                    b.name, b.key, b.token, b.revision, a.key, a.token, a.revision
                ),
            )
            .with_related([a.seq]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::lock_grants::testing::{audit, grant};
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_tokens_go_back() {
        let mut h = History::default();
        let events = vec![
            grant(&mut h, "locks/0/a", 7, 7),
            grant(&mut h, "locks/0/b", 6, 9),
            audit(&mut h, 7, &[("locks/0/a", 7)]),
            audit(&mut h, 9, &[("locks/0/b", 6)]),
        ];
        let v = check(&events).unwrap_err();
        assert!(v.message.contains("strictly increase"), "{v}");
    }
}
