//! Consensus, nodes and state synchronisation, and the seed's integration test.

use super::created;
use super::{eventually, next, During};
use super::{Conformance, ConformanceError, ConformanceOptions};
use crate::flow::consensus::{ProposalStatus, Vote};
use crate::flow::container::ServiceContainer;
use crate::flow::error::FlowError;
use crate::flow::events::Event;
use crate::flow::nodes::{ClusterMessage, NodeHealth};
use crate::flow::state::{TaskStatus, WorkflowStatus};
use crate::flow::types::{NodeId, NodeInfo, ProposalId, StateChange, TaskResult, REGION_KEY};

/// A proposal becomes `Committed`; votes and commits on it change nothing; ids are
/// unique; an id never issued is `NotFound`; there is a leader, also after an
/// election was triggered.
pub async fn consensus_commits_proposals(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let first = c
        .consensus
        .propose(created(&o.name("p1")))
        .await
        .during("propose")?;
    let second = c
        .consensus
        .propose(created(&o.name("p2")))
        .await
        .during("propose")?;
    ensure!(
        first != second,
        "proposal ids are unique",
        "both proposals got {first}"
    );
    let committed = eventually(o.wait, || async {
        let status = c.consensus.status(first.clone()).await.during("status")?;
        ensure!(
            !matches!(status, ProposalStatus::Rejected { .. }),
            "a valid proposal commits",
            "{first} was {status:?}"
        );
        Ok(status == ProposalStatus::Committed)
    });
    ensure!(
        committed.await?,
        "a proposal commits",
        "{first} not committed within {:?}",
        o.wait
    );
    c.consensus
        .vote(first.clone(), Vote::Reject)
        .await
        .during("vote")?;
    c.consensus.commit(first.clone()).await.during("commit")?;
    let status = c.consensus.status(first.clone()).await.during("status")?;
    ensure!(
        status == ProposalStatus::Committed,
        "a decision is final",
        "{first} became {status:?} after a late vote"
    );
    let never = ProposalId {
        origin: NodeId::new(o.name("nobody")),
        sequence: 1,
    };
    let unknown = c.consensus.status(never.clone()).await;
    ensure!(
        matches!(unknown, Err(FlowError::NotFound { .. })),
        "unknown proposals are not found",
        "status({never}) = {unknown:?}"
    );
    ensure!(
        c.consensus
            .get_leader()
            .await
            .during("get_leader")?
            .is_some(),
        "there is a leader",
        "get_leader is None"
    );
    c.consensus
        .trigger_election()
        .await
        .during("trigger_election")?;
    let elected = eventually(o.wait, || async {
        Ok(c.consensus
            .get_leader()
            .await
            .during("get_leader")?
            .is_some())
    });
    ensure!(
        elected.await?,
        "an election ends with a leader",
        "none within {:?}",
        o.wait
    );
    Ok(())
}

/// Registered nodes are discovered, healthy, in the topology by id and region;
/// an offline node leaves them; an unknown node is `NotFound`.
pub async fn nodes_register_discover_and_go_offline(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let region = o.name("region");
    let mut a = NodeInfo::new(NodeId::new(o.name("node-a")), "10.0.0.1", 7001);
    a.metadata.insert(REGION_KEY.into(), region.clone());
    a.capabilities.push("gpu".into());
    let b = NodeInfo::new(NodeId::new(o.name("node-b")), "10.0.0.2", 7002);
    for node in [&b, &a] {
        let id = c
            .node_manager
            .register(node.clone())
            .await
            .during("register")?;
        ensure!(
            id == node.id,
            "register returns the node's id",
            "{} became {id}",
            node.id
        );
    }
    let found = c.node_manager.discover().await.during("discover")?;
    ensure!(
        found.contains(&a) && found.contains(&b),
        "registered nodes are discovered",
        "discover = {found:?}"
    );
    ensure!(
        found.windows(2).all(|w| w[0].id < w[1].id),
        "nodes are listed by id",
        "discover order {:?}",
        found.iter().map(|n| &n.id).collect::<Vec<_>>()
    );
    let health = c
        .node_manager
        .health_check(a.id.clone())
        .await
        .during("health_check")?;
    ensure!(
        health == NodeHealth::Healthy,
        "a registered node is healthy",
        "{health:?}"
    );
    let topology = c.node_manager.topology().await.during("topology")?;
    ensure!(
        topology.nodes.contains(&a) && topology.nodes.contains(&b),
        "the topology lists registered nodes",
        "{topology:?}"
    );
    ensure!(
        topology.regions.get(&region) == Some(&vec![a.id.clone()]),
        "regions come from node metadata",
        "regions = {:?}",
        topology.regions
    );
    ensure!(
        topology.leader.is_some(),
        "the topology names a leader",
        "{topology:?}"
    );
    c.node_manager
        .handle_offline(b.id.clone())
        .await
        .during("handle_offline")?;
    let health = c
        .node_manager
        .health_check(b.id.clone())
        .await
        .during("health_check")?;
    ensure!(
        health == NodeHealth::Offline,
        "an offline node is offline",
        "{health:?}"
    );
    let found = c.node_manager.discover().await.during("discover")?;
    ensure!(
        !found.iter().any(|n| n.id == b.id) && found.contains(&a),
        "an offline node is not discovered",
        "discover = {found:?}"
    );
    let unknown = c
        .node_manager
        .health_check(NodeId::new(o.name("ghost")))
        .await;
    ensure!(
        matches!(unknown, Err(FlowError::NotFound { .. })),
        "unknown nodes are not found",
        "{unknown:?}"
    );
    Ok(())
}

