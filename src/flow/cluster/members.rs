//! The Raft members as the flow services see them: which member leads, read from
//! each member's etcd `Maintenance.Status`, and leader transfer (`MoveLeader`).

use std::sync::Arc;

use crate::client::Connection;
use crate::flow::error::{FlowError, FlowResult};
use crate::flow::types::NodeId;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};

use super::kv::unavailable;

/// One member's answer.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub endpoint: String,
    pub member_id: u64,
    /// The leader it knows of (0: none).
    pub leader: u64,
    pub term: u64,
}

/// The configured members that answered, in configuration order.
pub async fn statuses(conn: &Connection) -> Vec<MemberStatus> {
    let mut found = Vec::new();
    for endpoint in conn.endpoints() {
        let answer = conn
            .call_once_at(&endpoint, |ch| async move {
                MaintenanceClient::new(ch).status(StatusRequest {}).await
            })
            .await;
        if let Ok(s) = answer {
            found.push(MemberStatus {
                member_id: s.header.map_or(0, |h| h.member_id),
                endpoint,
                leader: s.leader,
                term: s.raft_term,
            });
        }
    }
    found
}

/// The member the newest term's answers name as leader, if one of them is it.
pub fn leader_of(statuses: &[MemberStatus]) -> Option<&MemberStatus> {
    let newest = statuses.iter().map(|s| s.term).max()?;
    let leader = statuses
        .iter()
        .find(|s| s.term == newest && s.leader != 0)?
        .leader;
    statuses.iter().find(|s| s.member_id == leader)
}

/// The leader as a flow node id: its client address.
pub async fn leader(conn: &Connection) -> Option<NodeId> {
    let all = statuses(conn).await;
    leader_of(&all).map(|s| NodeId::new(s.endpoint.clone()))
}

/// Moves leadership from the current leader to the next answering member (by
/// member id, wrapping around); a single member is already its own successor.
pub async fn transfer_leadership(conn: &Arc<Connection>) -> FlowResult<()> {
    let all = statuses(conn).await;
    let Some(current) = leader_of(&all) else {
        return Err(FlowError::Unavailable {
            call: "trigger_election",
            reason: format!("no leader among the {} members that answered", all.len()),
        });
    };
    let mut others: Vec<&MemberStatus> = all
        .iter()
        .filter(|s| s.member_id != current.member_id)
        .collect();
    others.sort_by_key(|s| s.member_id);
    let Some(target) = others
        .iter()
        .find(|s| s.member_id > current.member_id)
        .or(others.first())
    else {
        return Ok(());
    };
    let target_id = target.member_id;
    conn.call_once_at(&current.endpoint, |ch| async move {
        MaintenanceClient::new(ch)
            .move_leader(MoveLeaderRequest { target_id })
            .await
    })
    .await
    .map_err(unavailable("trigger_election"))?;
    tracing::info!(from = %current.endpoint, to = %target.endpoint, "flow: leadership moved");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(endpoint: &str, member_id: u64, leader: u64, term: u64) -> MemberStatus {
        MemberStatus {
            endpoint: endpoint.into(),
            member_id,
            leader,
            term,
        }
    }

    #[test]
    fn the_leader_is_the_one_the_newest_term_names() {
        let all = [
            status("a", 1, 1, 3),
            status("b", 2, 3, 4),
            status("c", 3, 3, 4),
        ];
        assert_eq!(leader_of(&all).unwrap().endpoint, "c");
        let no_leader = [status("a", 1, 0, 5), status("b", 2, 1, 4)];
        assert!(leader_of(&no_leader).is_none());
        let unreachable_leader = [status("a", 1, 9, 2)];
        assert!(leader_of(&unreachable_leader).is_none());
    }
}
