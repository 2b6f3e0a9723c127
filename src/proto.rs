//! Generated gRPC and message types: coordlab's own (`proto/coordlab.proto`,
//! `proto/coord.proto`) and etcd's v3 API (`proto/etcd/`), as sibling modules so
//! that cross-package references resolve.
#![allow(clippy::all, missing_docs)]

mod generated {
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
pub use generated::{authpb, etcdserverpb, mvccpb, v3lockpb};
