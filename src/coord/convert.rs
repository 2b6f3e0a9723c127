//! Between etcd's wire messages and the MVCC store's types.

use super::errors::CoordError;
use super::mvcc::{self, Change, KeyValue, RangeQuery, SortTarget, TxnOp, TxnOpResult};
use crate::proto::etcdserverpb::{
    compare, range_request, request_op, response_op, Compare, DeleteRangeResponse, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
};
use crate::proto::mvccpb;

pub fn kv_to_proto(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn kv_from_proto(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn range_query(r: &RangeRequest) -> RangeQuery {
    use range_request::{SortOrder, SortTarget as Target};
    let target = match Target::try_from(r.sort_target).unwrap_or(Target::Key) {
        Target::Key => SortTarget::Key,
        Target::Version => SortTarget::Version,
        Target::Create => SortTarget::Create,
        Target::Mod => SortTarget::Mod,
        Target::Value => SortTarget::Value,
    };
    // etcd: no order with a non-key target means ascending; ascending by key is the
    // natural order already.
    let sort = match SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None) {
        SortOrder::None if target == SortTarget::Key => None,
        SortOrder::None | SortOrder::Ascend => Some((target, false)),
        SortOrder::Descend => Some((target, true)),
    };
    RangeQuery {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        revision: r.revision,
        limit: r.limit,
        keys_only: r.keys_only,
        count_only: r.count_only,
        sort,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn range_response(r: mvcc::RangeResult, header: ResponseHeader) -> RangeResponse {
    RangeResponse {
        header: Some(header),
        kvs: r.kvs.into_iter().map(kv_to_proto).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn compares(cs: &[Compare]) -> Vec<mvcc::Compare> {
    use compare::{CompareResult as R, TargetUnion as U};
    cs.iter()
        .map(|c| mvcc::Compare {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            result: match R::try_from(c.result).unwrap_or(R::Equal) {
                R::Equal => mvcc::CompareResult::Equal,
                R::Greater => mvcc::CompareResult::Greater,
                R::Less => mvcc::CompareResult::Less,
                R::NotEqual => mvcc::CompareResult::NotEqual,
            },
            // The union says which field; a missing union compares against zero of
            // the declared target, as etcd's Go zero values do.
            target: match (&c.target_union, compare::CompareTarget::try_from(c.target)) {
                (Some(U::Version(v)), _) => mvcc::CompareTarget::Version(*v),
                (Some(U::CreateRevision(v)), _) => mvcc::CompareTarget::Create(*v),
                (Some(U::ModRevision(v)), _) => mvcc::CompareTarget::Mod(*v),
                (Some(U::Value(v)), _) => mvcc::CompareTarget::Value(v.clone()),
                (Some(U::Lease(v)), _) => mvcc::CompareTarget::Lease(*v),
                (None, Ok(compare::CompareTarget::Create)) => mvcc::CompareTarget::Create(0),
                (None, Ok(compare::CompareTarget::Mod)) => mvcc::CompareTarget::Mod(0),
                (None, Ok(compare::CompareTarget::Value)) => mvcc::CompareTarget::Value(vec![]),
                (None, Ok(compare::CompareTarget::Lease)) => mvcc::CompareTarget::Lease(0),
                (None, _) => mvcc::CompareTarget::Version(0),
            },
        })
        .collect()
}

/// A txn branch as store operations; nested transactions are refused.
pub fn txn_ops(ops: &[RequestOp]) -> Result<Vec<TxnOp>, CoordError> {
    ops.iter()
        .map(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => Ok(TxnOp::Range(range_query(r))),
            Some(request_op::Request::RequestPut(p)) => Ok(TxnOp::Put {
                key: p.key.clone(),
                value: p.value.clone(),
                lease: p.lease,
                prev_kv: p.prev_kv,
                ignore_value: p.ignore_value,
                ignore_lease: p.ignore_lease,
            }),
            Some(request_op::Request::RequestDeleteRange(d)) => Ok(TxnOp::DeleteRange {
                key: d.key.clone(),
                range_end: d.range_end.clone(),
                prev_kv: d.prev_kv,
            }),
            Some(request_op::Request::RequestTxn(_)) => Err(CoordError::Other {
                code: tonic::Code::Unimplemented as i32,
                message: "etcdserver: nested transactions are not supported".into(),
            }),
            None => Err(CoordError::Other {
                code: tonic::Code::InvalidArgument as i32,
                message: "etcdserver: empty request in txn".into(),
            }),
        })
        .collect()
}

pub fn txn_responses(results: Vec<TxnOpResult>, header: &ResponseHeader) -> Vec<ResponseOp> {
    results
        .into_iter()
        .map(|r| ResponseOp {
            response: Some(match r {
                TxnOpResult::Range(r) => {
                    response_op::Response::ResponseRange(range_response(r, *header))
                }
                TxnOpResult::Put { prev_kv } => response_op::Response::ResponsePut(PutResponse {
                    header: Some(*header),
                    prev_kv: prev_kv.map(kv_to_proto),
                }),
                TxnOpResult::DeleteRange { deleted, prev_kvs } => {
                    response_op::Response::ResponseDeleteRange(DeleteRangeResponse {
                        header: Some(*header),
                        deleted,
                        prev_kvs: prev_kvs.into_iter().map(kv_to_proto).collect(),
                    })
                }
            }),
        })
        .collect()
}

/// A store change as a watch event (`prev_kv` only when the watcher asked).
pub fn event(c: &Change, with_prev: bool) -> mvccpb::Event {
    mvccpb::Event {
        r#type: if c.deleted {
            mvccpb::event::EventType::Delete as i32
        } else {
            mvccpb::event::EventType::Put as i32
        },
        kv: Some(kv_to_proto(c.kv.clone())),
        prev_kv: if with_prev {
            c.prev.clone().map(kv_to_proto)
        } else {
            None
        },
    }
}
