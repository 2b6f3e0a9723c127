//! The replicated workflow/task store: state changes form one log in the cluster
//! (`/flow/changes/<n>`, each written only if absent, by a writer that checked the
//! change against the state after entry n-1), and every process keeps a replica
//! by applying that log in order. The same log on every member gives the same
//! state and hash; `check_consistency` folds each Raft member's own copy of the
//! log at one revision and compares them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::keys;
use super::kv::{decode, decode_bytes, encode, Created, Kv};
use crate::client::Connection;
use crate::coord::service::lock::prefix_end;
use crate::flow::error::{FlowError, FlowResult};
use crate::flow::state::{
    AppliedChange, ConsistencyReport, FlowState, MemberState, TaskState, WorkflowState,
};
use crate::flow::subscription::{subscription, Offered, Subscription, SubscriptionSender};
use crate::flow::sync::StateSynchronizer;
use crate::flow::types::{NodeId, StateChange, TaskId, WorkflowId};
use crate::library::{KeyEvent, ResumableWatch};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::RangeRequest;
use crate::proto::mvccpb::KeyValue;
use crate::sync::watch;

/// How often `broadcast_change` tries to append behind other writers.
const MAX_APPEND_ATTEMPTS: u32 = 64;

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub origin: NodeId,
    /// Tells this writer's entry from an identical one by someone else.
    pub nonce: u64,
    pub change: StateChange,
}

struct Replica {
    state: FlowState,
    /// The last log entry applied.
    index: u64,
    listeners: Vec<SubscriptionSender<AppliedChange>>,
}

impl Replica {
    /// Applies entry `n`: entries arrive in log order (each is written only after
    /// the one before it exists), so anything else is a repeat and is skipped.
    fn apply(&mut self, n: u64, record: &ChangeRecord) {
        if n != self.index + 1 {
            if n > self.index {
                tracing::error!(n, applied = self.index, "flow: a gap in the change log");
            }
            return;
        }
        self.index = n;
        match self.state.apply(&record.change) {
            Ok(applied) => self
                .listeners
                .retain(|l| l.offer(applied.clone()) != Offered::Closed),
            // Every replica refuses it alike, so they stay equal.
            Err(e) => tracing::error!(n, error = %e, "flow: a logged change does not follow"),
        }
    }
}

pub struct ReplicatedStateSynchronizer {
    kv: Kv,
    node: NodeId,
    queue_capacity: usize,
    timeout: Duration,
    replica: Arc<Mutex<Replica>>,
    applied: watch::Receiver<u64>,
    follower: JoinHandle<()>,
}

fn lock(replica: &Mutex<Replica>) -> MutexGuard<'_, Replica> {
    replica.lock().unwrap_or_else(|e| e.into_inner())
}

fn record_of(key: &[u8], value: &[u8]) -> FlowResult<(u64, ChangeRecord)> {
    let n = keys::number_at_end(key).ok_or_else(|| FlowError::Corrupt {
        what: "change log key",
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "does not end in a number".into(),
    })?;
    Ok((n, decode_bytes("change", key, value)?))
}

impl ReplicatedStateSynchronizer {
    /// Loads the log so far and follows it from there.
    pub async fn connect(
        kv: Kv,
        node: NodeId,
        timeout: Duration,
        queue_capacity: usize,
    ) -> FlowResult<Self> {
        let (entries, revision) = kv.list("sync", keys::CHANGES).await?;
        let replica = replay(&entries)?;
        let (applied_tx, applied) = watch::channel(replica.index);
        let replica = Arc::new(Mutex::new(replica));
        let watch = kv.watch_prefix(keys::CHANGES, revision + 1);
        let follower = tokio::spawn(follow(watch, replica.clone(), applied_tx));
        Ok(ReplicatedStateSynchronizer {
            kv,
            node,
            queue_capacity,
            timeout,
            replica,
            applied,
            follower,
        })
    }

    /// The number of the log's last entry (a linearizable read).
    async fn head(&self, call: &'static str) -> FlowResult<u64> {
        let (last, _) = self
            .kv
            .list_with(call, keys::CHANGES, SortTarget::Key, SortOrder::Descend, 1)
            .await?;
        Ok(last
            .first()
            .and_then(|kv| keys::number_at_end(&kv.key))
            .unwrap_or(0))
    }

    /// Waits until the replica has applied entry `n`.
    async fn applied_through(&self, call: &'static str, n: u64) -> FlowResult<()> {
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout(self.timeout, async {
            applied.wait_for(|i| *i >= n).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            _ => Err(FlowError::Unavailable {
                call,
                reason: format!(
                    "the replica applied {} of {n} log entries within {:?}",
                    *self.applied.borrow(),
                    self.timeout
                ),
            }),
        }
    }
}

impl Drop for ReplicatedStateSynchronizer {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

async fn follow(
    mut watch: ResumableWatch,
    replica: Arc<Mutex<Replica>>,
    applied: watch::Sender<u64>,
) {
    while let Some(event) = watch.next().await {
        let event: KeyEvent = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, "flow: following the change log failed; the replica stops here");
                return;
            }
        };
        if event.deleted {
            continue;
        }
        match record_of(&event.key, &event.value) {
            Ok((n, record)) => {
                let index = {
                    let mut replica = lock(&replica);
                    replica.apply(n, &record);
                    replica.index
                };
                applied.send_replace(index);
            }
            Err(e) => tracing::error!(error = %e, "flow: a change log entry does not decode"),
        }
    }
}

