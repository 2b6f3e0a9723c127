//! The end-of-run audits, with plain etcd calls (not the library's), once the
//! cluster has healed and the library clients have stopped: the committed history of
//! the config keys from revision 1 (recorded after the watchers had their chance to
//! catch up), every lock guard's key at its fencing token's revision, and the leases
//! the cluster still holds.

use std::sync::Arc;
use std::time::Duration;

use coordlab::coord::service::lock::prefix_end;
use coordlab::library::Coordinator;
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::lease_client::LeaseClient;
use coordlab::proto::etcdserverpb::watch_client::WatchClient;
use coordlab::proto::etcdserverpb::{
    watch_request, LeaseLeasesRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use coordlab::proto::mvccpb::event::EventType;
use futures::StreamExt as _;
use tokio::time::Instant;

use super::config::{Stamp, WatchRange, PREFIX};
use super::context::{Ctx, WatcherProgress};
use crate::sim::trace::{CommittedChange, EventKind, LibraryEvent};

const ATTEMPTS: usize = 5;
/// Deadline of one attempt to read the history.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// How long watchers get to deliver the last committed change in their range.
const WATCHER_CATCH_UP: Duration = Duration::from_secs(5);

fn label(value: &[u8]) -> String {
    serde_json::from_slice::<Stamp>(value)
        .map(|s| s.label())
        .unwrap_or_else(|_| String::from_utf8_lossy(value).into_owned())
}

/// The revision of the latest change under the prefix: its keys' highest mod
/// revision (the config workload never deletes).
async fn latest_change(c: &Coordinator) -> Option<i64> {
    let r = c
        .connection()
        .call(|ch, conn| {
            let req = conn.request(RangeRequest {
                key: PREFIX.as_bytes().to_vec(),
                range_end: prefix_end(PREFIX.as_bytes()),
                keys_only: true,
                ..Default::default()
            });
            async move { KvClient::new(ch).range(req).await }
        })
        .await
        .ok()?;
    Some(
        r.into_inner()
            .kvs
            .iter()
            .map(|kv| kv.mod_revision)
            .max()
            .unwrap_or(0),
    )
}

/// Every change under the prefix from revision 1 through `through`, from one member.
async fn watch_history(c: &Coordinator, through: i64) -> Result<Vec<CommittedChange>, String> {
    let conn = c.connection();
    let create = WatchCreateRequest {
        key: PREFIX.as_bytes().to_vec(),
        range_end: prefix_end(PREFIX.as_bytes()),
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
    let mut changes: Vec<CommittedChange> = Vec::new();
    while let Some(resp) = stream.message().await.map_err(|s| s.to_string())? {
        if resp.canceled {
            return Err(format!("watch canceled: {}", resp.cancel_reason));
        }
        for ev in resp.events {
            let kv = ev.kv.unwrap_or_default();
            if kv.mod_revision <= through {
                changes.push(CommittedChange {
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: label(&kv.value),
                    deleted: ev.r#type == EventType::Delete as i32,
                });
            }
        }
        if changes.last().is_some_and(|c| c.revision >= through) {
            return Ok(changes);
        }
    }
    Err("the watch stream ended".into())
}

async fn read_history(c: &Coordinator) -> Result<(i64, Vec<CommittedChange>), String> {
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        let Some(through) = latest_change(c).await else {
            last_error = "could not read the config keys".into();
            continue;
        };
        if through == 0 {
            return Ok((0, Vec::new()));
        }
        match tokio::time::timeout(READ_DEADLINE, watch_history(c, through)).await {
            Ok(Ok(changes)) => return Ok((through, changes)),
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = format!("no full history within {READ_DEADLINE:?}"),
        }
        c.connection().rotate();
    }
    Err(last_error)
}

/// Whether some opened watcher has yet to deliver the last change in its range.
fn some_watcher_behind(
    watchers: &[(WatchRange, Arc<WatcherProgress>)],
    changes: &[CommittedChange],
) -> bool {
    watchers.iter().any(|(range, progress)| {
        let Some((after, delivered)) = *progress.state.lock().unwrap_or_else(|p| p.into_inner())
        else {
            return false;
        };
        let last = changes
            .iter()
            .filter(|c| range.covers(&c.key))
            .map(|c| c.revision)
            .max()
            .unwrap_or(0);
        last > after && delivered < last
    })
}

pub async fn audit_config_history(ctx: Ctx, watchers: Vec<(WatchRange, Arc<WatcherProgress>)>) {
    let c = ctx.coordinator(ctx.endpoints.clone()).await;
    let (through_revision, changes, error) = match read_history(&c).await {
        Ok((through, changes)) => (through, changes, None),
        Err(e) => (0, Vec::new(), Some(e)),
    };
    let deadline = Instant::now() + WATCHER_CATCH_UP;
    while some_watcher_behind(&watchers, &changes) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctx.record(
        0,
        LibraryEvent::ConfigHistory {
            prefix: PREFIX.into(),
            through_revision,
            changes,
            error,
        },
    );
}

/// (create revision, lease) of `key` as of `revision` (None: absent then).
async fn key_at(c: &Coordinator, key: &str, revision: i64) -> Result<Option<(i64, i64)>, String> {
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        let read = c
            .connection()
            .range(RangeRequest {
                key: key.as_bytes().to_vec(),
                revision,
                ..Default::default()
            })
            .await;
        match read {
            Ok(r) => return Ok(r.kvs.first().map(|kv| (kv.create_revision, kv.lease))),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(last_error)
}

/// Reads every lock guard's key (`<lock>/<lease hex>`, the library's owner key) as
/// of the guard's fencing token: the cluster's own record of its create revision
/// and lease, for `library_fencing_token`.
pub async fn audit_fencing_tokens(ctx: Ctx) {
    // (client, lock, lease, token) of every guard so far; no await before the
    // marker, so the marker names exactly this set.
    let guards: Vec<(u64, String, i64, i64)> = {
        let state = ctx.recorder.lock();
        state
            .trace
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Library(LibraryEvent::LockAcquired {
                    lock, lease, token, ..
                }) => Some((e.node, lock.clone(), *lease, *token)),
                _ => None,
            })
            .collect()
    };
    ctx.record(0, LibraryEvent::TokenAuditStarted);
    let c = ctx.coordinator(ctx.endpoints.clone()).await;
    for (client, lock, lease, token) in guards {
        let key = format!("{lock}/{lease:x}");
        let (found, error) = match key_at(&c, &key, token).await {
            Ok(found) => (found, None),
            Err(e) => (None, Some(e)),
        };
        ctx.record(
            0,
            LibraryEvent::TokenAudited {
                client,
                lock,
                key,
                lease,
                token,
                found,
                error,
            },
        );
    }
}

/// Records the leases the cluster holds (`LeaseLeases`), `waited` after the clients
/// stopped.
pub async fn list_leases(ctx: Ctx, waited: Duration, clients_running: u64) {
    let c = ctx.coordinator(ctx.endpoints.clone()).await;
    for _ in 0..ATTEMPTS {
        let listed = c
            .connection()
            .call(|ch, conn| {
                let req = conn.request(LeaseLeasesRequest {});
                async move { LeaseClient::new(ch).lease_leases(req).await }
            })
            .await;
        if let Ok(r) = listed {
            let leases = r.into_inner().leases.iter().map(|l| l.id).collect();
            ctx.record(
                0,
                LibraryEvent::LeasesLeft {
                    leases,
                    waited_ms: waited.as_millis() as u64,
                    clients_running,
                },
            );
            return;
        }
    }
}
