//! What the client-library workload (`sim/library/`) puts in the trace. Declared
//! from `sim/trace.rs` (as `trace::LibraryEvent`) so the pure checkers can read it.
//! Every event's trace node is the client that saw it (0 for the end-of-run audit).

use serde::Serialize;

/// One committed change under the config prefix, as the end-of-run audit read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CommittedChange {
    pub revision: i64,
    pub key: String,
    /// The value's label (`w<writer>-<seq>`), empty for a deletion.
    pub value: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LibraryEvent {
    /// A lock client calls `acquire` or `try_acquire` (each call grants one lease).
    LockAcquiring { lock: String, how: String },
    /// The call returned a guard: its lease, fencing token and granted TTL; the
    /// guard's `is_held()` may trail the cluster's removal of the lease by at most
    /// `stale_bound_ms`.
    LockAcquired {
        lock: String,
        lease: i64,
        token: i64,
        ttl_ms: u64,
        stale_bound_ms: u64,
    },
    /// The call failed, or the client gave up waiting.
    LockAcquireFailed { lock: String, error: String },
    /// A holder whose guard said `is_held()` wrote to the lock's fenced resource,
    /// which accepted the token or refused it (below `highest`, the highest it had
    /// accepted).
    FencedWrite {
        lock: String,
        lease: i64,
        token: i64,
        accepted: bool,
        highest: i64,
    },
    /// The lock client's host is cut off from every other host for `for_ms`.
    Isolated { for_ms: u64 },
    /// The lock client's host is reachable again.
    Reconnected,
    /// The guard stopped saying `is_held()`.
    LockLost { lock: String, lease: i64 },
    /// `unlock()` ended with `outcome`.
    LockReleased {
        lock: String,
        lease: i64,
        outcome: String,
    },
    /// A provider calls `register` (one lease granted per call).
    Registering { id: String, port: u16 },
    /// `register` ended with `outcome`; `lease` as read back from the key.
    Registered {
        id: String,
        port: u16,
        outcome: String,
        lease: Option<i64>,
    },
    /// A provider deregistered: `how` is `unregister`, or `crash` (it dropped its
    /// coordinator and left the lease to expire).
    Deregistered {
        id: String,
        port: u16,
        how: String,
        outcome: String,
    },
    /// A consumer holds `get_connection` and a registry watch, both through member
    /// `member` only; `next_channel()` must drop a deregistered instance within
    /// `bound_ms` of the watch delivering its deletion.
    RoutingOpened {
        service: String,
        member: u64,
        bound_ms: u64,
    },
    /// The consumer's registry watch delivered a change (`put` or `delete`);
    /// `port` 0: the deletion carried no instance info.
    ServiceWatched {
        kind: String,
        id: String,
        port: u16,
        revision: i64,
    },
    /// The consumer's registry watch ended.
    ServiceWatchEnded { error: String },
    /// What successive `next_channel()` calls returned, one round of the
    /// round-robin: instances as (id, port).
    Routed { instances: Vec<(String, u16)> },
    /// A writer's `config().set` of a unique value ended with `outcome`.
    ConfigSet {
        key: String,
        value: String,
        outcome: String,
    },
    /// A watcher opened `watch(range)` (or `watch_prefix`): the store was at
    /// `before_revision` just before the call and at `after_revision` just after,
    /// so the watch starts in `before_revision + 1 ..= after_revision + 1`.
    ConfigWatchOpened {
        range: String,
        prefix: bool,
        before_revision: i64,
        after_revision: i64,
    },
    /// The watcher's `next()` delivered a put (`value`) or a deletion (empty).
    ConfigDelivered {
        key: String,
        value: String,
        deleted: bool,
        revision: i64,
    },
    /// The watcher's `next()` failed or ended.
    ConfigWatchEnded { error: String },
    /// End of run: every committed change under `prefix` through `through_revision`
    /// (read from revision 1 once the cluster had healed and the writers stopped);
    /// `error` if the audit could not read it all.
    ConfigHistory {
        prefix: String,
        through_revision: i64,
        changes: Vec<CommittedChange>,
        error: Option<String>,
    },
    /// End of run: the leases the cluster still held `waited_ms` after the library
    /// clients were stopped (`clients_running` of them had not finished).
    LeasesLeft {
        leases: Vec<i64>,
        waited_ms: u64,
        clients_running: u64,
    },
    /// End of run: the fencing-token audit starts; it reads every guard
    /// `LockAcquired` reported before this.
    TokenAuditStarted,
    /// End of run: client `client`'s guard of `lock` (lease `lease`, fencing token
    /// `token`): its lock key `key` as a historical read at revision `token` found it
    /// — `found` = (create revision, lease) there, None if absent — or `error`.
    TokenAudited {
        client: u64,
        lock: String,
        key: String,
        lease: i64,
        token: i64,
        found: Option<(i64, i64)>,
        error: Option<String>,
    },
    /// A config watcher's library watch reopened its stream (`count` times so far),
    /// asking for the changes from `from_revision` on (0: from now on).
    WatchResumed { count: u64, from_revision: i64 },
    /// End of run: every library client has stopped.
    Ended,
}

