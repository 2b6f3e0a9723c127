//! What the Lock service granted before the end-of-run audit started, as the lock
//! checkers read it from a finished run's trace (`LockGranted`; grants after the
//! audit started were not audited: the workloads were stopping).

use crate::sim::trace::{EventKind, TraceEvent};

/// One grant: `key` holds lock `name` with fencing token `token` (its create
/// revision), as of store revision `revision`, reported by `node` at event `seq`.
pub struct Grant<'a> {
    pub name: &'a str,
    pub key: &'a str,
    pub token: i64,
    pub revision: i64,
    pub node: u64,
    pub seq: u64,
}

/// Sequence number of the event that started the audit (`u64::MAX`: none did).
pub fn audit_cut(events: &[TraceEvent]) -> u64 {
    events
        .iter()
        .find(|e| e.kind == EventKind::AuditStarted)
        .map_or(u64::MAX, |e| e.seq)
}

/// Every grant reported before the audit started, in trace order.
pub fn grants(events: &[TraceEvent]) -> Vec<Grant<'_>> {
    let cut = audit_cut(events);
    events
        .iter()
        .filter(|e| e.seq < cut)
        .filter_map(|e| match &e.kind {
            EventKind::LockGranted {
                name,
                key,
                create_revision,
                revision,
            } => Some(Grant {
                name,
                key,
                token: *create_revision,
                revision: *revision,
                node: e.node,
                seq: e.seq,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
pub mod testing {
    //! Hand-made lock histories.
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::{EventKind, TraceEvent};

    pub fn grant(h: &mut History, key: &str, token: i64, revision: i64) -> TraceEvent {
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

    pub fn audit(h: &mut History, revision: i64, keys: &[(&str, i64)]) -> TraceEvent {
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
}
