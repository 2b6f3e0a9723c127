//! Live watchers of one member. The state machine publishes every change here while
//! it applies it (under the same lock), and a new watcher is registered under that
//! lock right after its history was read, so each watcher sees every revision once,
//! in order, with no gap between its history and its live events.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::convert;
use super::mvcc::{Change, MvccStore};
use crate::proto::etcdserverpb::{ResponseHeader, WatchResponse};

/// Where a watcher's responses go (its gRPC stream's outgoing queue).
pub type WatchSink = mpsc::UnboundedSender<WatchResponse>;

/// What one watcher selects.
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl WatchSpec {
    fn selects(&self, c: &Change) -> bool {
        let key = c.kv.key.as_slice();
        let in_range = match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        };
        let filtered = if c.deleted {
            self.no_delete
        } else {
            self.no_put
        };
        in_range && !filtered
    }
}

struct Watcher {
    spec: WatchSpec,
    watch_id: i64,
    sink: WatchSink,
    /// The first revision this watcher has not been sent yet.
    next_revision: i64,
}

pub struct WatchHub {
    member_id: u64,
    next_id: u64,
    watchers: BTreeMap<u64, Watcher>,
}

impl WatchHub {
    pub fn new(member_id: u64) -> Self {
        WatchHub {
            member_id,
            next_id: 1,
            watchers: BTreeMap::new(),
        }
    }

    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            member_id: self.member_id,
            revision,
            ..Default::default()
        }
    }

    /// Sends `watch_id`'s matching events among `changes` (one revision's or a
    /// history's, in revision order), one response per revision.
    fn deliver(&self, w: &mut Watcher, changes: &[Change]) -> bool {
        let mut i = 0;
        while i < changes.len() {
            let rev = changes[i].revision;
            let end = i + changes[i..].partition_point(|c| c.revision == rev);
            if rev >= w.next_revision {
                let events: Vec<_> = changes[i..end]
                    .iter()
                    .filter(|c| w.spec.selects(c))
                    .map(|c| convert::event(c, w.spec.prev_kv))
                    .collect();
                w.next_revision = rev + 1;
                if !events.is_empty() {
                    let resp = WatchResponse {
                        header: Some(self.header(rev)),
                        watch_id: w.watch_id,
                        events,
                        ..Default::default()
                    };
                    if w.sink.send(resp).is_err() {
                        return false;
                    }
                }
            }
            i = end;
        }
        true
    }

    /// Registers a watcher that has been sent everything before `next_revision`;
    /// `history` (changes from its start revision on) is delivered first.
    pub fn add(
        &mut self,
        spec: WatchSpec,
        watch_id: i64,
        sink: WatchSink,
        next_revision: i64,
        history: &[Change],
    ) -> u64 {
        let mut w = Watcher {
            spec,
            watch_id,
            sink,
            next_revision,
        };
        let id = self.next_id;
        self.next_id += 1;
        if self.deliver(&mut w, history) {
            self.watchers.insert(id, w);
        }
        id
    }

    /// Watchers registered now.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    pub fn remove(&mut self, id: u64) {
        self.watchers.remove(&id);
    }

    /// Publishes one applied write's changes; drops watchers whose stream is gone.
    pub fn publish(&mut self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut watchers = std::mem::take(&mut self.watchers);
        watchers.retain(|_, w| self.deliver(w, changes));
        self.watchers = watchers;
    }

    /// After the store was replaced by a snapshot: every watcher catches up from
    /// its next revision, or is cancelled if that history was compacted away.
    pub fn catch_up(&mut self, store: &MvccStore) {
        let mut watchers = std::mem::take(&mut self.watchers);
        watchers.retain(|_, w| {
            match store.changes_since(&w.spec.key, &w.spec.range_end, w.next_revision) {
                Ok(changes) => self.deliver(w, &changes),
                Err(_) => {
                    let _ = w.sink.send(WatchResponse {
                        header: Some(self.header(store.revision())),
                        watch_id: w.watch_id,
                        canceled: true,
                        compact_revision: store.compact_revision(),
                        cancel_reason: "etcdserver: mvcc: required revision has been compacted"
                            .into(),
                        ..Default::default()
                    });
                    false
                }
            }
        });
        self.watchers = watchers;
    }
}
