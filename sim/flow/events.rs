//! What the FlowBuilder workload (`sim/flow/`) puts in the trace. Declared from
//! `sim/trace.rs` (as `trace::FlowEvent`) so the pure checkers can read it. An
//! event's trace node is the flow host that saw it (0 for the harness's audit).
//! Hosts are named by their flow node ids (`flow-1`, …); events on the bus carry
//! `<publisher>#<n>` as their payload, so every receipt names its publish.

use serde::Serialize;

/// `Scope::Cluster` / `Scope::Local`, as the trace spells them.
pub mod scope {
    pub const CLUSTER: &str = "cluster";
    pub const LOCAL: &str = "local";
}

/// One key of a member's copy of `/flow/`, as the end-of-run audit read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AuditedKey {
    pub key: String,
    /// The value as stored (the flow services write JSON).
    pub value: String,
    pub version: i64,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// One member's state in a `check_consistency` report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ReportedMember {
    pub member: String,
    pub revision: u64,
    pub state_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FlowEvent {
    /// The host built its cluster container (`ServiceContainer::new_cluster`), or
    /// failed to (`error`; it tries again).
    ContainerBuilt { host: String, error: Option<String> },
    /// `propose` returned `id` (`<origin>#<sequence>`).
    Proposed { host: String, id: String },
    /// The proposal's `status` turned `committed` or `rejected: <reason>`; or
    /// `undecided` when the host stopped asking.
    ProposalDecided {
        host: String,
        id: String,
        status: String,
    },
    /// `acquire` returned a hold with fencing token `token`.
    LockAcquired {
        host: String,
        resource: String,
        token: u64,
        ttl_ms: u64,
    },
    LockAcquireFailed {
        host: String,
        resource: String,
        error: String,
    },
    /// `renew` of the hold `token` returned (`ok`, or `error`); `late` when the
    /// holder slept past the hold's TTL before asking.
    LockRenewed {
        host: String,
        resource: String,
        token: u64,
        late: bool,
        ok: bool,
        error: Option<String>,
    },
    /// The holder wrote to the resource's fenced store with its token: accepted,
    /// or refused because `highest` (accepted before) is above it.
    ResourceUsed {
        host: String,
        resource: String,
        token: u64,
        accepted: bool,
        highest: u64,
    },
    /// `release` of the hold returned `outcome` (`ok` or the error).
    LockReleased {
        host: String,
        resource: String,
        token: u64,
        outcome: String,
    },
    /// `subscribe_cluster` / `subscribe_local` (`scope`) of `topic` returned.
    Subscribed {
        host: String,
        topic: String,
        scope: String,
    },
    /// `publish_cluster` / `publish_local` of event `<host>#<n>` was called.
    PublishInvoked {
        host: String,
        topic: String,
        scope: String,
        n: u64,
    },
    /// …and returned `Ok` (`error: None`) or failed.
    PublishReturned {
        host: String,
        topic: String,
        scope: String,
        n: u64,
        error: Option<String>,
    },
    /// A subscription of `host` received an envelope: its sequence, origin and
    /// payload (`<publisher>#<n>`).
    Received {
        host: String,
        topic: String,
        scope: String,
        sequence: u64,
        origin: String,
        payload: String,
    },
    /// A subscription of `host` reported a gap of `missed` items (or ended:
    /// `missed` 0 and `closed`).
    Lagged {
        host: String,
        topic: String,
        scope: String,
        missed: u64,
        closed: bool,
    },
    /// `broadcast_change` of `change` (its variant and subject) ended `ok`, `err`
    /// (refused: it was not applied) or `unknown` (the cluster did not answer).
    ChangeBroadcast {
        host: String,
        change: String,
        outcome: String,
        error: Option<String>,
    },
    /// After healing, with every host stopped: `force_sync` then
    /// `check_consistency` (or the error of either).
    ConsistencyChecked {
        host: String,
        consistent: bool,
        members: Vec<ReportedMember>,
        error: Option<String>,
    },
    /// The host's subscription of `topic` stopped at the end of the run, having
    /// received `received` envelopes.
    SubscriberEnded {
        host: String,
        topic: String,
        scope: String,
        received: u64,
    },
    /// End of run: member `member`'s own copy of `prefix` at `revision` (a
    /// serializable Range answered by that member alone), or why not.
    MemberCopy {
        member: u64,
        prefix: String,
        revision: i64,
        keys: Vec<AuditedKey>,
        error: Option<String>,
    },
    /// The flow workload ended (every flow checker's end-of-run cue).
    Ended,
}

impl FlowEvent {
    /// The flow event `e` carries, if it is one.
    pub fn of(e: &super::TraceEvent) -> Option<&FlowEvent> {
        match &e.kind {
            super::EventKind::Flow(f) => Some(f),
            _ => None,
        }
    }

    /// Whether the history holds a finished flow workload (the checkers' cue).
    pub fn ended(events: &[super::TraceEvent]) -> bool {
        events
            .iter()
            .any(|e| matches!(FlowEvent::of(e), Some(FlowEvent::Ended)))
    }

    /// The readable copies of `prefix` the audit recorded: (event, member, keys).
    pub fn copies<'a>(
        events: &'a [super::TraceEvent],
        prefix: &str,
    ) -> Vec<(&'a super::TraceEvent, u64, &'a [AuditedKey])> {
        events
            .iter()
            .filter_map(|e| match FlowEvent::of(e) {
                Some(FlowEvent::MemberCopy {
                    member,
                    prefix: p,
                    keys,
                    error: None,
                    ..
                }) if p == prefix => Some((e, *member, keys.as_slice())),
                _ => None,
            })
            .collect()
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            FlowEvent::MemberCopy {
                member,
                prefix,
                revision,
                keys,
                error,
            } => format!(
                "flow: member {member}'s copy of {prefix} at revision {revision}: {} keys{}",
                keys.len(),
                error
                    .as_ref()
                    .map(|e| format!(" (error: {e})"))
                    .unwrap_or_default()
            ),
            other => format!("flow: {}", serde_json::to_string(other).unwrap_or_default()),
        }
    }
}
