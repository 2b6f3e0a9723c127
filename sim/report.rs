//! Failure artifacts: the trace as JSON lines, readable timelines (all nodes, and
//! one file per node), the timeline as a page to look at (`timeline.html`, see
//! [`super::timeline`]), and a summary with the replay command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::checkers::Violation;
use super::timeline;
use super::trace::{EventKind, TraceEvent};

/// One line of human-readable description of an event.
pub fn describe(e: &EventKind) -> String {
    match e {
        EventKind::Recovered {
            term,
            vote,
            commit,
            snapshot_index,
            snapshot_term,
            last_index,
            applied,
            ..
        } => format!(
            "recovered term={term} vote={vote} commit={commit} snapshot={snapshot_index}@{snapshot_term} last={last_index} applied={applied}"
        ),
        EventKind::Role { role, term, leader } => format!("role {role} term={term} leader={leader}"),
        EventKind::Persisted {
            hard_state,
            entries,
            synced,
        } => {
            let mut s = String::from("persist");
            if let Some((t, v, c)) = hard_state {
                let _ = write!(s, " hs(term={t} vote={v} commit={c})");
            }
            if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                let _ = write!(s, " entries {}..={} (last term {})", first.index, last.index, last.term);
            }
            if *synced {
                s.push_str(" +sync");
            }
            s
        }
        EventKind::SnapshotPersisted { index, term } => format!("snapshot index={index} term={term}"),
        EventKind::Sent { msg, durable } => format!(
            "send {} -> {} term={} index={} log_term={} commit={}{} | durable term={} vote={} last={}",
            msg.kind,
            msg.to,
            msg.term,
            msg.index,
            msg.log_term,
            msg.commit,
            if msg.reject { " REJECT" } else { "" },
            durable.term,
            durable.vote,
            durable.last_index
        ),
        EventKind::Received { msg } => format!("recv {} <- {} term={} index={}", msg.kind, msg.from, msg.term, msg.index),
        EventKind::Applied { entry, command } => format!(
            "apply {}@{} #{:016x}{}",
            entry.index,
            entry.term,
            entry.digest,
            command.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
        ),
        EventKind::Stopped { reason } => format!("STOPPED: {reason}"),
        EventKind::LoopStarted { mode } => format!("logic node: {mode} loop started"),
        EventKind::LoopStopped { mode } => format!("logic node: {mode} loop stopped"),
        EventKind::ModeSwitched { from, to } => format!("logic node: MODE {from} -> {to}"),
        EventKind::ReceiverRegistered { registration } => format!("broker: receiver #{registration} registered"),
        EventKind::ReceiverReleased { registration } => format!("broker: receiver #{registration} released"),
        EventKind::ReportDelivered { seq, local } => {
            format!("broker: report #{seq} delivered ({})", if *local { "local" } else { "external" })
        }
        EventKind::TopicViewApplied { version } => format!("broker: topic view v{version}"),
        EventKind::CooRpcSent { rpc } => format!("broker: coo rpc {rpc}"),
        EventKind::LogicNodeStopped => "logic node stopped".to_string(),
        EventKind::CoordApplied { index, revision } => format!("coord: applied #{index} at rev {revision}"),
        EventKind::LeaseRemoved { lease, expired, revision } => {
            format!("coord: lease {lease:x} {} at rev {revision}", if *expired { "expired" } else { "revoked" })
        }
        EventKind::LockGranted { name, key, create_revision, revision } => {
            format!("coord: lock {name} granted as {key} (token {create_revision}) at rev {revision}")
        }
        EventKind::LeaseRenewed { lease, ttl_ms, term, reason } => {
            format!("coord: lease {lease:x} restarts its {ttl_ms} ms TTL ({reason}, term {term})")
        }
        EventKind::RegisterInvoke { op, kind, key, value, expect, .. } => match (expect, value) {
            (Some(from), Some(to)) => format!("etcd invoke #{op} {kind} {key} {from} -> {to}"),
            (_, Some(v)) => format!("etcd invoke #{op} {kind} {key} = {v}"),
            _ => format!("etcd invoke #{op} {kind} {key}"),
        },
        EventKind::RegisterComplete { op, outcome, value, swapped, revision, error, .. } => format!(
            "etcd complete #{op} {outcome}{}{}{}{}",
            value.map(|v| format!(" -> {v}")).unwrap_or_default(),
            swapped.map(|s| format!(" swapped={s}")).unwrap_or_default(),
            revision.map(|r| format!(" at rev {r}")).unwrap_or_default(),
            error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
        ),
        EventKind::LeaseGranted { lease, ttl_ms, sent_ms, .. } => {
            format!("lease {lease:x} granted (ttl {ttl_ms} ms, asked at {sent_ms} ms)")
        }
        EventKind::KeepAlive { lease, sent_ms, outcome, ttl_ms, .. } => {
            format!("keep-alive {lease:x} sent at {sent_ms} ms: {outcome} (ttl {ttl_ms} ms)")
        }
        EventKind::LeaseRevoke { lease, sent_ms, outcome, .. } => {
            format!("revoke {lease:x} sent at {sent_ms} ms: {outcome}")
        }
        EventKind::LeaseKeyPut { lease, key, value, outcome, revision, .. } => format!(
            "put {key}={value} with lease {lease:x}: {outcome}{}",
            revision.map(|r| format!(" at rev {r}")).unwrap_or_default()
        ),
        EventKind::LeaseKeyRead { lease, key, invoked_ms, present, revision, .. } => format!(
            "read {key} (lease {lease:x}, invoked at {invoked_ms} ms): {} at rev {revision}",
            if *present { "present" } else { "absent" }
        ),
        EventKind::WatchOpened { watcher, prefix, start_revision } => {
            format!("watcher {watcher}: watch {prefix:?} from rev {start_revision}")
        }
        EventKind::WatchEvents { watcher, events } => format!(
            "watcher {watcher}: {}",
            events
                .iter()
                .map(|e| format!("{} {}@{}", e.kind, e.key, e.revision))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventKind::WatchClosed { watcher, reason, compact_revision } => {
            format!("watcher {watcher}: closed ({reason}) compact_revision={compact_revision}")
        }
        EventKind::Compacted { revision, outcome, .. } => format!("compact at rev {revision}: {outcome}"),
        EventKind::LockAcquired { name, key, token, .. } => format!("holds lock {name} as {key}, token {token}"),
        EventKind::LockReleased { name, key, outcome, .. } => format!("unlock {name} ({key}): {outcome}"),
        EventKind::ResourceWrite { resource, token, action, accepted, .. } => format!(
            "{resource}: {action} with token {token} {}",
            if *accepted { "accepted" } else { "REFUSED" }
        ),
        EventKind::AuditStarted => "end-of-run audit starts".to_string(),
        EventKind::LockAudit { name, revision, keys, error } => match error {
            Some(e) => format!("audit lock {name} at rev {revision}: {e}"),
            None => format!("audit lock {name} at rev {revision}: {keys:?}"),
        },
        EventKind::Fault { action } => format!("FAULT {action}"),
        EventKind::Process { change } => format!("process {change}"),
        EventKind::LateDuplicate { client, op, to } => {
            format!("late duplicate of #{op} (client {client}) -> n{to}")
        }
        EventKind::ClientInvoke { op, kind, key, value, .. } => {
            format!("invoke #{op} {kind} {key}{}", value.as_ref().map(|v| format!(" = {v}")).unwrap_or_default())
        }
        EventKind::ClientComplete {
            op,
            outcome,
            value,
            revision,
            ..
        } => format!(
            "complete #{op} {outcome}{}{}",
            value.as_ref().map(|v| format!(" -> {v}")).unwrap_or_default(),
            revision.map(|r| format!(" at rev {r}")).unwrap_or_default()
        ),
        EventKind::Library(event) => event.describe(),
        EventKind::Bridge(event) => event.describe(),
        EventKind::Flow(event) => event.describe(),
        EventKind::CooPlacement { version, brokers, topics } => format!(
            "coo: placement v{version} brokers {brokers:?}: {}",
            topics
                .iter()
                .map(|t| format!("{} (r{}) {:?}", t.name, t.replication, t.replicas))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventKind::CooGroup { group, generation, members, .. } => {
            format!("coo: group {group} generation {generation}: {members:?}")
        }
        EventKind::GroupSynced { group, member, leave, outcome, generation, partitions } => format!(
            "consumer {member} {} group {group}: {outcome} (generation {generation}, {partitions:?})",
            if *leave { "leaves" } else { "joins" }
        ),
    }
}

pub fn line(e: &TraceEvent) -> String {
    let who = if e.node == 0 {
        "harness".to_string()
    } else {
        format!("n{}", e.node)
    };
    format!(
        "#{:<7} {:>9.3}s {:<7} {}",
        e.seq,
        e.time_ms as f64 / 1000.0,
        who,
        describe(&e.kind)
    )
}

/// Where a failing run's artifacts go.
pub fn artifact_dir(scenario: &str, seed: u64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("sim-failures")
        .join(format!("{scenario}-{seed}"))
}

/// Writes `events` as JSON lines to `path` (creating its folder).
pub fn write_trace(path: &Path, events: &[TraceEvent]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut jsonl = String::new();
    for e in events {
        jsonl.push_str(&e.to_json());
        jsonl.push('\n');
    }
    std::fs::write(path, jsonl)
}

/// Writes trace.jsonl, timeline.txt, node-<id>.txt, timeline.html and failure.txt.
pub fn write_artifacts(
    dir: &Path,
    events: &[TraceEvent],
    class: &str,
    violation: &Violation,
    replay: &str,
) -> std::io::Result<()> {
    write_trace(&dir.join("trace.jsonl"), events)?;
    let mut timeline = String::new();
    let mut per_node: BTreeMap<u64, String> = BTreeMap::new();
    for e in events {
        let l = line(e);
        timeline.push_str(&l);
        timeline.push('\n');
        let own = per_node.entry(e.node).or_default();
        own.push_str(&l);
        own.push('\n');
    }
    std::fs::write(dir.join("timeline.txt"), timeline)?;
    for (node, text) in per_node {
        let name = if node == 0 {
            "harness.txt".to_string()
        } else {
            format!("node-{node}.txt")
        };
        std::fs::write(dir.join(name), text)?;
    }
    let title = dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let page = timeline::render(&title, events, class, violation, replay);
    std::fs::write(dir.join("timeline.html"), page)?;
    let summary = format!(
        "class: {class}\ninvariant: {}\n{}\n{}replay: {replay}\n",
        violation.invariant,
        violation.message,
        named_events(events, violation)
    );
    std::fs::write(dir.join("failure.txt"), summary)
}

/// The events a violation names, one line each: `event:` for the one that broke
/// the invariant, `with:` for the earlier ones it involves.
pub fn named_events(events: &[TraceEvent], violation: &Violation) -> String {
    let mut out = String::new();
    for (i, seq) in violation.events().enumerate() {
        let label = if i == 0 { "event" } else { "with" };
        if let Some(e) = events.iter().find(|e| e.seq == seq) {
            out.push_str(&format!("{label}: {}\n", line(e)));
        }
    }
    out
}
