//! Lock client tokens: every token a client read for a lock it acquired
//! (`LockAcquired`) is a token the Lock service granted that key (`LockGranted`).
//! Judged once the run is over, up to the start of the audit.

use super::lock_grants::{audit_cut, grants, Grant};
use super::{violation_at_seq, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "lock_client_tokens";

/// Checks every token a client read before the audit started.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    check_client_tokens(events, audit_cut(events), &grants(events))
}

fn check_client_tokens(
    events: &[TraceEvent],
    cut: u64,
    grants: &[Grant<'_>],
) -> Result<(), Violation> {
    for e in events.iter().filter(|e| e.seq < cut) {
        let EventKind::LockAcquired {
            client,
            name,
            key,
            token,
            ..
        } = &e.kind
        else {
            continue;
        };
        let granted: Vec<i64> = grants
            .iter()
            .filter(|g| g.name == name && g.key == key)
            .map(|g| g.token)
            .collect();
        if !granted.contains(token) {
            return Err(violation_at_seq(
                NAME,
                e.seq,
                format!("lock {name}: client {client} holds {key} with token {token}, but the Lock service granted that key the tokens {granted:?}"),
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
    fn fires_when_a_client_uses_a_token_it_was_not_granted() {
        let mut h = History::default();
        let events = vec![
            grant(&mut h, "locks/0/a", 5, 5),
            audit(&mut h, 5, &[("locks/0/a", 5)]),
            h.push(
                301,
                EventKind::LockAcquired {
                    client: 301,
                    name: "locks/0".into(),
                    key: "locks/0/a".into(),
                    token: 4,
                    lease: 10,
                },
            ),
        ];
        let v = check(&events).unwrap_err();
        assert!(v.message.contains("token 4"), "{v}");
    }
}
