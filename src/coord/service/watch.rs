//! etcd `Watch`: one bidirectional stream carries many watchers. A create reads the
//! requested history and registers the watcher with this member's hub under one
//! lock of the state, so history and live events join without gap or overlap.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::CoordContext;
use crate::coord::auth::Access;
use crate::coord::errors::CoordError;
use crate::coord::watch_hub::{WatchSink, WatchSpec};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use crate::seams::mutants;

/// How often a watcher that asked for progress notifications gets one.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10 * 60);

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

pub struct WatchService {
    ctx: CoordContext,
}

impl WatchService {
    pub fn new(ctx: CoordContext) -> Self {
        WatchService { ctx }
    }
}

/// The watchers of one stream: watch id → hub id (and whether it wants progress).
struct StreamWatchers {
    ctx: CoordContext,
    sink: WatchSink,
    by_id: BTreeMap<i64, (u64, bool)>,
    next_id: i64,
}

impl StreamWatchers {
    fn send(&self, resp: WatchResponse) {
        let _ = self.sink.send(resp);
    }

    fn create(&mut self, c: WatchCreateRequest) {
        let watch_id = if c.watch_id != 0 {
            c.watch_id
        } else {
            self.next_id
        };
        self.next_id = self.next_id.max(watch_id + 1);
        if self.by_id.contains_key(&watch_id) {
            self.send(WatchResponse {
                header: Some(self.ctx.header()),
                watch_id,
                created: true,
                canceled: true,
                cancel_reason: "etcdserver: duplicate watch ID".into(),
                ..Default::default()
            });
            return;
        }
        let spec = WatchSpec {
            key: c.key,
            range_end: c.range_end,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: c.prev_kv,
        };
        let header = self.ctx.header();
        let mut state = self.ctx.state.lock();
        let current = state.mvcc.revision();
        self.send(WatchResponse {
            header: Some(header),
            watch_id,
            created: true,
            ..Default::default()
        });
        let wants_history = c.start_revision > 0 && c.start_revision <= current;
        let hub_id = if wants_history && !mutants::active("watch_skips_history") {
            match state
                .mvcc
                .changes_since(&spec.key, &spec.range_end, c.start_revision)
            {
                Ok(history) => state.hub.add(
                    spec,
                    watch_id,
                    self.sink.clone(),
                    c.start_revision,
                    &history,
                ),
                Err(e) => {
                    let compact_revision = match CoordError::from(e) {
                        CoordError::Compacted { compact_revision } => compact_revision,
                        _ => state.mvcc.compact_revision(),
                    };
                    self.send(WatchResponse {
                        header: Some(header),
                        watch_id,
                        canceled: true,
                        compact_revision,
                        cancel_reason: CoordError::Compacted { compact_revision }.to_string(),
                        ..Default::default()
                    });
                    return;
                }
            }
        } else {
            let next = c.start_revision.max(current + 1);
            state.hub.add(spec, watch_id, self.sink.clone(), next, &[])
        };
        self.by_id.insert(watch_id, (hub_id, c.progress_notify));
    }

    fn cancel(&mut self, watch_id: i64) {
        if let Some((hub_id, _)) = self.by_id.remove(&watch_id) {
            self.ctx.state.lock().hub.remove(hub_id);
            self.send(WatchResponse {
                header: Some(self.ctx.header()),
                watch_id,
                canceled: true,
                ..Default::default()
            });
        }
    }

    /// An empty response carrying the current revision (etcd's progress notify).
    fn progress(&self, watch_id: i64) {
        self.send(WatchResponse {
            header: Some(self.ctx.header()),
            watch_id,
            ..Default::default()
        });
    }

    fn close(&mut self) {
        let mut state = self.ctx.state.lock();
        for (hub_id, _) in self.by_id.values() {
            state.hub.remove(*hub_id);
        }
        self.by_id.clear();
    }
}

/// Serves one stream's requests until the client closes it.
async fn serve_requests(
    mut watchers: StreamWatchers,
    mut inbound: Streaming<WatchRequest>,
    user_check: impl Fn(&WatchCreateRequest) -> Result<(), CoordError>,
) {
    let clock = watchers.ctx.proposer.clone();
    loop {
        let next = tokio::select! {
            biased;
            msg = inbound.message() => msg,
            _ = clock.clock().sleep(PROGRESS_INTERVAL) => {
                let wanting: Vec<i64> = watchers
                    .by_id
                    .iter()
                    .filter(|(_, (_, progress))| *progress)
                    .map(|(id, _)| *id)
                    .collect();
                for id in wanting {
                    watchers.progress(id);
                }
                continue;
            }
        };
        let Ok(Some(req)) = next else { break };
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => {
                if let Err(e) = user_check(&c) {
                    watchers.send(WatchResponse {
                        header: Some(watchers.ctx.header()),
                        created: true,
                        canceled: true,
                        cancel_reason: e.to_string(),
                        watch_id: -1,
                        ..Default::default()
                    });
                    continue;
                }
                watchers.create(c)
            }
            Some(watch_request::RequestUnion::CancelRequest(c)) => watchers.cancel(c.watch_id),
            // etcd answers a progress request with watch id -1.
            Some(watch_request::RequestUnion::ProgressRequest(_)) => watchers.progress(-1),
            None => {}
        }
    }
    watchers.close();
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        // The token is checked when the stream opens; permissions per watcher.
        let user = self.ctx.user(&request)?;
        let ctx = self.ctx.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watchers = StreamWatchers {
            ctx: ctx.clone(),
            sink: tx,
            by_id: BTreeMap::new(),
            next_id: 0,
        };
        let check_ctx = ctx.clone();
        let user_check = move |c: &WatchCreateRequest| -> Result<(), CoordError> {
            match &user {
                None => Ok(()),
                Some(u) => {
                    let access = Access::Read {
                        key: &c.key,
                        range_end: &c.range_end,
                    };
                    if check_ctx.state.lock().auth.permits(u, access) {
                        Ok(())
                    } else {
                        Err(CoordError::PermissionDenied)
                    }
                }
            }
        };
        tokio::spawn(serve_requests(watchers, request.into_inner(), user_check));
        let out = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|r| r.map(Ok)));
        Ok(Response::new(Box::pin(out)))
    }
}
