//! A watch that survives its stream: when a stream breaks (member down, leader
//! change, network) it reopens on another member from the revision after the last
//! event it delivered, so no committed change is missed or seen twice. A stream can
//! also die without breaking — a member frozen, or cut off without a reset — so a
//! stream silent for one request deadline (`CoordinatorConfig::timeout`) is asked
//! for progress (etcd's `WatchProgressRequest`, answered at once by a live member),
//! and one still silent a deadline later is given up and reopened like a broken
//! one. Only a compaction of that history ends the watch, with an error saying so.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error::CoordinatorError;
use crate::client::Connection;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use crate::proto::mvccpb::event::EventType;
use crate::seams::mutants;
use crate::sync::watch;

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
    /// The last event of its revision (etcd sends a revision's events in one
    /// response): a view that applied it is the keyspace as of `revision`.
    pub completes_revision: bool,
}

/// How often a watch has reopened its stream, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumes {
    /// Streams reopened after the first one opened.
    pub count: u64,
    /// The revision the latest one started from (0: from now on).
    pub from_revision: i64,
}

pub struct ResumableWatch {
    events: mpsc::UnboundedReceiver<Result<KeyEvent, CoordinatorError>>,
    resumes: watch::Receiver<Resumes>,
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
        let (resumed, resumes) = watch::channel(Resumes::default());
        let task = tokio::spawn(run(conn, key, range_end, start_revision, tx, resumed));
        ResumableWatch {
            events,
            resumes,
            task,
        }
    }

    /// The next change; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<KeyEvent, CoordinatorError>> {
        self.events.recv().await
    }

    /// Follows how often the watch reopened its stream, and from where.
    pub fn resumes(&self) -> watch::Receiver<Resumes> {
        self.resumes.clone()
    }
}

impl Drop for ResumableWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a stream ended.
enum StreamEnd {
    /// Broken or silent: reopen it.
    Lost,
    /// The watch is over (compacted, or nobody reads it any more).
    Done,
}

async fn run(
    conn: Arc<Connection>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    mut next_revision: i64,
    tx: mpsc::UnboundedSender<Result<KeyEvent, CoordinatorError>>,
    resumed: watch::Sender<Resumes>,
) {
    let mut failures = 0;
    let mut opened_once = false;
    let mut resumes = Resumes::default();
    while !conn.is_closed() && !tx.is_closed() {
        // The mutant resumes from the current revision, dropping what it missed.
        let start_revision = if opened_once && mutants::active("watch_resumes_from_now") {
            0
        } else {
            next_revision
        };
        let create = WatchCreateRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            start_revision,
            prev_kv: true,
            ..Default::default()
        };
        let (progress, asks) = futures::channel::mpsc::unbounded();
        let requests = futures::stream::iter([WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        }])
        .chain(asks);
        // A frozen member never answers: the open has a deadline too.
        let opened = tokio::time::timeout(
            conn.timeout(),
            WatchClient::new(conn.channel()).watch(conn.request(requests)),
        )
        .await;
        if let Ok(Ok(stream)) = opened {
            if opened_once {
                resumes.count += 1;
                resumes.from_revision = start_revision;
                resumed.send_replace(resumes);
            }
            opened_once = true;
            let mut stream = Followed {
                stream: stream.into_inner(),
                progress,
                deadline: conn.timeout(),
            };
            while let Some(resp) = stream.next().await {
                failures = 0;
                match deliver(resp, &key, &mut next_revision, &tx) {
                    Some(StreamEnd::Done) => return,
                    Some(StreamEnd::Lost) => break,
                    None => {}
                }
            }
        }
        failures += 1;
        conn.rotate();
        tokio::time::sleep(conn.retry().delay(failures.min(8))).await;
    }
}

/// An open stream and the way to ask it for progress.
struct Followed {
    stream: tonic::Streaming<WatchResponse>,
    progress: futures::channel::mpsc::UnboundedSender<WatchRequest>,
    /// How long a silence lasts before progress is asked for, and then before the
    /// stream is given up.
    deadline: Duration,
}

impl Followed {
    /// The next response; `None` once the stream broke, ended or stayed silent for
    /// a deadline after being asked for progress.
    async fn next(&mut self) -> Option<WatchResponse> {
        let mut asked = false;
        loop {
            match tokio::time::timeout(self.deadline, self.stream.message()).await {
                Ok(Ok(Some(resp))) => return Some(resp),
                Ok(_) => return None,
                Err(_) if asked => return None,
                Err(_) => {
                    asked = true;
                    let ask = watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {});
                    let _ = self.progress.unbounded_send(WatchRequest {
                        request_union: Some(ask),
                    });
                }
            }
        }
    }
}

/// Hands one response's events on; `Some` when the stream ends with it.
fn deliver(
    resp: WatchResponse,
    key: &[u8],
    next_revision: &mut i64,
    tx: &mpsc::UnboundedSender<Result<KeyEvent, CoordinatorError>>,
) -> Option<StreamEnd> {
    if resp.canceled {
        if resp.compact_revision > 0 {
            let _ = tx.send(Err(CoordinatorError::Compacted {
                key: String::from_utf8_lossy(key).into_owned(),
                compact_revision: resp.compact_revision,
            }));
            return Some(StreamEnd::Done);
        }
        return Some(StreamEnd::Lost);
    }
    if *next_revision <= 0 {
        // Started at "now": a resume must start right after it.
        *next_revision = resp.header.as_ref().map_or(0, |h| h.revision + 1);
    }
    let revisions: Vec<i64> = resp
        .events
        .iter()
        .map(|ev| ev.kv.as_ref().map_or(0, |kv| kv.mod_revision))
        .collect();
    for (i, ev) in resp.events.into_iter().enumerate() {
        let kv = ev.kv.unwrap_or_default();
        *next_revision = kv.mod_revision + 1;
        let event = KeyEvent {
            deleted: ev.r#type == EventType::Delete as i32,
            key: kv.key,
            value: kv.value,
            prev_value: ev.prev_kv.map(|p| p.value),
            revision: kv.mod_revision,
            completes_revision: revisions.get(i + 1) != Some(&kv.mod_revision),
        };
        if tx.send(Ok(event)).is_err() {
            return Some(StreamEnd::Done);
        }
    }
    None
}
