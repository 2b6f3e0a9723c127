//! A watch that survives its stream: when a stream breaks (member down, leader
//! change, network) it reopens on another member from the revision after the last
//! event it delivered, so no committed change is missed or seen twice. Only a
//! compaction of that history ends it, with an error saying so.

use std::sync::Arc;

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connection::Connection;
use super::error::CoordinatorError;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use crate::proto::mvccpb::event::EventType;

/// A change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    pub deleted: bool,
    pub key: Vec<u8>,
    /// The new value (empty for a deletion).
    pub value: Vec<u8>,
    /// The value before the change, when the key was live.
    pub prev_value: Option<Vec<u8>>,
    pub revision: i64,
}

pub struct ResumableWatch {
    events: mpsc::UnboundedReceiver<Result<KeyEvent, CoordinatorError>>,
    task: JoinHandle<()>,
}

impl ResumableWatch {
    /// Watches `[key, range_end)` (etcd's range rules) from `start_revision`
    /// (0: from now on).
    pub fn start(
        conn: Arc<Connection>,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: i64,
    ) -> ResumableWatch {
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(conn, key, range_end, start_revision, tx));
        ResumableWatch { events, task }
    }

    /// The next change; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<KeyEvent, CoordinatorError>> {
        self.events.recv().await
    }
}

impl Drop for ResumableWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    conn: Arc<Connection>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    mut next_revision: i64,
    tx: mpsc::UnboundedSender<Result<KeyEvent, CoordinatorError>>,
) {
    let mut failures = 0;
    while !conn.is_closed() && !tx.is_closed() {
        let create = WatchCreateRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            start_revision: next_revision,
            prev_kv: true,
            ..Default::default()
        };
        let requests = futures::stream::iter([WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        }])
        .chain(futures::stream::pending());
        let opened = WatchClient::new(conn.channel())
            .watch(conn.request(requests))
            .await;
        if let Ok(stream) = opened {
            let mut stream = stream.into_inner();
            while let Ok(Some(resp)) = stream.message().await {
                failures = 0;
                if resp.canceled {
                    if resp.compact_revision > 0 {
                        let _ = tx.send(Err(CoordinatorError::Compacted {
                            key: String::from_utf8_lossy(&key).into_owned(),
                            compact_revision: resp.compact_revision,
                        }));
                        return;
                    }
                    break;
                }
                if next_revision <= 0 {
                    // Started at "now": a resume must start right after it.
                    next_revision = resp.header.as_ref().map_or(0, |h| h.revision + 1);
                }
                for ev in resp.events {
                    let kv = ev.kv.unwrap_or_default();
                    next_revision = kv.mod_revision + 1;
                    let event = KeyEvent {
                        deleted: ev.r#type == EventType::Delete as i32,
                        key: kv.key,
                        value: kv.value,
                        prev_value: ev.prev_kv.map(|p| p.value),
                        revision: kv.mod_revision,
                    };
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
            }
        }
        failures += 1;
        conn.rotate();
        tokio::time::sleep(conn.retry().delay(failures.min(8))).await;
    }
}