/// Member `endpoint`'s own copy of the keys under `prefix` at `revision`: a
/// serializable read answered by that member alone (the simulation's audit
/// reads the members' copies with it too).
pub async fn member_copy(
    conn: &Connection,
    endpoint: &str,
    prefix: &str,
    revision: i64,
    patience: Duration,
) -> FlowResult<Vec<KeyValue>> {
    let prefix = prefix.as_bytes().to_vec();
    let request = RangeRequest {
        range_end: prefix_end(&prefix),
        key: prefix,
        revision,
        serializable: true,
        ..Default::default()
    };
    let mut last = None;
    // A member that has not applied `revision` yet says "future revision": ask
    // again until it has, or patience runs out.
    let read = tokio::time::timeout(patience, async {
        loop {
            let request = request.clone();
            let answer = conn
                .call_once_at(endpoint, |ch| async move {
                    KvClient::new(ch).range(request).await
                })
                .await;
            match answer {
                Ok(r) => return r,
                Err(e) => {
                    tracing::debug!(endpoint, error = %e, "flow: a member's copy is not readable yet");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
    .map_err(|_| FlowError::Unavailable {
        call: "check_consistency",
        reason: last.map_or_else(|| "no answer".to_string(), |e| e.to_string()),
    })?;
    Ok(read.kvs)
}

/// Member `endpoint`'s own copy of the log at `revision`, folded into a state.
async fn member_state(
    conn: &Connection,
    endpoint: &str,
    revision: i64,
    patience: Duration,
) -> MemberState {
    let read = member_copy(conn, endpoint, keys::CHANGES, revision, patience).await;
    let folded = read.and_then(|kvs| fold(&kvs));
    match folded {
        Ok(state) => MemberState {
            node_id: NodeId::new(endpoint),
            revision: state.revision(),
            state_hash: state.state_hash(),
        },
        Err(e) => MemberState {
            node_id: NodeId::new(endpoint),
            revision: 0,
            state_hash: format!("unreadable: {e}"),
        },
    }
}

/// The state a copy of the change log (`/flow/changes/` entries, in key order)
/// folds into, as every replica applies it; `check_consistency` hashes it, and
/// so does the simulation's audit of the members' copies.
pub fn fold(entries: &[KeyValue]) -> FlowResult<FlowState> {
    Ok(replay(entries)?.state)
}

/// A replica that applied `entries` (log keys with their records), in order.
fn replay(entries: &[KeyValue]) -> FlowResult<Replica> {
    let mut replica = Replica {
        state: FlowState::default(),
        index: 0,
        listeners: Vec::new(),
    };
    for entry in entries {
        let (n, record) = record_of(&entry.key, &entry.value)?;
        replica.apply(n, &record);
    }
    Ok(replica)
}

#[tonic::async_trait]
impl StateSynchronizer for ReplicatedStateSynchronizer {
    /// This process's replica (call `force_sync` first to see every change
    /// acknowledged anywhere).
    async fn sync_workflow(&self, workflow_id: WorkflowId) -> FlowResult<WorkflowState> {
        let workflow = lock(&self.replica).state.workflow(&workflow_id).cloned();
        workflow.ok_or_else(|| FlowError::not_found("workflow", &workflow_id))
    }

    async fn sync_task(&self, task_id: TaskId) -> FlowResult<TaskState> {
        let task = lock(&self.replica).state.task(&task_id).cloned();
        task.ok_or_else(|| FlowError::not_found("task", &task_id))
    }

    /// Appends the change to the log if it follows from the state at the log's
    /// end; returns once this replica applied it. `Unavailable` leaves unknown
    /// whether it was appended.
    async fn broadcast_change(&self, change: StateChange) -> FlowResult<()> {
        let record = ChangeRecord {
            origin: self.node.clone(),
            nonce: madsim::rand::random(),
            change,
        };
        // Entries other writers take are retried against the state after them,
        // up to as many times as there were writers' entries in the meantime.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let head = self.head("broadcast_change").await?;
            self.applied_through("broadcast_change", head).await?;
            let n = {
                let replica = lock(&self.replica);
                replica.state.check(&record.change)?;
                replica.index + 1
            };
            let key = keys::change(n);
            match self
                .kv
                .put_if_absent("broadcast_change", &key, encode(&record))
                .await?
            {
                Created::At(_) => return self.applied_through("broadcast_change", n).await,
                Created::Existing(kv) if decode::<ChangeRecord>("change", &kv)? == record => {
                    return self.applied_through("broadcast_change", n).await
                }
                // Another writer took entry n: check again against the state after it.
                Created::Existing(_) if attempts < MAX_APPEND_ATTEMPTS => {}
                Created::Existing(_) => {
                    return Err(FlowError::Unavailable {
                        call: "broadcast_change",
                        reason: format!(
                            "other writers took the log's next entry {attempts} times in a row"
                        ),
                    })
                }
            }
        }
    }

    /// Changes applied after this replica caught up with the log's end.
    async fn subscribe_changes(&self) -> FlowResult<Subscription<AppliedChange>> {
        let head = self.head("subscribe_changes").await?;
        self.applied_through("subscribe_changes", head).await?;
        let (sender, subscription) = subscription(self.queue_capacity);
        lock(&self.replica).listeners.push(sender);
        Ok(subscription)
    }

    /// Every configured member's state at one revision (the store's revision now),
    /// each read from that member's own copy.
    async fn check_consistency(&self) -> FlowResult<ConsistencyReport> {
        let revision = self.kv.revision("check_consistency").await?;
        let conn = self.kv.connection();
        let mut members = Vec::new();
        for endpoint in conn.endpoints() {
            members.push(member_state(conn, &endpoint, revision, self.timeout).await);
        }
        Ok(ConsistencyReport::compare(members))
    }

    async fn force_sync(&self) -> FlowResult<()> {
        let head = self.head("force_sync").await?;
        self.applied_through("force_sync", head).await
    }
}
