//! The coo: replicated metadata ([`state`]), its in-process handle ([`handle`]) and
//! its gRPC service ([`service`]).

pub mod handle;
pub mod service;
pub mod state;

pub use handle::Coo;
pub use service::{CooService, BROKER_TIMEOUT};
