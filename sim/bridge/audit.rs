//! The end-of-run audits, with plain etcd calls once the cluster has healed and the
//! clients have stopped: the committed history of `/bridge/` from revision 1, and
//! every bridge write each member's disk holds — its log entries and its snapshot,
//! recovered and decoded the way the member itself would.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coordlab::client::Connection;
use coordlab::coord::service::lock::prefix_end;
use coordlab::proto::coord_command::Op;
use coordlab::proto::etcdserverpb::watch_client::WatchClient;
use coordlab::proto::etcdserverpb::{
    request_op, watch_request, PutRequest, RequestOp, WatchCreateRequest, WatchRequest,
};
use coordlab::proto::mvccpb::event::EventType;
use coordlab::proto::{command, Command, CoordSnapshot, NodeSnapshot, ReplicatedSnapshot};
use coordlab::raft::storage::recover;
use futures::StreamExt as _;
use prost::Message as _;
use raft::eraftpb::EntryType;

use super::context::Ctx;
use crate::sim::disk::SimDisk;
use crate::sim::trace::{BridgeEvent, RegistryChange};

/// Every key the audit watches starts with this; the registry's keys with
/// `/bridge/`, the audit's own end marker with `/bridge-audit`.
const WATCHED: &[u8] = b"/bridge";
const REGISTRY: &str = "/bridge/";
const END_MARKER: &[u8] = b"/bridge-audit/end";
const ATTEMPTS: usize = 5;
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// Records the committed history of the registry.
pub async fn committed_history(ctx: &Ctx, conn: &Connection) {
    let mut error = String::new();
    for _ in 0..ATTEMPTS {
        match tokio::time::timeout(READ_DEADLINE, read_history(conn)).await {
            Ok(Ok((through_revision, changes))) => {
                ctx.record(
                    0,
                    BridgeEvent::CommittedHistory {
                        through_revision,
                        changes,
                        error: None,
                    },
                );
                return;
            }
            Ok(Err(e)) => error = e,
            Err(_) => error = format!("no full history within {READ_DEADLINE:?}"),
        }
        conn.rotate();
    }
    ctx.record(
        0,
        BridgeEvent::CommittedHistory {
            through_revision: 0,
            changes: Vec::new(),
            error: Some(error),
        },
    );
}

/// Puts the end marker, then watches from revision 1 until the marker: every
/// registry change committed before it, in order.
async fn read_history(conn: &Connection) -> Result<(i64, Vec<RegistryChange>), String> {
    let marked = conn
        .put(PutRequest {
            key: END_MARKER.to_vec(),
            value: b"end".to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let through = marked.header.map_or(0, |h| h.revision);
    let create = WatchCreateRequest {
        key: WATCHED.to_vec(),
        range_end: prefix_end(WATCHED),
        start_revision: 1,
        ..Default::default()
    };
    let requests = futures::stream::iter([WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    }])
    .chain(futures::stream::pending());
    let mut stream = WatchClient::new(conn.channel())
        .watch(conn.request(requests))
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let mut changes = Vec::new();
    while let Some(resp) = stream.message().await.map_err(|s| s.to_string())? {
        if resp.canceled {
            return Err(format!("watch canceled: {}", resp.cancel_reason));
        }
        for ev in resp.events {
            let kv = ev.kv.unwrap_or_default();
            if kv.mod_revision >= through {
                return Ok((through, changes));
            }
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            if key.starts_with(REGISTRY) {
                changes.push(RegistryChange {
                    revision: kv.mod_revision,
                    key,
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                    deleted: ev.r#type == EventType::Delete as i32,
                });
            }
        }
    }
    Err("the watch stream ended".into())
}

/// Records, for each member's disk, the bridge writes of its durable log entries
/// and of its durable snapshot.
pub fn durable_writes(ctx: &Ctx, disks: &[(u64, Arc<SimDisk>)]) {
    for (member, disk) in disks {
        let recovered = match recover(&disk.durable_image()) {
            Ok(r) => r,
            Err(e) => {
                ctx.record(
                    0,
                    BridgeEvent::DurableWrites {
                        member: *member,
                        source: format!("unreadable: {e}"),
                        entries: 0,
                        writes: Vec::new(),
                    },
                );
                continue;
            }
        };
        let mut log = BTreeSet::new();
        let mut entries = 0u64;
        let mut source = "log".to_string();
        for entry in &recovered.entries {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            entries += 1;
            match Command::decode(&entry.data[..]) {
                Ok(Command {
                    op: Some(command::Op::Coord(coord)),
                }) => {
                    if let Some(op) = coord.op {
                        writes_of(op, &mut log);
                    }
                }
                Ok(_) => {}
                Err(e) => source = format!("unreadable entry {}: {e}", entry.index),
            }
        }
        ctx.record(
            0,
            BridgeEvent::DurableWrites {
                member: *member,
                source,
                entries,
                writes: log.into_iter().collect(),
            },
        );
        if recovered.snapshot.index > 0 {
            let (source, held) = match snapshot_writes(&recovered.snapshot_data) {
                Ok(held) => ("snapshot".to_string(), held),
                Err(e) => (format!("unreadable snapshot: {e}"), BTreeSet::new()),
            };
            ctx.record(
                0,
                BridgeEvent::DurableWrites {
                    member: *member,
                    source,
                    entries: recovered.snapshot.index,
                    writes: held.into_iter().collect(),
                },
            );
        }
    }
}

/// The bridge keys a node snapshot holds, every version of each: the node
/// snapshot wraps the state machine's, which wraps the coordination state's.
fn snapshot_writes(data: &[u8]) -> Result<BTreeSet<(String, String)>, prost::DecodeError> {
    let node = NodeSnapshot::decode(data)?;
    let replicated = ReplicatedSnapshot::decode(&node.state_machine[..])?;
    let coord = CoordSnapshot::decode(&replicated.coord[..])?;
    let mut held = BTreeSet::new();
    for key in &coord.keys {
        for version in &key.versions {
            if let Some(kv) = &version.kv {
                keep(&kv.key, &kv.value, &mut held);
            }
        }
    }
    Ok(held)
}

fn keep(key: &[u8], value: &[u8], into: &mut BTreeSet<(String, String)>) {
    if key.starts_with(REGISTRY.as_bytes()) {
        into.insert((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
}

/// The puts a coordination command carries, in both branches of a transaction
/// (what the log holds, applied or not).
fn writes_of(op: Op, into: &mut BTreeSet<(String, String)>) {
    match op {
        Op::Put(put) => keep(&put.key, &put.value, into),
        Op::Txn(txn) => {
            for request in txn.success.into_iter().chain(txn.failure) {
                request_writes(request, into);
            }
        }
        _ => {}
    }
}

fn request_writes(request: RequestOp, into: &mut BTreeSet<(String, String)>) {
    match request.request {
        Some(request_op::Request::RequestPut(put)) => keep(&put.key, &put.value, into),
        Some(request_op::Request::RequestTxn(txn)) => {
            for r in txn.success.into_iter().chain(txn.failure) {
                request_writes(r, into);
            }
        }
        _ => {}
    }
}
