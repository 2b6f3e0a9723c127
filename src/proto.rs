//! Generated gRPC and message types from `proto/coordlab.proto`.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("coordlab");
