//! The coordination service (seed 001), speaking etcd's v3 semantics.
//!
//! So far: [`mvcc`], the multi-version keyspace with etcd's revision rules, pure and
//! unit-tested. The etcd v3 gRPC services, leases, watches, locks and auth build on
//! it (issue 6, in progress).

pub mod mvcc;
