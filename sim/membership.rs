//! Membership changes under faults: the harness starts a brand-new node and asks the
//! cluster to add it, or asks it to remove a member, through the client API.

use std::time::Duration;

use coordlab::client::{AdminClient, ClientError, ConnectionConfig};
use coordlab::raft::Bootstrap;

use super::world::{node_addr, NodeState, SharedWorld};

fn admin_client(world: &SharedWorld) -> Option<AdminClient> {
    let w = world.lock().unwrap_or_else(|e| e.into_inner());
    let endpoints: Vec<String> = w
        .live_nodes()
        .into_iter()
        .map(|id| node_addr(id).to_string())
        .collect();
    let config =
        ConnectionConfig::new(endpoints).until(Duration::from_secs(2), Duration::from_secs(6));
    AdminClient::new(config).ok()
}

/// Starts node `max+1` empty (joining) and proposes adding it as a voter.
pub async fn add_node(world: &SharedWorld) {
    let id = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        let next = w.nodes.keys().max().copied().unwrap_or(0) + 1;
        if next > w.scenario.max_nodes() {
            return;
        }
        w.fault(format!("start node {next} to join"));
        w.create_node(next, Bootstrap::Join);
        next
    };
    let Some(client) = admin_client(world) else {
        return;
    };
    let result = client.add_member(id, &node_addr(id).to_string()).await;
    let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(r) => {
            w.members.insert(id);
            w.fault(format!("added node {id} at index {}", r.index));
        }
        Err(e) => w.fault(format!("adding node {id} failed: {e}")),
    }
}

/// Proposes removing `node`, keeping at least three active members.
pub async fn remove_node(world: &SharedWorld, node: u64) {
    {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        let active = w
            .nodes
            .values()
            .filter(|n| {
                !matches!(
                    n.state,
                    NodeState::Removed | NodeState::Failed | NodeState::Lost
                )
            })
            .count();
        if active <= 3 || !w.nodes.contains_key(&node) {
            return;
        }
        if !w.may_remove(node) {
            w.fault(format!(
                "node {node} not removed: too few members left able to serve, \
                 or none the clients know"
            ));
            return;
        }
        w.fault(format!("remove node {node}"));
        w.removing.insert(node);
    }
    let Some(client) = admin_client(world) else {
        world
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .removing
            .remove(&node);
        return;
    };
    let result = client.remove_member(node).await;
    let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(r) => {
            w.removing.remove(&node);
            w.members.remove(&node);
            w.fault(format!("removed node {node} at index {}", r.index));
        }
        // The client retried a removal that had committed: the node is out.
        Err(e) if is_not_a_member(&e) => {
            w.removing.remove(&node);
            w.members.remove(&node);
            w.fault(format!("removed node {node} (a retry found it gone: {e})"));
        }
        Err(e @ ClientError::Rejected { .. }) => {
            w.removing.remove(&node);
            w.fault(format!("removing node {node} refused: {e}"));
        }
        // Outcome unknown: the change may still commit, so the fault budget keeps
        // judging losses against both memberships (`removing`).
        Err(e) => w.fault(format!(
            "removing node {node}: outcome unknown ({e}); still counted as leaving"
        )),
    }
}

/// The error a removal of a node that is no longer a member gets.
fn is_not_a_member(e: &ClientError) -> bool {
    matches!(e, ClientError::Rejected { code: tonic::Code::InvalidArgument, message, .. }
        if message.ends_with("is not a member"))
}
