//! Watchers and the compactor. A watcher watches one prefix — the registers' or the
//! leases' — from revision 1, and whenever its stream breaks (an error, a silent
//! member, a cancel) or it decides to move to another member (every few seconds),
//! it resumes from the last revision it saw + 1, or from the compact revision when
//! its start was compacted away. The compactor compacts a few revisions behind the
//! head, so lagging watchers meet compaction.

use std::sync::Arc;
use std::time::Duration;

use coordlab::client::Connection;
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::watch_client::WatchClient;
use coordlab::proto::etcdserverpb::watch_request::RequestUnion;
use coordlab::proto::etcdserverpb::{
    CompactionRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use coordlab::proto::mvccpb::event::EventType;
use futures::StreamExt;
use madsim::rand::{thread_rng, Rng};
use tonic::codec::Streaming;
use tonic::{Code, Status};

use super::conn::{connect, prefix_end};
use super::{lease, register};
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::{EventKind, WatchedEvent};
use crate::sim::workload::WorkloadControl;

/// How far behind the head the compactor compacts (in revisions).
const COMPACTION_LAG: i64 = 20;

/// The prefix watcher `watcher` watches: registers and leases alternately, where
/// the scenario writes them.
fn prefix_for(watcher: u64, scenario: &Scenario) -> &'static str {
    let spec = &scenario.coord;
    match (spec.register_clients > 0, spec.lease_clients > 0) {
        (true, true) if watcher.is_multiple_of(2) => lease::PREFIX,
        (false, true) => lease::PREFIX,
        _ => register::PREFIX,
    }
}

/// How a session ended.
enum Ended {
    /// Resume from this revision.
    ResumeAt(i64),
    Stopped,
}

pub async fn run_watcher(
    watcher: u64,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
) {
    let prefix = prefix_for(watcher, &scenario);
    let conn = connect(&scenario);
    let mut next = 1;
    // Let the writers start first: the first watch then replays history.
    tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(500..2_000))).await;
    while !control.stopped() {
        match watch_session(watcher, prefix, next, &conn, &recorder, &control).await {
            Ended::ResumeAt(revision) => next = revision,
            Ended::Stopped => return,
        }
        // Now and then a long break, so a compactor can overtake the watcher.
        let pause = if thread_rng().gen_bool(0.3) {
            thread_rng().gen_range(1_000..4_000)
        } else {
            thread_rng().gen_range(10..200)
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn closed(recorder: &Recorder, watcher: u64, reason: String, compact_revision: i64) {
    recorder.record(
        watcher,
        EventKind::WatchClosed {
            watcher,
            reason,
            compact_revision,
        },
    );
}

async fn open_watch(
    conn: &Connection,
    prefix: &str,
    start_revision: i64,
) -> Result<Streaming<WatchResponse>, Status> {
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
            start_revision,
            ..Default::default()
        })),
    };
    conn.once(|ch| async move {
        // The request stream stays open for as long as the watch runs.
        let requests = futures::stream::iter([create]).chain(futures::stream::pending());
        Ok(WatchClient::new(ch).watch(requests).await?.into_inner())
    })
    .await
}

/// One watch stream, from `start` until it breaks or the watcher moves on.
async fn watch_session(
    watcher: u64,
    prefix: &str,
    start: i64,
    conn: &Connection,
    recorder: &Recorder,
    control: &WorkloadControl,
) -> Ended {
    let mut stream = match open_watch(conn, prefix, start).await {
        Ok(stream) => stream,
        Err(_) => return Ended::ResumeAt(start),
    };
    recorder.record(
        watcher,
        EventKind::WatchOpened {
            watcher,
            prefix: prefix.to_string(),
            start_revision: start,
        },
    );
    let session = Duration::from_millis(thread_rng().gen_range(2_000..6_000));
    let until = tokio::time::Instant::now() + session;
    let mut next = start;
    loop {
        if control.stopped() {
            closed(recorder, watcher, "workload stopped".into(), 0);
            return Ended::Stopped;
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let message = match tokio::time::timeout(left, stream.message()).await {
            Err(_) => {
                conn.rotate();
                closed(recorder, watcher, "moving to another member".into(), 0);
                return Ended::ResumeAt(next);
            }
            Ok(Err(status)) => {
                conn.rotate();
                closed(recorder, watcher, format!("stream error: {status}"), 0);
                return Ended::ResumeAt(next);
            }
            Ok(Ok(None)) => {
                conn.rotate();
                closed(recorder, watcher, "stream ended".into(), 0);
                return Ended::ResumeAt(next);
            }
            Ok(Ok(Some(message))) => message,
        };
        if message.canceled {
            let compacted = message.compact_revision;
            closed(
                recorder,
                watcher,
                format!("cancelled: {}", message.cancel_reason),
                compacted,
            );
            return Ended::ResumeAt(if compacted > 0 { compacted } else { next });
        }
        if message.events.is_empty() {
            continue;
        }
        let events: Vec<WatchedEvent> = message
            .events
            .iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap_or_default();
                WatchedEvent {
                    revision: kv.mod_revision,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    kind: match EventType::try_from(e.r#type) {
                        Ok(EventType::Delete) => "delete",
                        _ => "put",
                    }
                    .into(),
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                }
            })
            .collect();
        next = next.max(events.iter().map(|e| e.revision).max().unwrap_or(0) + 1);
        recorder.record(watcher, EventKind::WatchEvents { watcher, events });
    }
}

/// Compacts the store every `compact_every_ms`, a few revisions behind the head.
pub async fn run_compactor(
    client: u64,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    control: WorkloadControl,
) {
    let every = Duration::from_millis(scenario.coord.compact_every_ms);
    let conn = connect(&scenario);
    let mut compacted = 0;
    while !control.stopped() {
        tokio::time::sleep(every).await;
        let head = conn
            .once(|ch| async move {
                KvClient::new(ch)
                    .range(RangeRequest {
                        key: register::PREFIX.as_bytes().to_vec(),
                        serializable: true,
                        ..Default::default()
                    })
                    .await
            })
            .await;
        let Some(head) = head
            .ok()
            .and_then(|r| r.into_inner().header)
            .map(|h| h.revision)
        else {
            continue;
        };
        let revision = head - COMPACTION_LAG;
        if revision <= compacted {
            continue;
        }
        let answer = conn
            .once(|ch| async move {
                KvClient::new(ch)
                    .compact(CompactionRequest {
                        revision,
                        physical: false,
                    })
                    .await
            })
            .await;
        let outcome = match answer {
            Ok(_) => {
                compacted = revision;
                "ok"
            }
            // Already compacted past it, or ahead of the member's store: no effect.
            Err(e) if e.code() == Code::OutOfRange => "fail",
            Err(_) => "unknown",
        };
        recorder.record(
            client,
            EventKind::Compacted {
                client,
                revision,
                outcome: outcome.into(),
            },
        );
    }
}
