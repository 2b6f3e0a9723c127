//! Config writers and watchers through the library's config center.
//!
//! Writers `set` unique values (`Stamp { writer, seq }`, labelled `w<writer>-<seq>`)
//! to a few shared keys; several writers share each key, so a retried "put unless
//! equal" can find another writer's value in between. Watchers open their watch at a
//! drawn time in the first half of the safety phase, bracketed by two reads of the
//! store revision, and record every change they are delivered and every time the
//! library resumed their watch. A cut-off watcher's host is cut off from the
//! cluster once, for longer than the library takes to give a silent stream up.

use std::sync::Arc;
use std::time::Duration;

use coordlab::library::{ConfigWatcher, Coordinator, EventType};
use coordlab::proto::etcdserverpb::kv_client::KvClient;
use coordlab::proto::etcdserverpb::RangeRequest;
use madsim::rand::{thread_rng, Rng};
use madsim::task::NodeId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::context::{Ctx, WatcherProgress};
use super::isolation::Isolation;
use crate::sim::scenario::library::LibrarySpec;
use crate::sim::trace::LibraryEvent;

pub const PREFIX: &str = "lib/cfg/";

/// The unique value a writer sets.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Stamp {
    pub writer: u64,
    pub seq: u64,
}

impl Stamp {
    pub fn label(&self) -> String {
        format!("w{}-{}", self.writer, self.seq)
    }
}

pub fn config_key(i: u64) -> String {
    format!("{PREFIX}{i}")
}

/// What a watcher watches: one key, or the whole prefix.
#[derive(Debug, Clone)]
pub struct WatchRange {
    pub range: String,
    pub prefix: bool,
}

impl WatchRange {
    /// Even watchers watch the prefix, odd ones one key each in turn.
    pub fn for_watcher(spec: &LibrarySpec, k: u64) -> WatchRange {
        if k.is_multiple_of(2) {
            WatchRange {
                range: PREFIX.into(),
                prefix: true,
            }
        } else {
            WatchRange {
                range: config_key((k / 2) % spec.config_keys),
                prefix: false,
            }
        }
    }

    pub fn covers(&self, key: &str) -> bool {
        if self.prefix {
            key.starts_with(&self.range)
        } else {
            key == self.range
        }
    }
}

pub async fn run_writer(ctx: Ctx, client: u64, writer: u64) {
    let c = ctx.coordinator(ctx.endpoints.clone()).await;
    let mut seq = 0;
    while !ctx.stop.stopped() {
        let pause = thread_rng().gen_range(50..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        seq += 1;
        let key = config_key(thread_rng().gen_range(0..ctx.spec.config_keys));
        let stamp = Stamp { writer, seq };
        let outcome = match c.config().set(&key, &stamp).await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        ctx.record(
            client,
            LibraryEvent::ConfigSet {
                key,
                value: stamp.label(),
                outcome,
            },
        );
    }
}

/// The store's current revision, by a linearizable read.
pub async fn store_revision(c: &Coordinator) -> Option<i64> {
    let r = c
        .connection()
        .call(|ch, conn| {
            let req = conn.request(RangeRequest {
                key: PREFIX.as_bytes().to_vec(),
                range_end: coordlab::coord::service::lock::prefix_end(PREFIX.as_bytes()),
                count_only: true,
                ..Default::default()
            });
            async move { KvClient::new(ch).range(req).await }
        })
        .await
        .ok()?;
    r.into_inner().header.map(|h| h.revision)
}

/// Opens the watch between two reads of the store revision (retrying until all
/// three succeed).
async fn open(c: &Coordinator, range: &WatchRange) -> (ConfigWatcher<Stamp>, i64, i64) {
    loop {
        let Some(before) = store_revision(c).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let watch = if range.prefix {
            c.config().watch_prefix::<Stamp>(&range.range).await
        } else {
            c.config().watch::<Stamp>(&range.range).await
        };
        let Ok(watch) = watch else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        match store_revision(c).await {
            Some(after) => return (watch, before, after),
            None => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// When a cut-off watcher is cut off: 1–4 s after its watch opened, for 3–5 s —
/// longer than the library's two request deadlines of silence, so that it gives the
/// stream up and resumes.
fn cut_off_window() -> (Instant, Instant) {
    let start = Instant::now() + Duration::from_millis(thread_rng().gen_range(1_000..=4_000));
    let end = start + Duration::from_millis(thread_rng().gen_range(3_000..=5_000));
    (start, end)
}

/// `host`: the watcher's host, if it is to be cut off from the cluster once.
pub async fn run_watcher(
    ctx: Ctx,
    client: u64,
    host: Option<NodeId>,
    range: WatchRange,
    progress: Arc<WatcherProgress>,
) {
    let c = ctx.coordinator(ctx.endpoints.clone()).await;
    let delay = thread_rng().gen_range(0..=ctx.safety_ms / 2);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let (mut watch, before, after) = open(&c, &range).await;
    ctx.record(
        client,
        LibraryEvent::ConfigWatchOpened {
            range: range.range.clone(),
            prefix: range.prefix,
            before_revision: before,
            after_revision: after,
        },
    );
    *progress.state.lock().unwrap_or_else(|p| p.into_inner()) = Some((after, 0));
    let mut resumes = watch.resumes();
    let mut cut_off = host.map(|host| (host, cut_off_window()));
    let mut isolation: Option<Isolation> = None;
    let error = loop {
        // The next time the cut-off starts or ends.
        let turn = cut_off.map(|(_, (start, end))| if isolation.is_none() { start } else { end });
        tokio::select! {
            biased;
            event = watch.next() => {
                let event = match event {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => break e.to_string(),
                    None => break "ended".to_string(),
                };
                ctx.record(
                    client,
                    LibraryEvent::ConfigDelivered {
                        key: event.key,
                        value: event.value.map(|s| s.label()).unwrap_or_default(),
                        deleted: event.kind == EventType::Delete,
                        revision: event.revision,
                    },
                );
                if let Some((_, delivered)) = progress
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    *delivered = event.revision;
                }
            }
            Ok(()) = resumes.changed() => {
                let resumed = *resumes.borrow_and_update();
                ctx.record(
                    client,
                    LibraryEvent::WatchResumed {
                        count: resumed.count,
                        from_revision: resumed.from_revision,
                    },
                );
            }
            _ = tokio::time::sleep_until(turn.unwrap_or_else(Instant::now)), if turn.is_some() => {
                let Some((host, (start, end))) = cut_off else { continue };
                if isolation.is_none() {
                    let for_ms = (end - start).as_millis() as u64;
                    ctx.record(client, LibraryEvent::Isolated { for_ms });
                    isolation = Some(Isolation::start(host));
                } else {
                    isolation = None;
                    cut_off = None;
                    ctx.record(client, LibraryEvent::Reconnected);
                }
            }
        }
    };
    if isolation.take().is_some() {
        ctx.record(client, LibraryEvent::Reconnected);
    }
    ctx.record(client, LibraryEvent::ConfigWatchEnded { error });
}
