//! Generated gRPC and message types: coordlab's own (`proto/coordlab.proto`,
//! `proto/coord.proto`), Link Bridge's (`proto/bridge.proto`) and etcd's v3 API (`proto/etcd/`), as sibling modules so
//! that cross-package references resolve.
#![allow(clippy::all, missing_docs)]

mod generated {
    pub mod linkbridge {
        tonic::include_proto!("linkbridge");
    }
    pub mod coordlab {
        tonic::include_proto!("coordlab");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
}

pub use generated::coordlab::*;
pub use generated::{authpb, etcdserverpb, linkbridge, mvccpb, v3lockpb};

/// gRPC metadata keys of the client API, read by coordd and sent by its clients.
pub mod metadata {
    /// The auth token, as etcd clients send it.
    pub const TOKEN_KEY: &str = "token";
    /// coordlab's own: a write's number, `CLIENT-SEQ` (both above 0), the same on
    /// every attempt of one write, so that coordd applies a retried write once
    /// (`coord::applied_writes`). etcd ignores it.
    pub const WRITE_ID_KEY: &str = "coordlab-write-id";

    /// A write id as [`WRITE_ID_KEY`]'s value.
    pub fn write_id_text(id: &super::WriteId) -> String {
        format!("{}-{}", id.client, id.seq)
    }

    /// [`WRITE_ID_KEY`]'s value as a write id, if it is `CLIENT-SEQ` with both above 0.
    pub fn parse_write_id(text: &str) -> Option<super::WriteId> {
        let (client, seq) = text.split_once('-')?;
        let id = super::WriteId {
            client: client.parse().ok()?,
            seq: seq.parse().ok()?,
        };
        (id.client > 0 && id.seq > 0).then_some(id)
    }
}
