//! The conformance suite: the promises the traits' contracts make, as functions of
//! a [`ServiceContainer`], so the local container and the Raft one are held to the
//! same behaviour — a difference is a failing check, not a comment.
//!
//! Each function returns the first broken promise as a [`ConformanceError`]. They
//! name everything they create under `options.namespace`, so they can share one
//! container, but statistics checks compare counts before and after: run them one
//! at a time when other clients use the same event bus.

/// Returns a `Violation` of `check` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $check:literal, $($detail:tt)+) => {
        if !$cond {
            return Err(ConformanceError::Violation {
                check: $check,
                detail: format!($($detail)+),
            });
        }
    };
}

mod events;
mod locks;
mod services;

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use super::container::ServiceContainer;
use super::error::{FlowError, FlowResult};
use super::subscription::Subscription;
use super::types::{StateChange, WorkflowDef};

pub use events::*;
pub use locks::*;
pub use services::*;

#[derive(Debug, Clone)]
pub struct ConformanceOptions {
    /// Prefix of every name the suite creates.
    pub namespace: String,
    /// TTL of the locks whose expiry is tested (the hold is renewed at half of it).
    pub lock_ttl: Duration,
    /// How long something promised may take to be seen.
    pub wait: Duration,
    /// How long to watch for something that must not happen.
    pub settle: Duration,
}

impl ConformanceOptions {
    /// Timings for the in-process container.
    pub fn local() -> Self {
        ConformanceOptions {
            namespace: "conformance".into(),
            // Margins of half a second around the renewal and the expiry: loaded CI
            // machines delay timers by a hundred milliseconds or more.
            lock_ttl: Duration::from_secs(2),
            wait: Duration::from_secs(5),
            settle: Duration::from_millis(100),
        }
    }

    /// Timings for a container on a Raft cluster: lock TTLs in whole seconds above
    /// coordd's (and etcd's) 2 s minimum lease TTL, waits that ride out an election.
    pub fn cluster(namespace: &str) -> Self {
        ConformanceOptions {
            namespace: namespace.into(),
            lock_ttl: Duration::from_secs(3),
            wait: Duration::from_secs(10),
            settle: Duration::from_millis(300),
        }
    }

    fn name(&self, what: &str) -> String {
        format!("{}.{what}", self.namespace)
    }
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConformanceError {
    /// A promise the contract makes was broken.
    #[error("{check}: {detail}")]
    Violation { check: &'static str, detail: String },
    /// A call that must succeed failed.
    #[error("{call} failed: {error}")]
    Call {
        call: &'static str,
        error: FlowError,
    },
}

pub type Conformance = Result<(), ConformanceError>;

pub(crate) trait During<T> {
    fn during(self, call: &'static str) -> Result<T, ConformanceError>;
}

impl<T> During<T> for FlowResult<T> {
    fn during(self, call: &'static str) -> Result<T, ConformanceError> {
        self.map_err(|error| ConformanceError::Call { call, error })
    }
}

/// The next item of `sub` within `wait`.
pub(crate) async fn next<T>(
    sub: &mut Subscription<T>,
    wait: Duration,
    check: &'static str,
) -> Result<T, ConformanceError> {
    match tokio::time::timeout(wait, sub.recv()).await {
        Ok(Ok(item)) => Ok(item),
        Ok(Err(e)) => Err(ConformanceError::Violation {
            check,
            detail: format!("the subscription failed: {e}"),
        }),
        Err(_) => Err(ConformanceError::Violation {
            check,
            detail: format!("nothing arrived within {wait:?}"),
        }),
    }
}

/// Polls `probe` every 10 ms until it says true or `wait` passes.
pub(crate) async fn eventually<F, Fut>(
    wait: Duration,
    mut probe: F,
) -> Result<bool, ConformanceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, ConformanceError>>,
{
    let polls = (wait.as_millis() / 10).max(1);
    for _ in 0..polls {
        if probe().await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    probe().await
}

pub(crate) fn created(workflow: &str) -> StateChange {
    StateChange::WorkflowCreated {
        workflow_id: workflow.into(),
        definition: WorkflowDef {
            name: workflow.into(),
            tasks: vec!["extract".into(), "load".into()],
        },
    }
}

/// Every check, in order.
pub async fn run_all(c: &ServiceContainer, o: &ConformanceOptions) -> Conformance {
    consensus_commits_proposals(c, o).await?;
    nodes_register_discover_and_go_offline(c, o).await?;
    nodes_broadcast_reaches_subscribers(c, o).await?;
    state_sync_applies_changes_in_order_and_notifies(c, o).await?;
    lock_try_acquire_is_none_while_held_and_drop_releases(c, o).await?;
    lock_acquire_waits_for_release(c, o).await?;
    lock_is_mutually_exclusive_with_increasing_tokens(c, o).await?;
    lock_expires_after_ttl_unless_renewed(c, o).await?;
    events_cluster_delivery_is_once_in_one_order(c, o).await?;
    events_local_and_cluster_stay_apart(c, o).await?;
    events_drops_are_counted_and_reported(c, o).await?;
    events_routing_rules_apply(c, o).await?;
    seed_integration(c, o).await
}
