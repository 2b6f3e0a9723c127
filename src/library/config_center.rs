//! Config center (seed 001's `ConfigCenter`): typed values stored as JSON under
//! plain keys, with typed watches. A value that does not decode into the requested
//! type is an error naming the key, never a default.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::CoordinatorError;
use super::lease::KeptLease;
use super::registry::EventType;
use super::watch::{ResumableWatch, Resumes};
use crate::client::{ClientError, Connection};
use crate::coord::service::lock::prefix_end;
use crate::proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

/// Where `set` keeps its once-only markers (one key per call in flight).
pub const MARKER_PREFIX: &str = "/coordlab/requests/";
/// The TTL of the lease markers hang on: a crashed client's markers go with it.
const SESSION_TTL: Duration = Duration::from_secs(60);
/// Read-then-write rounds a `set` makes while other writers keep winning.
const MAX_SET_ROUNDS: u32 = 16;

#[derive(Clone)]
pub struct ConfigCenter {
    conn: Arc<Connection>,
    client_id: u64,
    next_seq: Arc<AtomicU64>,
    session: Arc<OnceCell<KeptLease>>,
}

/// A change to a watched key; `value` is `None` for a deletion.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEvent<T> {
    pub kind: EventType,
    pub key: String,
    pub value: Option<T>,
    pub revision: i64,
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, CoordinatorError> {
    serde_json::from_slice(bytes).map_err(|e| CoordinatorError::Decode {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

impl ConfigCenter {
    pub fn new(conn: Arc<Connection>) -> Self {
        ConfigCenter {
            conn,
            client_id: madsim::rand::random(),
            next_seq: Arc::new(AtomicU64::new(1)),
            session: Arc::new(OnceCell::new()),
        }
    }

    /// The value at `key`, decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, CoordinatorError> {
        let r = self
            .conn
            .range(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?;
        let kv = r.kvs.first().ok_or_else(|| CoordinatorError::NotFound {
            key: key.to_string(),
        })?;
        decode(key, &kv.value)
    }

    /// The lease this config center's request markers live on (granted once).
    async fn session_lease(&self) -> Result<i64, CoordinatorError> {
        self.session
            .get_or_try_init(|| KeptLease::grant(self.conn.clone(), SESSION_TTL))
            .await
            .map(KeptLease::id)
    }

    /// Stores `value` at `key` as JSON, exactly once: the write is a transaction
    /// conditional on the key's mod revision read just before, and it also writes a
    /// marker unique to this call. A retry whose first attempt committed (answer
    /// lost) fails the condition and finds its marker, so it writes nothing more; a
    /// condition that failed because another writer got in first is read again.
    /// Setting the value the key already holds writes nothing.
    pub async fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), CoordinatorError> {
        let bytes = serde_json::to_vec(value).map_err(|e| CoordinatorError::Encode {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{MARKER_PREFIX}{:x}/{seq}", self.client_id).into_bytes();
        let lease = self.session_lease().await?;
        for _ in 0..MAX_SET_ROUNDS {
            let current = self
                .conn
                .range(RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?;
            let (mod_revision, holds) = match current.kvs.first() {
                Some(kv) => (kv.mod_revision, kv.value == bytes),
                None => (0, false),
            };
            if holds {
                return Ok(());
            }
            let put = |key: Vec<u8>, value: Vec<u8>, lease: i64| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key,
                    value,
                    lease,
                    ..Default::default()
                })),
            };
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(compare::TargetUnion::ModRevision(mod_revision)),
                    range_end: Vec::new(),
                }],
                success: vec![
                    put(key.as_bytes().to_vec(), bytes.clone(), 0),
                    put(marker.clone(), Vec::new(), lease),
                ],
                failure: vec![RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: marker.clone(),
                        count_only: true,
                        ..Default::default()
                    })),
                }],
            };
            let r = self.conn.txn(txn).await?;
            let already_ours = r.responses.iter().any(|op| {
                matches!(&op.response, Some(response_op::Response::ResponseRange(rr)) if rr.count > 0)
            });
            if r.succeeded || already_ours {
                self.forget_marker(marker).await;
                return Ok(());
            }
            // Another writer changed the key between our read and our write.
        }
        Err(CoordinatorError::Client(ClientError::Unavailable {
            attempts: MAX_SET_ROUNDS,
            last: format!("key {key:?} kept changing under concurrent writers"),
        }))
    }

    /// Deletes a set's marker once the set is known done (best effort: a leftover
    /// marker goes with the session lease).
    async fn forget_marker(&self, marker: Vec<u8>) {
        let _ = self
            .conn
            .delete_range(DeleteRangeRequest {
                key: marker.clone(),
                ..Default::default()
            })
            .await;
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, CoordinatorError> {
        let r = self
            .conn
            .delete_range(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?;
        Ok(r.deleted > 0)
    }

    /// The keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, CoordinatorError> {
        let r = self
            .conn
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                keys_only: true,
                ..Default::default()
            })
            .await?;
        Ok(r.kvs
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect())
    }

    /// Changes to `key` from now on.
    pub async fn watch<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<ConfigWatcher<T>, CoordinatorError> {
        self.watch_range(key.as_bytes().to_vec(), Vec::new()).await
    }

    /// Changes to every key under `prefix` from now on.
    pub async fn watch_prefix<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<ConfigWatcher<T>, CoordinatorError> {
        self.watch_range(prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
            .await
    }

    async fn watch_range<T: DeserializeOwned>(
        &self,
        key: Vec<u8>,
        range_end: Vec<u8>,
    ) -> Result<ConfigWatcher<T>, CoordinatorError> {
        // Start right after a read, so "from now on" has a precise meaning.
        let r = self
            .conn
            .range(RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                count_only: true,
                ..Default::default()
            })
            .await?;
        let from = r.header.map_or(0, |h| h.revision + 1);
        Ok(ConfigWatcher {
            inner: ResumableWatch::start(self.conn.clone(), key, range_end, from),
            _type: PhantomData,
        })
    }
}

pub struct ConfigWatcher<T> {
    inner: ResumableWatch,
    _type: PhantomData<fn() -> T>,
}

impl<T> ConfigWatcher<T> {
    /// Follows how often the watch reopened its stream (see [`ResumableWatch`]).
    pub fn resumes(&self) -> crate::sync::watch::Receiver<Resumes> {
        self.inner.resumes()
    }
}

impl<T: DeserializeOwned> ConfigWatcher<T> {
    /// The next change; a value that does not decode is an error naming its key.
    pub async fn next(&mut self) -> Option<Result<ConfigEvent<T>, CoordinatorError>> {
        let ev = match self.inner.next().await? {
            Ok(ev) => ev,
            Err(e) => return Some(Err(e)),
        };
        let key = String::from_utf8_lossy(&ev.key).into_owned();
        if ev.deleted {
            return Some(Ok(ConfigEvent {
                kind: EventType::Delete,
                key,
                value: None,
                revision: ev.revision,
            }));
        }
        Some(decode(&key, &ev.value).map(|v| ConfigEvent {
            kind: EventType::Put,
            key,
            value: Some(v),
            revision: ev.revision,
        }))
    }
}
