//! State synchronisation: the workflow and task states every member agrees on.

use super::error::FlowResult;
use super::state::{AppliedChange, ConsistencyReport, TaskState, WorkflowState};
use super::subscription::Subscription;
use super::types::{StateChange, TaskId, WorkflowId};

/// The shared workflow/task state, kept by applying [`StateChange`]s in one order
/// (see [`FlowState::apply`](super::state::FlowState::apply) for which changes are
/// refused).
///
/// Contract: once `broadcast_change` returns `Ok`, the change is applied — a
/// following `sync_workflow`/`sync_task` on any member that has `force_sync`ed sees
/// it — and every subscription taken before the call receives it, with its
/// revision, in revision order. A refused change returns the error and reaches no
/// one. `check_consistency` says consistent only when every member it read is at
/// one revision with one state hash.
#[tonic::async_trait]
pub trait StateSynchronizer: Send + Sync {
    async fn sync_workflow(&self, workflow_id: WorkflowId) -> FlowResult<WorkflowState>;

    async fn sync_task(&self, task_id: TaskId) -> FlowResult<TaskState>;

    /// Applies `change` everywhere and tells subscribers.
    async fn broadcast_change(&self, change: StateChange) -> FlowResult<()>;

    /// Changes applied from now on.
    async fn subscribe_changes(&self) -> FlowResult<Subscription<AppliedChange>>;

    async fn check_consistency(&self) -> FlowResult<ConsistencyReport>;

    /// Returns once this member has applied every change acknowledged before the
    /// call.
    async fn force_sync(&self) -> FlowResult<()>;
}
