//! A broker's live view of the registry: one range read of `/bridge/`, then a
//! resumable watch from the revision after it. Subscribers see a new
//! [`ClusterState`] only once every change of a revision is in it; when the watch's
//! history was compacted away the registry is read afresh.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::warn;

use crate::client::Connection;
use crate::coord::service::lock::prefix_end;
use crate::library::{CoordinatorError, ResumableWatch};
use crate::proto::etcdserverpb::RangeRequest;
use crate::sync::watch;

use super::error::BridgeError;
use super::record::PREFIX;
use super::state::ClusterState;

pub struct RegistryView {
    current: watch::Receiver<Arc<ClusterState>>,
    task: JoinHandle<()>,
}

impl RegistryView {
    /// Reads the registry (linearizably, through the leader) and follows it.
    pub async fn start(conn: Arc<Connection>) -> Result<RegistryView, BridgeError> {
        let state = read(&conn).await?;
        let (publish, current) = watch::channel(Arc::new(state.clone()));
        let task = tokio::spawn(follow(conn, state, publish));
        Ok(RegistryView { current, task })
    }

    /// The registry as of the latest complete revision seen.
    pub fn current(&self) -> Arc<ClusterState> {
        self.current.borrow().clone()
    }

    /// Wakes on every new complete revision.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.current.clone()
    }
}

impl Drop for RegistryView {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The registry now, with unreadable records left out and logged.
pub async fn read(conn: &Connection) -> Result<ClusterState, BridgeError> {
    let response = conn
        .range(RangeRequest {
            key: PREFIX.as_bytes().to_vec(),
            range_end: prefix_end(PREFIX.as_bytes()),
            ..Default::default()
        })
        .await
        .map_err(|e| BridgeError::Cluster(CoordinatorError::from(e).to_string()))?;
    let revision = response.header.map_or(0, |h| h.revision);
    let (state, errors) = ClusterState::from_range(&response.kvs, revision);
    for e in errors {
        warn!(error = %e, "registry record left out");
    }
    Ok(state)
}

async fn follow(
    conn: Arc<Connection>,
    mut state: ClusterState,
    publish: watch::Sender<Arc<ClusterState>>,
) {
    let mut failures = 0;
    while !conn.is_closed() {
        let mut changes = ResumableWatch::start(
            conn.clone(),
            PREFIX.as_bytes().to_vec(),
            prefix_end(PREFIX.as_bytes()),
            state.revision() + 1,
        );
        while let Some(next) = changes.next().await {
            match next {
                Ok(event) => {
                    if let Err(e) = state.apply(&event) {
                        warn!(error = %e, "registry change left out");
                    }
                    if event.completes_revision {
                        publish.send_replace(Arc::new(state.clone()));
                    }
                }
                Err(e) => {
                    warn!(error = %e, "registry watch ended; reading the registry afresh");
                    break;
                }
            }
        }
        // The watch ended (its history compacted, or the connection closed).
        match read(&conn).await {
            Ok(fresh) => {
                failures = 0;
                state = fresh;
                publish.send_replace(Arc::new(state.clone()));
            }
            Err(e) => {
                failures += 1;
                warn!(error = %e, "registry read failed");
                tokio::time::sleep(conn.retry().delay(failures.min(8))).await;
            }
        }
    }
}
