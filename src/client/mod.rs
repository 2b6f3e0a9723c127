//! The client core: one leader-routing [`Connection`] that every client of the crate
//! is built on — the client library (`library`), the coo client
//! (`mq::client::CooClient`), the admin client, `coordctl`, and the simulation's
//! workloads. Endpoints, per-attempt and per-call deadlines on the node's clock,
//! retries with jittered exponential backoff, leader hints followed or members
//! rotated, auth tokens refreshed, numbered writes, and one rule for what is retried
//! ([`is_retryable`]).

mod admin;
mod connection;
mod error;
mod retry;

pub use admin::AdminClient;
pub use connection::{
    attach_write_id, Connection, ConnectionConfig, WriteId, TOKEN_KEY, WRITE_ID_KEY,
};
pub use error::ClientError;
pub use retry::{is_not_leader, is_retryable, millis, RetryConfig};

#[cfg(all(test, not(madsim)))]
pub(crate) mod tests;
