//! The state store of a single-node deployment: the state machine in memory, and
//! subscribers told of each applied change.

use std::sync::{Mutex, MutexGuard};

use crate::flow::error::{FlowError, FlowResult};
use crate::flow::state::{
    AppliedChange, ConsistencyReport, FlowState, MemberState, TaskState, WorkflowState,
};
use crate::flow::subscription::{subscription, Offered, Subscription, SubscriptionSender};
use crate::flow::sync::StateSynchronizer;
use crate::flow::types::{NodeId, StateChange, TaskId, WorkflowId};

struct Store {
    state: FlowState,
    listeners: Vec<SubscriptionSender<AppliedChange>>,
}

pub struct LocalStateSynchronizer {
    node: NodeId,
    queue_capacity: usize,
    store: Mutex<Store>,
}

impl LocalStateSynchronizer {
    /// `queue_capacity`: changes a subscriber may leave unread before it lags.
    pub fn new(node: NodeId, queue_capacity: usize) -> Self {
        LocalStateSynchronizer {
            node,
            queue_capacity,
            store: Mutex::new(Store {
                state: FlowState::default(),
                listeners: Vec::new(),
            }),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl StateSynchronizer for LocalStateSynchronizer {
    async fn sync_workflow(&self, workflow_id: WorkflowId) -> FlowResult<WorkflowState> {
        let store = self.store();
        let workflow = store.state.workflow(&workflow_id).cloned();
        workflow.ok_or_else(|| FlowError::not_found("workflow", &workflow_id))
    }

    async fn sync_task(&self, task_id: TaskId) -> FlowResult<TaskState> {
        let store = self.store();
        let task = store.state.task(&task_id).cloned();
        task.ok_or_else(|| FlowError::not_found("task", &task_id))
    }

    async fn broadcast_change(&self, change: StateChange) -> FlowResult<()> {
        // Applying and offering under one lock keeps subscribers in revision order.
        let mut store = self.store();
        let applied = store.state.apply(&change)?;
        store.listeners.retain(|l| match l.offer(applied.clone()) {
            Offered::Queued => true,
            Offered::Dropped => {
                tracing::debug!(
                    revision = applied.revision,
                    "a slow subscriber missed a change"
                );
                true
            }
            Offered::Closed => false,
        });
        Ok(())
    }

    async fn subscribe_changes(&self) -> FlowResult<Subscription<AppliedChange>> {
        let (sender, subscription) = subscription(self.queue_capacity);
        self.store().listeners.push(sender);
        Ok(subscription)
    }

    /// One member: compared with itself it agrees, but the report carries the real
    /// revision and hash, so it can be compared with another deployment's.
    async fn check_consistency(&self) -> FlowResult<ConsistencyReport> {
        let store = self.store();
        Ok(ConsistencyReport::compare(vec![MemberState {
            node_id: self.node.clone(),
            revision: store.state.revision(),
            state_hash: store.state.state_hash(),
        }]))
    }

    /// Every acknowledged change is applied before `broadcast_change` returns.
    async fn force_sync(&self) -> FlowResult<()> {
        Ok(())
    }
}
