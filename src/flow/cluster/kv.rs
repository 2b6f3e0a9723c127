//! The few etcd v3 calls the Raft services make, over the client library's
//! connection (retries, failover, numbered writes), with errors as `FlowError`s
//! naming the call, and values as JSON.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{ClientError, Connection};
use crate::coord::service::lock::prefix_end;
use crate::flow::error::{FlowError, FlowResult};
use crate::library::ResumableWatch;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use crate::proto::mvccpb::KeyValue;

pub fn unavailable(call: &'static str) -> impl FnOnce(ClientError) -> FlowError {
    move |e| FlowError::Unavailable {
        call,
        reason: e.to_string(),
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("flow records serialize")
}

pub fn decode<T: DeserializeOwned>(what: &'static str, kv: &KeyValue) -> FlowResult<T> {
    decode_bytes(what, &kv.key, &kv.value)
}

pub fn decode_bytes<T: DeserializeOwned>(
    what: &'static str,
    key: &[u8],
    value: &[u8],
) -> FlowResult<T> {
    serde_json::from_slice(value).map_err(|e| FlowError::Corrupt {
        what,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

#[derive(Clone)]
pub struct Kv {
    conn: Arc<Connection>,
}

/// What `put_if_absent` found.
pub enum Created {
    /// Written, at this revision.
    At(i64),
    /// The key was there already.
    Existing(KeyValue),
}

impl Kv {
    pub fn new(conn: Arc<Connection>) -> Self {
        Kv { conn }
    }

    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    pub async fn get(&self, call: &'static str, key: &str) -> FlowResult<Option<KeyValue>> {
        let r = self
            .conn
            .range(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .map_err(unavailable(call))?;
        Ok(r.kvs.into_iter().next())
    }

    /// Every key under `prefix`, by key, and the revision they were read at.
    pub async fn list(&self, call: &'static str, prefix: &str) -> FlowResult<(Vec<KeyValue>, i64)> {
        self.list_with(call, prefix, SortTarget::Key, SortOrder::Ascend, 0)
            .await
    }

    /// Keys under `prefix` sorted by `target` in `order`, at most `limit` (0: all).
    pub async fn list_with(
        &self,
        call: &'static str,
        prefix: &str,
        target: SortTarget,
        order: SortOrder,
        limit: i64,
    ) -> FlowResult<(Vec<KeyValue>, i64)> {
        let prefix = prefix.as_bytes().to_vec();
        let r = self
            .conn
            .range(RangeRequest {
                range_end: prefix_end(&prefix),
                key: prefix,
                sort_target: target as i32,
                sort_order: order as i32,
                limit,
                ..Default::default()
            })
            .await
            .map_err(unavailable(call))?;
        let revision = r.header.map_or(0, |h| h.revision);
        Ok((r.kvs, revision))
    }

    /// The store's revision now (a linearizable read): whatever was acknowledged
    /// before this call is at or below it.
    pub async fn revision(&self, call: &'static str) -> FlowResult<i64> {
        let (_, revision) = self
            .list_with(call, "/flow/", SortTarget::Key, SortOrder::None, 1)
            .await?;
        Ok(revision)
    }

    pub async fn put(
        &self,
        call: &'static str,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> FlowResult<i64> {
        let r = self
            .conn
            .put(PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                lease,
                ..Default::default()
            })
            .await
            .map_err(unavailable(call))?;
        Ok(r.header.map_or(0, |h| h.revision))
    }

    /// Creates `key` unless it exists (one transaction: exactly one of several
    /// writers creates it).
    pub async fn put_if_absent(
        &self,
        call: &'static str,
        key: &str,
        value: Vec<u8>,
    ) -> FlowResult<Created> {
        let key = key.as_bytes().to_vec();
        let get = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })),
        };
        let r = self
            .conn
            .txn(TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: key.clone(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key,
                        value,
                        ..Default::default()
                    })),
                }],
                failure: vec![get],
            })
            .await
            .map_err(unavailable(call))?;
        if r.succeeded {
            return Ok(Created::At(r.header.map_or(0, |h| h.revision)));
        }
        let existing = r.responses.into_iter().find_map(|op| match op.response {
            Some(crate::proto::etcdserverpb::response_op::Response::ResponseRange(range)) => {
                range.kvs.into_iter().next()
            }
            _ => None,
        });
        existing
            .map(Created::Existing)
            .ok_or_else(|| FlowError::Unavailable {
                call,
                reason: "the key existed for the comparison but not for the read".into(),
            })
    }

    pub async fn delete(&self, call: &'static str, key: &str) -> FlowResult<i64> {
        let r = self
            .conn
            .delete_range(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .map_err(unavailable(call))?;
        Ok(r.deleted)
    }

    /// Changes to exactly `key` from `start_revision`, resumed across members.
    pub fn watch_key(&self, key: &str, start_revision: i64) -> ResumableWatch {
        ResumableWatch::start(
            self.conn.clone(),
            key.as_bytes().to_vec(),
            Vec::new(),
            start_revision,
        )
    }

    /// Changes under `prefix` from `start_revision`, resumed across members.
    pub fn watch_prefix(&self, prefix: &str, start_revision: i64) -> ResumableWatch {
        let prefix = prefix.as_bytes().to_vec();
        let end = prefix_end(&prefix);
        ResumableWatch::start(self.conn.clone(), prefix, end, start_revision)
    }
}