/// A broadcast reaches every message subscriber, in the order sent.
pub async fn nodes_broadcast_reaches_subscribers(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let mut subs = Vec::new();
    for _ in 0..2 {
        subs.push(
            c.node_manager
                .subscribe_messages()
                .await
                .during("subscribe_messages")?,
        );
    }
    let kind = o.name("hello");
    let sent: Vec<ClusterMessage> = (0..3)
        .map(|n| ClusterMessage {
            from: NodeId::new(o.name("node-a")),
            kind: kind.clone(),
            payload: serde_json::json!(n),
        })
        .collect();
    for message in &sent {
        c.node_manager
            .broadcast(message.clone())
            .await
            .during("broadcast")?;
    }
    for sub in &mut subs {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let message = next(sub, o.wait, "a broadcast reaches every subscriber").await?;
            if message.kind == kind {
                got.push(message);
            }
        }
        ensure!(
            got == sent,
            "broadcasts arrive once, in order",
            "got {got:?}"
        );
    }
    Ok(())
}

/// Changes are applied and reach subscribers in revision order; a refused change
/// reaches no one; reads see applied state; one member's state is consistent.
pub async fn state_sync_applies_changes_in_order_and_notifies(
    c: &ServiceContainer,
    o: &ConformanceOptions,
) -> Conformance {
    let s = &c.state_sync;
    let mut sub = s.subscribe_changes().await.during("subscribe_changes")?;
    let workflow = o.name("wf");
    let task = o.name("wf.extract");
    let node = NodeId::new(o.name("node-a"));
    let changes = vec![
        created(&workflow),
        StateChange::WorkflowStarted {
            workflow_id: workflow.as_str().into(),
            execution_id: o.name("run-1").as_str().into(),
        },
        StateChange::TaskStarted {
            task_id: task.as_str().into(),
            node_id: node.clone(),
        },
        StateChange::TaskCompleted {
            task_id: task.as_str().into(),
            result: TaskResult {
                output: serde_json::json!({"rows": 42}),
            },
        },
    ];
    for change in &changes {
        s.broadcast_change(change.clone())
            .await
            .during("broadcast_change")?;
    }
    let refused = s.broadcast_change(created(&workflow)).await;
    ensure!(
        matches!(refused, Err(FlowError::AlreadyExists { .. })),
        "a change that does not follow is refused",
        "creating {workflow} twice gave {refused:?}"
    );
    let marker = created(&o.name("wf-after"));
    s.broadcast_change(marker.clone())
        .await
        .during("broadcast_change")?;
    let mut last_revision = 0;
    for expected in changes.iter().chain([&marker]) {
        let got = next(&mut sub, o.wait, "subscribers see applied changes").await?;
        ensure!(
            &got.change == expected,
            "changes arrive once, in order, refused ones not at all",
            "expected {expected:?}, got {got:?}"
        );
        ensure!(
            got.revision > last_revision,
            "revisions increase",
            "{} after {last_revision}",
            got.revision
        );
        last_revision = got.revision;
    }
    s.force_sync().await.during("force_sync")?;
    let w = s
        .sync_workflow(workflow.as_str().into())
        .await
        .during("sync_workflow")?;
    let running = WorkflowStatus::Running {
        execution_id: o.name("run-1").as_str().into(),
    };
    ensure!(
        w.status == running,
        "reads see applied changes",
        "workflow {w:?}"
    );
    let t = s
        .sync_task(task.as_str().into())
        .await
        .during("sync_task")?;
    ensure!(
        matches!(&t.status, TaskStatus::Completed { result } if result.output["rows"] == 42),
        "reads see applied changes",
        "task {t:?}"
    );
    let missing = s.sync_workflow(o.name("wf-none").as_str().into()).await;
    ensure!(
        matches!(missing, Err(FlowError::NotFound { .. })),
        "unknown workflows are not found",
        "{missing:?}"
    );
    let report = s.check_consistency().await.during("check_consistency")?;
    ensure!(
        report.consistent && report.differing.is_empty() && !report.members.is_empty(),
        "a synced state is consistent",
        "{report:?}"
    );
    ensure!(
        report
            .members
            .iter()
            .all(|m| m.revision >= last_revision && m.state_hash.len() == 64),
        "the report carries each member's revision and state hash",
        "{report:?} (last change at revision {last_revision})"
    );
    Ok(())
}

/// The seed's integration test, with its outcomes checked.
pub async fn seed_integration(c: &ServiceContainer, o: &ConformanceOptions) -> Conformance {
    let workflow = o.name("seed-wf");
    let change = created(&workflow);
    let topic = o.name("workflow");
    let mut local = c
        .event_bus
        .subscribe_local(&topic)
        .await
        .during("subscribe_local")?;
    let proposal = c
        .consensus
        .propose(change.clone())
        .await
        .during("propose")?;
    let committed = eventually(o.wait, || async {
        Ok(c.consensus
            .status(proposal.clone())
            .await
            .during("status")?
            == ProposalStatus::Committed)
    });
    ensure!(
        committed.await?,
        "a proposal commits",
        "{proposal} not committed"
    );
    c.state_sync
        .broadcast_change(change.clone())
        .await
        .during("broadcast_change")?;
    let payload = serde_json::to_value(&change).expect("a change serializes");
    let event = Event::new("workflow.created", payload);
    c.event_bus
        .publish_local(&topic, event.clone())
        .await
        .during("publish_local")?;
    let got = next(
        &mut local,
        o.wait,
        "a local event reaches local subscribers",
    )
    .await?;
    ensure!(got.event == event, "events arrive unchanged", "{got:?}");
    let w = c
        .state_sync
        .sync_workflow(workflow.as_str().into())
        .await
        .during("sync_workflow")?;
    ensure!(
        w.status == WorkflowStatus::Created,
        "the change was applied",
        "{w:?}"
    );
    Ok(())
}