impl LibraryEvent {
    /// One line for the timeline.
    pub fn describe(&self) -> String {
        match self {
            LibraryEvent::LockAcquiring { lock, how } => format!("lib: {how} {lock}"),
            LibraryEvent::LockAcquired {
                lock,
                lease,
                token,
                ttl_ms,
                stale_bound_ms,
            } => format!(
                "lib: holds {lock} with lease {lease:x}, token {token} (ttl {ttl_ms} ms, stale bound {stale_bound_ms} ms)"
            ),
            LibraryEvent::LockAcquireFailed { lock, error } => {
                format!("lib: acquiring {lock} failed: {error}")
            }
            LibraryEvent::FencedWrite {
                lock,
                token,
                accepted,
                highest,
                ..
            } => format!(
                "lib: fenced write to {lock} with token {token}: {}",
                if *accepted {
                    "accepted".to_string()
                } else {
                    format!("REFUSED (highest {highest})")
                }
            ),
            LibraryEvent::Isolated { for_ms } => {
                format!("lib: cut off from the cluster for {for_ms} ms")
            }
            LibraryEvent::Reconnected => "lib: reconnected".to_string(),
            LibraryEvent::LockLost { lock, lease } => {
                format!("lib: guard of {lock} (lease {lease:x}) no longer held")
            }
            LibraryEvent::LockReleased {
                lock,
                lease,
                outcome,
            } => format!("lib: unlock {lock} (lease {lease:x}): {outcome}"),
            LibraryEvent::Registering { id, port } => format!("lib: register {id}:{port}"),
            LibraryEvent::Registered {
                id,
                port,
                outcome,
                lease,
            } => format!(
                "lib: register {id}:{port}: {outcome}{}",
                lease.map(|l| format!(" (lease {l:x})")).unwrap_or_default()
            ),
            LibraryEvent::Deregistered {
                id,
                port,
                how,
                outcome,
            } => format!("lib: {how} {id}:{port}: {outcome}"),
            LibraryEvent::RoutingOpened {
                service,
                member,
                bound_ms,
            } => format!("lib: routing to {service} via member {member} (bound {bound_ms} ms)"),
            LibraryEvent::ServiceWatched {
                kind,
                id,
                port,
                revision,
            } => format!("lib: registry watch {kind} {id}:{port} at rev {revision}"),
            LibraryEvent::ServiceWatchEnded { error } => {
                format!("lib: registry watch ended: {error}")
            }
            LibraryEvent::Routed { instances } => format!(
                "lib: next_channel -> [{}]",
                instances
                    .iter()
                    .map(|(id, port)| format!("{id}:{port}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LibraryEvent::ConfigSet {
                key,
                value,
                outcome,
            } => format!("lib: set {key}={value}: {outcome}"),
            LibraryEvent::ConfigWatchOpened {
                range,
                prefix,
                before_revision,
                after_revision,
            } => format!(
                "lib: {} {range:?} opened between rev {before_revision} and {after_revision}",
                if *prefix { "watch_prefix" } else { "watch" }
            ),
            LibraryEvent::ConfigDelivered {
                key,
                value,
                deleted,
                revision,
            } => {
                if *deleted {
                    format!("lib: watch delivered delete {key} at rev {revision}")
                } else {
                    format!("lib: watch delivered {key}={value} at rev {revision}")
                }
            }
            LibraryEvent::ConfigWatchEnded { error } => format!("lib: config watch ended: {error}"),
            LibraryEvent::ConfigHistory {
                prefix,
                through_revision,
                changes,
                error,
            } => format!(
                "lib: audit of {prefix:?}: {} committed changes through rev {through_revision}{}",
                changes.len(),
                error.as_ref().map(|e| format!(" (INCOMPLETE: {e})")).unwrap_or_default()
            ),
            LibraryEvent::LeasesLeft {
                leases,
                waited_ms,
                clients_running,
            } => format!(
                "lib: {waited_ms} ms after stopping ({clients_running} clients still running) the cluster holds leases [{}]",
                leases
                    .iter()
                    .map(|l| format!("{l:x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LibraryEvent::TokenAuditStarted => "lib: fencing-token audit starts".to_string(),
            LibraryEvent::TokenAudited {
                client,
                key,
                token,
                found,
                error,
                ..
            } => match (found, error) {
                (_, Some(e)) => format!("lib: audit of {key} at rev {token} (client {client}) failed: {e}"),
                (Some((create, lease)), None) => format!(
                    "lib: audit of {key} at rev {token} (client {client}): create rev {create}, lease {lease:x}"
                ),
                (None, None) => format!("lib: audit of {key} at rev {token} (client {client}): absent"),
            },
            LibraryEvent::WatchResumed {
                count,
                from_revision,
            } => format!("lib: watch resumed (#{count}) from rev {from_revision}"),
            LibraryEvent::Ended => "lib: every library client stopped".to_string(),
        }
    }
}
