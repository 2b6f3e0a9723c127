//! The workflow engine's shared state as a deterministic state machine: the same
//! changes applied in the same order give the same state and the same hash, on any
//! member. Both the local store and (later) the replicated one apply changes here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{FlowError, FlowResult};
use super::types::{
    ExecutionId, NodeId, NodeInfo, ResourceAllocation, ResourceId, StateChange, TaskError, TaskId,
    TaskResult, WorkflowDef, WorkflowId,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowStatus {
    Created,
    Running { execution_id: ExecutionId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowState {
    pub workflow_id: WorkflowId,
    pub definition: WorkflowDef,
    pub status: WorkflowStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskStatus {
    Running { node_id: NodeId },
    Completed { result: TaskResult },
    Failed { error: TaskError },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub task_id: TaskId,
    pub status: TaskStatus,
    /// Times the task was started (retries after failure count).
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceState {
    pub node_id: NodeId,
    pub allocation: ResourceAllocation,
}

/// A change with its place in the order every member applies changes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedChange {
    /// From 1, one more for each applied change.
    pub revision: u64,
    pub change: StateChange,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowState {
    workflows: BTreeMap<WorkflowId, WorkflowState>,
    tasks: BTreeMap<TaskId, TaskState>,
    resources: BTreeMap<ResourceId, ResourceState>,
    nodes: BTreeMap<NodeId, NodeInfo>,
    /// Changes applied so far.
    revision: u64,
}

fn transition(subject: impl ToString, reason: impl Into<String>) -> FlowError {
    FlowError::InvalidTransition {
        subject: subject.to_string(),
        reason: reason.into(),
    }
}

impl FlowState {
    pub fn workflow(&self, id: &WorkflowId) -> Option<&WorkflowState> {
        self.workflows.get(id)
    }

    pub fn task(&self, id: &TaskId) -> Option<&TaskState> {
        self.tasks.get(id)
    }

    pub fn resource(&self, id: &ResourceId) -> Option<&ResourceState> {
        self.resources.get(id)
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// SHA-256 of the canonical JSON of the whole state (maps are ordered), in hex.
    pub fn state_hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("the state serializes");
        Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Applies `change`, or fails and changes nothing: a change must follow from
    /// the state (a workflow is created once, a task completes only while running,
    /// a resource is released by the node it is allocated to).
    pub fn apply(&mut self, change: &StateChange) -> FlowResult<AppliedChange> {
        self.check(change)?;
        self.apply_checked(change);
        self.revision += 1;
        Ok(AppliedChange {
            revision: self.revision,
            change: change.clone(),
        })
    }

    /// Whether `change` follows from the state (`apply` would take it).
    pub fn check(&self, change: &StateChange) -> FlowResult<()> {
        use StateChange::*;
        match change {
            WorkflowCreated { workflow_id, .. } if self.workflows.contains_key(workflow_id) => {
                Err(FlowError::AlreadyExists {
                    kind: "workflow",
                    id: workflow_id.to_string(),
                })
            }
            WorkflowStarted { workflow_id, .. } if !self.workflows.contains_key(workflow_id) => {
                Err(FlowError::not_found("workflow", workflow_id))
            }
            TaskStarted { task_id, .. } => match self.tasks.get(task_id).map(|t| &t.status) {
                Some(TaskStatus::Running { node_id }) => Err(transition(
                    format!("task {task_id}"),
                    format!("already running on {node_id}"),
                )),
                Some(TaskStatus::Completed { .. }) => Err(transition(
                    format!("task {task_id}"),
                    "completed tasks do not restart",
                )),
                _ => Ok(()),
            },
            TaskCompleted { task_id, .. } | TaskFailed { task_id, .. } => {
                match self.tasks.get(task_id).map(|t| &t.status) {
                    None => Err(FlowError::not_found("task", task_id)),
                    Some(TaskStatus::Running { .. }) => Ok(()),
                    Some(_) => Err(transition(format!("task {task_id}"), "not running")),
                }
            }
            ResourceAllocated { resource_id, .. } => match self.resources.get(resource_id) {
                Some(held) => Err(transition(
                    format!("resource {resource_id}"),
                    format!("already allocated to {}", held.node_id),
                )),
                None => Ok(()),
            },
            ResourceReleased {
                resource_id,
                node_id,
            } => match self.resources.get(resource_id) {
                None => Err(FlowError::not_found("resource", resource_id)),
                Some(held) if &held.node_id != node_id => Err(transition(
                    format!("resource {resource_id}"),
                    format!("allocated to {}, not {node_id}", held.node_id),
                )),
                Some(_) => Ok(()),
            },
            NodeJoined { node_id, node_info } if node_id != &node_info.id => {
                Err(FlowError::invalid(
                    "NodeJoined",
                    format!(
                        "node_id {node_id} differs from node_info.id {}",
                        node_info.id
                    ),
                ))
            }
            NodeLeft { node_id, .. } if !self.nodes.contains_key(node_id) => {
                Err(FlowError::not_found("node", node_id))
            }
            _ => Ok(()),
        }
    }

    fn apply_checked(&mut self, change: &StateChange) {
        use StateChange::*;
        match change.clone() {
            WorkflowCreated {
                workflow_id,
                definition,
            } => {
                let state = WorkflowState {
                    workflow_id: workflow_id.clone(),
                    definition,
                    status: WorkflowStatus::Created,
                };
                self.workflows.insert(workflow_id, state);
            }
            WorkflowStarted {
                workflow_id,
                execution_id,
            } => {
                if let Some(w) = self.workflows.get_mut(&workflow_id) {
                    w.status = WorkflowStatus::Running { execution_id };
                }
            }
            TaskStarted { task_id, node_id } => {
                let attempts = self.tasks.get(&task_id).map_or(0, |t| t.attempts) + 1;
                let state = TaskState {
                    task_id: task_id.clone(),
                    status: TaskStatus::Running { node_id },
                    attempts,
                };
                self.tasks.insert(task_id, state);
            }
            TaskCompleted { task_id, result } => {
                self.set_task(&task_id, TaskStatus::Completed { result })
            }
            TaskFailed { task_id, error } => self.set_task(&task_id, TaskStatus::Failed { error }),
            ResourceAllocated {
                resource_id,
                node_id,
                allocation,
            } => {
                let state = ResourceState {
                    node_id,
                    allocation,
                };
                self.resources.insert(resource_id, state);
            }
            ResourceReleased { resource_id, .. } => {
                self.resources.remove(&resource_id);
            }
            NodeJoined { node_id, node_info } => {
                self.nodes.insert(node_id, node_info);
            }
            NodeLeft { node_id, .. } => {
                self.nodes.remove(&node_id);
            }
        }
    }

    fn set_task(&mut self, task_id: &TaskId, status: TaskStatus) {
        if let Some(t) = self.tasks.get_mut(task_id) {
            t.status = status;
        }
    }
}

/// One member's state, as `check_consistency` read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub node_id: NodeId,
    pub revision: u64,
    pub state_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyReport {
    /// True when there is at least one member and all are at one revision with one
    /// state hash.
    pub consistent: bool,
    pub members: Vec<MemberState>,
    /// Members whose (revision, hash) differs from the first member's.
    pub differing: Vec<NodeId>,
}

impl ConsistencyReport {
    /// Compares the members' states.
    pub fn compare(members: Vec<MemberState>) -> Self {
        let differing: Vec<NodeId> = match members.first() {
            None => Vec::new(),
            Some(first) => members
                .iter()
                .filter(|m| (m.revision, &m.state_hash) != (first.revision, &first.state_hash))
                .map(|m| m.node_id.clone())
                .collect(),
        };
        ConsistencyReport {
            consistent: !members.is_empty() && differing.is_empty(),
            members,
            differing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: &str) -> StateChange {
        StateChange::WorkflowCreated {
            workflow_id: id.into(),
            definition: WorkflowDef::default(),
        }
    }

    fn started(task: &str, node: &str) -> StateChange {
        StateChange::TaskStarted {
            task_id: task.into(),
            node_id: node.into(),
        }
    }

    #[test]
    fn changes_that_do_not_follow_from_the_state_are_refused_and_change_nothing() {
        let mut s = FlowState::default();
        assert_eq!(s.apply(&created("w")).unwrap().revision, 1);
        let before = s.clone();
        assert!(matches!(
            s.apply(&created("w")),
            Err(FlowError::AlreadyExists { .. })
        ));
        let start_missing = StateChange::WorkflowStarted {
            workflow_id: "nope".into(),
            execution_id: "e".into(),
        };
        assert!(matches!(
            s.apply(&start_missing),
            Err(FlowError::NotFound {
                kind: "workflow",
                ..
            })
        ));
        let complete = StateChange::TaskCompleted {
            task_id: "t".into(),
            result: TaskResult::default(),
        };
        assert!(matches!(
            s.apply(&complete),
            Err(FlowError::NotFound { kind: "task", .. })
        ));
        assert_eq!(s, before);
        s.apply(&started("t", "n1")).unwrap();
        assert!(matches!(
            s.apply(&started("t", "n2")),
            Err(FlowError::InvalidTransition { .. })
        ));
        s.apply(&complete).unwrap();
        assert!(matches!(
            s.apply(&complete),
            Err(FlowError::InvalidTransition { .. })
        ));
        assert!(matches!(
            s.apply(&started("t", "n1")),
            Err(FlowError::InvalidTransition { .. })
        ));
        assert_eq!(s.revision(), 3);
    }

    #[test]
    fn a_failed_task_restarts_and_counts_attempts() {
        let mut s = FlowState::default();
        s.apply(&started("t", "n1")).unwrap();
        let failed = StateChange::TaskFailed {
            task_id: "t".into(),
            error: TaskError::default(),
        };
        s.apply(&failed).unwrap();
        s.apply(&started("t", "n2")).unwrap();
        let t = s.task(&"t".into()).unwrap();
        assert_eq!(t.attempts, 2);
        assert_eq!(
            t.status,
            TaskStatus::Running {
                node_id: "n2".into()
            }
        );
    }

    #[test]
    fn a_resource_is_released_only_by_its_holder() {
        let mut s = FlowState::default();
        let alloc = StateChange::ResourceAllocated {
            resource_id: "gpu0".into(),
            node_id: "n1".into(),
            allocation: ResourceAllocation::default(),
        };
        s.apply(&alloc).unwrap();
        assert!(s.apply(&alloc).is_err());
        let release_by = |node: &str| StateChange::ResourceReleased {
            resource_id: "gpu0".into(),
            node_id: node.into(),
        };
        assert!(matches!(
            s.apply(&release_by("n2")),
            Err(FlowError::InvalidTransition { .. })
        ));
        s.apply(&release_by("n1")).unwrap();
        assert!(s.resource(&"gpu0".into()).is_none());
    }

    #[test]
    fn the_hash_follows_the_state_not_the_history_length() {
        let mut a = FlowState::default();
        let mut b = FlowState::default();
        a.apply(&created("w1")).unwrap();
        b.apply(&created("w1")).unwrap();
        assert_eq!(a.state_hash(), b.state_hash());
        b.apply(&created("w2")).unwrap();
        assert_ne!(a.state_hash(), b.state_hash());
        assert_eq!(a.state_hash().len(), 64);
    }

    #[test]
    fn a_report_is_consistent_only_when_every_member_agrees() {
        let member = |id: &str, revision, hash: &str| MemberState {
            node_id: id.into(),
            revision,
            state_hash: hash.into(),
        };
        assert!(ConsistencyReport::compare(vec![member("a", 3, "h")]).consistent);
        assert!(!ConsistencyReport::compare(vec![]).consistent);
        let lagging = ConsistencyReport::compare(vec![member("a", 3, "h"), member("b", 2, "h")]);
        assert!(!lagging.consistent);
        assert_eq!(lagging.differing, vec![NodeId::from("b")]);
        let diverged = ConsistencyReport::compare(vec![
            member("a", 3, "h"),
            member("b", 3, "h"),
            member("c", 3, "x"),
        ]);
        assert_eq!(diverged.differing, vec![NodeId::from("c")]);
        assert!(!diverged.consistent);
    }
}
