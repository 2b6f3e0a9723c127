//! Config center (seed 001's `ConfigCenter`): typed values stored as JSON under
//! plain keys, with typed watches. A value that does not decode into the requested
//! type is an error naming the key, never a default.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::connection::Connection;
use super::error::CoordinatorError;
use super::registry::EventType;
use super::watch::ResumableWatch;
use crate::coord::service::lock::prefix_end;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

#[derive(Clone)]
pub struct ConfigCenter {
    conn: Arc<Connection>,
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
        ConfigCenter { conn }
    }

    async fn range(
        &self,
        req: RangeRequest,
    ) -> Result<crate::proto::etcdserverpb::RangeResponse, CoordinatorError> {
        Ok(self
            .conn
            .call(|ch, c| {
                let req = c.request(req.clone());
                async move { KvClient::new(ch).range(req).await }
            })
            .await?
            .into_inner())
    }

    /// The value at `key`, decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, CoordinatorError> {
        let r = self
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

    /// Stores `value` at `key` as JSON. Written as "put unless already equal", so a
    /// retry after a lost answer does not write (and notify watchers) twice.
    pub async fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), CoordinatorError> {
        let bytes = serde_json::to_vec(value).map_err(|e| CoordinatorError::Encode {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        // Equal already: nothing to do. Different or absent (a value compare on an
        // absent key fails): put.
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Value as i32,
                key: key.as_bytes().to_vec(),
                target_union: Some(compare::TargetUnion::Value(bytes.clone())),
                range_end: Vec::new(),
            }],
            success: vec![],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: bytes,
                    ..Default::default()
                })),
            }],
        };
        self.conn
            .call(|ch, c| {
                let req = c.request(txn.clone());
                async move { KvClient::new(ch).txn(req).await }
            })
            .await?;
        Ok(())
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, CoordinatorError> {
        let r = self
            .conn
            .call(|ch, c| {
                let req = c.request(DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                });
                async move { KvClient::new(ch).delete_range(req).await }
            })
            .await?
            .into_inner();
        Ok(r.deleted > 0)
    }

    /// The keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, CoordinatorError> {
        let r = self
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
