//! Lock single holder: a lock has at most one holder in the replicated state (etcd's
//! `v3lockpb.Lock`: the key with the lowest create revision under the lock's prefix
//! holds it, and that create revision is the fencing token).
//!
//! Judged once the run is over: every `LockGranted` the Lock service reported before
//! the audit started is compared with the end-of-run audit's historical read of the
//! lock's prefix at the grant's revision (`LockAudit`): the granted key must be there,
//! with the lowest create revision, equal to the token.

use std::collections::BTreeMap;

use super::lock_grants::{grants, Grant};
use super::{violation_at_seq, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "lock_single_holder";

/// Checks every grant against the audit's historical read of its lock's prefix.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    let mut audits: Audits = BTreeMap::new();
    for e in events {
        if let EventKind::LockAudit {
            name,
            revision,
            keys,
            error,
        } = &e.kind
        {
            audits.insert((name.as_str(), *revision), (keys.as_slice(), error));
        }
    }
    check_grants_against_audit(&grants(events), &audits)
}

/// What the audit read at a grant: the keys with their create revisions, or the error.
type Audits<'a> = BTreeMap<(&'a str, i64), (&'a [(String, i64)], &'a Option<String>)>;

fn check_grants_against_audit(grants: &[Grant<'_>], audits: &Audits) -> Result<(), Violation> {
    for g in grants {
        let (name, key, token, rev) = (g.name, g.key, g.token, g.revision);
        let Some((keys, error)) = audits.get(&(name, rev)) else {
            return Err(violation_at_seq(
                NAME,
                g.seq,
                format!("lock {name}: the grant of {key} at revision {rev} was never audited"),
            ));
        };
        if let Some(error) = error {
            return Err(violation_at_seq(
                NAME,
                g.seq,
                format!("lock {name}: could not read its prefix at grant revision {rev} to verify the grant of {key}: {error}"),
            ));
        }
        let Some(&(_, held_create)) = keys.iter().find(|(k, _)| k == key) else {
            return Err(violation_at_seq(
                NAME,
                g.seq,
                format!("lock {name}: node {} granted {key} at revision {rev}, but the key did not exist at that revision (keys: {keys:?})", g.node),
            ));
        };
        if held_create != token {
            return Err(violation_at_seq(
                NAME,
                g.seq,
                format!("lock {name}: node {} granted {key} with token {token} at revision {rev}, but its create revision there is {held_create}", g.node),
            ));
        }
        if let Some((other, other_create)) = keys.iter().find(|(k, c)| *c < held_create && k != key)
        {
            return Err(violation_at_seq(
                NAME,
                g.seq,
                format!("lock {name}: node {} granted {key} (token {token}) at revision {rev}, but {other} (create revision {other_create}) still held it: two holders", g.node),
            ));
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
    fn fires_on_two_holders_in_the_replicated_state() {
        let mut h = History::default();
        let ok = vec![
            grant(&mut h, "locks/0/a", 5, 5),
            grant(&mut h, "locks/0/b", 6, 9),
            audit(&mut h, 5, &[("locks/0/a", 5)]),
            audit(&mut h, 9, &[("locks/0/b", 6)]),
        ];
        check(&ok).unwrap();
        // b granted while a (lower create revision) still existed.
        let bad = vec![
            ok[0].clone(),
            ok[1].clone(),
            ok[2].clone(),
            audit(&mut h, 9, &[("locks/0/a", 5), ("locks/0/b", 6)]),
        ];
        let v = check(&bad).unwrap_err();
        assert_eq!(v.event_seq, ok[1].seq);
        assert!(v.message.contains("two holders"), "{v}");
    }
}
