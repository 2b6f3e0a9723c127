//! Lock safety: a lock has at most one holder in the replicated state, the fencing
//! tokens of its successive grants strictly increase, and a fenced resource never
//! accepts an older token after a newer one (etcd's `v3lockpb.Lock`: the key with the
//! lowest create revision under the lock's prefix holds it, and that create revision
//! is the fencing token; Kleppmann, "How to do distributed locking", 2016).
//!
//! Judged once the run is over, from
//! - every `LockGranted` the Lock service reported before the audit started, against the end-of-run audit's
//!   historical read of the lock's prefix at the grant's revision (`LockAudit`): the
//!   granted key must be there, with the lowest create revision, equal to the token;
//! - the grants in revision order: a different key granted later has a larger token;
//! - the tokens clients read (`LockAcquired`): each is its key's granted token;
//! - each fenced resource's writes (`ResourceWrite` on `fenced:…`): accepted exactly
//!   when the token is at least the highest accepted before.

use std::collections::BTreeMap;

use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "lock_safety";

/// Resource names of fenced resources start with this.
pub const FENCED_PREFIX: &str = "fenced:";

/// What the audit read at a grant: the keys with their create revisions, or the error.
type Audits<'a> = BTreeMap<(&'a str, i64), (&'a [(String, i64)], &'a Option<String>)>;

struct Grant<'a> {
    name: &'a str,
    key: &'a str,
    token: i64,
    revision: i64,
    node: u64,
    seq: u64,
}

fn fail(seq: u64, message: String) -> Violation {
    Violation {
        invariant: NAME,
        event_seq: seq,
        message,
    }
}

/// Checks a finished run's locks.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    // Grants after the audit started were not audited (the workloads were stopping).
    let cut = events
        .iter()
        .find(|e| e.kind == EventKind::AuditStarted)
        .map_or(u64::MAX, |e| e.seq);
    let mut grants: Vec<Grant> = Vec::new();
    let mut audits: Audits = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::LockGranted {
                name,
                key,
                create_revision,
                revision,
            } if e.seq < cut => grants.push(Grant {
                name,
                key,
                token: *create_revision,
                revision: *revision,
                node: e.node,
                seq: e.seq,
            }),
            EventKind::LockAudit {
                name,
                revision,
                keys,
                error,
            } => {
                audits.insert((name.as_str(), *revision), (keys.as_slice(), error));
            }
            _ => {}
        }
    }
    check_grants_against_audit(&grants, &audits)?;
    check_tokens_increase(&mut grants)?;
    check_client_tokens(events, cut, &grants)?;
    check_fenced_resources(events)
}

fn check_grants_against_audit(grants: &[Grant], audits: &Audits) -> Result<(), Violation> {
    for g in grants {
        let (name, key, token, rev) = (g.name, g.key, g.token, g.revision);
        let Some((keys, error)) = audits.get(&(name, rev)) else {
            return Err(fail(
                g.seq,
                format!("lock {name}: the grant of {key} at revision {rev} was never audited"),
            ));
        };
        if let Some(error) = error {
            return Err(fail(
                g.seq,
                format!("lock {name}: could not read its prefix at grant revision {rev} to verify the grant of {key}: {error}"),
            ));
        }
        let Some(&(_, held_create)) = keys.iter().find(|(k, _)| k == key) else {
            return Err(fail(
                g.seq,
                format!("lock {name}: node {} granted {key} at revision {rev}, but the key did not exist at that revision (keys: {keys:?})", g.node),
            ));
        };
        if held_create != token {
            return Err(fail(
                g.seq,
                format!("lock {name}: node {} granted {key} with token {token} at revision {rev}, but its create revision there is {held_create}", g.node),
            ));
        }
        if let Some((other, other_create)) = keys.iter().find(|(k, c)| *c < held_create && k != key)
        {
            return Err(fail(
                g.seq,
                format!("lock {name}: node {} granted {key} (token {token}) at revision {rev}, but {other} (create revision {other_create}) still held it: two holders", g.node),
            ));
        }
    }
    Ok(())
}

fn check_tokens_increase(grants: &mut [Grant]) -> Result<(), Violation> {
    grants.sort_by_key(|g| (g.name, g.revision, g.seq));
    for pair in grants.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.name != b.name || a.key == b.key {
            continue;
        }
        if b.token <= a.token || b.revision == a.revision {
            return Err(fail(
                b.seq,
                format!(
                    "lock {}: {} was granted token {} at revision {}, after {} was granted token {} at revision {}: fencing tokens must strictly increase",
                    b.name, b.key, b.token, b.revision, a.key, a.token, a.revision
                ),
            ));
        }
    }
    Ok(())
}

fn check_client_tokens(events: &[TraceEvent], cut: u64, grants: &[Grant]) -> Result<(), Violation> {
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
            return Err(fail(
                e.seq,
                format!("lock {name}: client {client} holds {key} with token {token}, but the Lock service granted that key the tokens {granted:?}"),
            ));
        }
    }
    Ok(())
}

fn check_fenced_resources(events: &[TraceEvent]) -> Result<(), Violation> {
    let mut highest: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
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
        let (top, by) = highest
            .get(resource.as_str())
            .copied()
            .unwrap_or((i64::MIN, 0));
        let must_accept = *token >= top;
        if *accepted && !must_accept {
            return Err(fail(
                e.seq,
                format!("{resource} accepted client {client}'s {action} with token {token} after client {by}'s newer token {top}"),
            ));
        }
        if !*accepted && must_accept {
            return Err(fail(
                e.seq,
                format!("{resource} refused client {client}'s {action} with token {token}, not older than the highest {top}"),
            ));
        }
        if *accepted {
            highest.insert(resource, (*token, *client));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn grant(h: &mut History, key: &str, token: i64, revision: i64) -> TraceEvent {
        h.push(
            1,
            EventKind::LockGranted {
                name: "locks/0".into(),
                key: key.into(),
                create_revision: token,
                revision,
            },
        )
    }

    fn audit(h: &mut History, revision: i64, keys: &[(&str, i64)]) -> TraceEvent {
        h.push(
            99,
            EventKind::LockAudit {
                name: "locks/0".into(),
                revision,
                keys: keys.iter().map(|(k, c)| (k.to_string(), *c)).collect(),
                error: None,
            },
        )
    }

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
    }

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
