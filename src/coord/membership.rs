//! etcd's `Cluster` membership calls on coordd's Raft membership (ConfChangeV2).
//!
//! A member is one coordd process: its id is the `--id` it was started with and
//! its one address (`--listen`) serves Raft peers and clients alike, so a member
//! has exactly one peer URL, `http://<listen>`, which is also its client URL.
//!
//! - `MemberAdd` takes that URL; the leader chooses the id (one more than the
//!   highest id the cluster ever used, see `RaftCore::highest_member_id`), and the
//!   new process starts with `coordd --id <id> --listen <addr> --join`.
//! - `MemberRemove` and `MemberPromote` take an id; a learner is promoted only when
//!   in sync with the leader (`raft::LEARNER_IN_SYNC_MAX_LAG_ENTRIES`).
//! - `MemberUpdate` is refused (UNIMPLEMENTED): changing an address means restarting
//!   the process at another `--listen`, and no member could be told its new address
//!   before it serves there; remove the member and add one at the new address.
//!
//! A change is proposed on the leader and answered once the leader applied it: a
//! follower forwards the request (`CoordForward.Member*`), and the answer's member
//! list is the leader's. Only the leader decides, so two requests cannot pick one id.

use std::net::SocketAddr;

use tonic::Status;

use super::errors::CoordError;
use super::forward::{error_from_status, with_deadline, LeaderRoute, Proposer, REQUEST_TIMEOUT};
use crate::proto::coord_forward_client::CoordForwardClient;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse,
};
use crate::raft::{MembershipApplied, MembershipChange, NodeStatus};

/// The `host:port` a new member serves on, from `MemberAdd`'s peer URLs.
pub fn addr_of_peer_urls(urls: &[String]) -> Result<String, CoordError> {
    let bad = |why: String| Err(CoordError::MemberBadUrls(why));
    let url = match urls {
        [url] => url.trim(),
        [] => return bad("no peer URL given; coordd takes one, http://<ip>:<port>".into()),
        _ => {
            return bad(format!(
                "{} peer URLs given; a coordd member serves on exactly one address",
                urls.len()
            ))
        }
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return bad(format!(
            "{url:?} is not an http:// URL (coordd members speak plain http, no TLS)"
        ));
    };
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    match host_port.parse::<SocketAddr>() {
        Ok(addr) => Ok(addr.to_string()),
        Err(_) => bad(format!(
            "{url:?} does not name an IP address and port, as coordd --listen takes"
        )),
    }
}

/// One member in etcd's shape. A member not started yet has no name and no client
/// URLs, as etcd answers for a member it has not heard from.
fn etcd_member(id: u64, addr: &str, is_learner: bool, started: bool) -> Member {
    let url = format!("http://{addr}");
    Member {
        id,
        name: if started {
            format!("node-{id}")
        } else {
            String::new()
        },
        peer_ur_ls: vec![url.clone()],
        client_ur_ls: if started { vec![url] } else { Vec::new() },
        is_learner,
    }
}

/// The members of `status` in etcd's shape, `unstarted` (a member just added)
/// without name and client URLs.
pub fn etcd_members(status: &NodeStatus, unstarted: Option<u64>) -> Vec<Member> {
    status
        .members
        .iter()
        .map(|(&id, addr)| {
            etcd_member(
                id,
                addr,
                status.learners.contains(&id),
                Some(id) != unstarted,
            )
        })
        .collect()
}

/// `MemberAdd` from any member.
pub async fn add(
    proposer: &Proposer,
    request: MemberAddRequest,
) -> Result<MemberAddResponse, CoordError> {
    addr_of_peer_urls(&request.peer_ur_ls)?;
    match proposer.leader_route().await? {
        LeaderRoute::Local => add_here(proposer, request).await,
        LeaderRoute::Remote(leader) => {
            let mut client = CoordForwardClient::new(proposer.channel(&leader)?);
            answer(client.member_add(request).await)
        }
    }
}

/// `MemberAdd` on this member, which must lead.
pub async fn add_here(
    proposer: &Proposer,
    request: MemberAddRequest,
) -> Result<MemberAddResponse, CoordError> {
    let addr = addr_of_peer_urls(&request.peer_ur_ls)?;
    let change = MembershipChange::AddNew {
        addr,
        learner: request.is_learner,
    };
    let (applied, status) = change_here(proposer, change).await?;
    let members = etcd_members(&status, Some(applied.node_id));
    let member = members.iter().find(|m| m.id == applied.node_id).cloned();
    Ok(MemberAddResponse {
        header: None,
        member,
        members,
    })
}

/// `MemberRemove` from any member.
pub async fn remove(
    proposer: &Proposer,
    request: MemberRemoveRequest,
) -> Result<MemberRemoveResponse, CoordError> {
    match proposer.leader_route().await? {
        LeaderRoute::Local => remove_here(proposer, request).await,
        LeaderRoute::Remote(leader) => {
            let mut client = CoordForwardClient::new(proposer.channel(&leader)?);
            answer(client.member_remove(request).await)
        }
    }
}

/// `MemberRemove` on this member, which must lead.
pub async fn remove_here(
    proposer: &Proposer,
    request: MemberRemoveRequest,
) -> Result<MemberRemoveResponse, CoordError> {
    let change = MembershipChange::Remove { id: request.id };
    let (_, status) = change_here(proposer, change).await?;
    Ok(MemberRemoveResponse {
        header: None,
        members: etcd_members(&status, None),
    })
}

/// `MemberPromote` from any member.
pub async fn promote(
    proposer: &Proposer,
    request: MemberPromoteRequest,
) -> Result<MemberPromoteResponse, CoordError> {
    match proposer.leader_route().await? {
        LeaderRoute::Local => promote_here(proposer, request).await,
        LeaderRoute::Remote(leader) => {
            let mut client = CoordForwardClient::new(proposer.channel(&leader)?);
            answer(client.member_promote(request).await)
        }
    }
}

/// `MemberPromote` on this member, which must lead (its progress tracker decides
/// whether the learner is in sync).
pub async fn promote_here(
    proposer: &Proposer,
    request: MemberPromoteRequest,
) -> Result<MemberPromoteResponse, CoordError> {
    let change = MembershipChange::Promote { id: request.id };
    let (_, status) = change_here(proposer, change).await?;
    Ok(MemberPromoteResponse {
        header: None,
        members: etcd_members(&status, None),
    })
}

/// Proposes `change` on this member (the leader) and waits until it is applied;
/// answers with the status after it.
async fn change_here(
    proposer: &Proposer,
    change: MembershipChange,
) -> Result<(MembershipApplied, NodeStatus), CoordError> {
    let handle = proposer.handle();
    if !handle.leader().is_self {
        return Err(CoordError::NotLeader);
    }
    let expect_member = !matches!(change, MembershipChange::Remove { .. });
    with_deadline(proposer.clock(), REQUEST_TIMEOUT, async {
        let applied = handle.change_membership(change).await?;
        let status = handle.status().await?;
        // raft-rs may still refuse a change when applying it (every member alike).
        if expect_member != status.members.contains_key(&applied.node_id) {
            return Err(CoordError::Other {
                code: tonic::Code::FailedPrecondition as i32,
                message: format!(
                    "etcdserver: the membership change of node {} was refused when applied",
                    applied.node_id
                ),
            });
        }
        Ok((applied, status))
    })
    .await
}

/// The leader's answer to a forwarded call.
fn answer<T>(result: Result<tonic::Response<T>, Status>) -> Result<T, CoordError> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|s| error_from_status(&s))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn one_http_peer_url_names_the_address() {
        assert_eq!(
            addr_of_peer_urls(&urls(&["http://127.0.0.1:7104"])).unwrap(),
            "127.0.0.1:7104"
        );
        assert_eq!(
            addr_of_peer_urls(&urls(&["http://[::1]:7104/"])).unwrap(),
            "[::1]:7104"
        );
        let refused = |list: &[&str], says: &str| {
            let err = addr_of_peer_urls(&urls(list)).unwrap_err();
            assert!(matches!(err, CoordError::MemberBadUrls(_)), "{err}");
            assert_eq!(
                Status::from(err.clone()).code(),
                tonic::Code::InvalidArgument
            );
            assert!(err.to_string().contains(says), "{list:?}: {err}");
        };
        refused(&[], "no peer URL");
        refused(&["http://127.0.0.1:1", "http://127.0.0.1:2"], "2 peer URLs");
        refused(&["https://127.0.0.1:7104"], "not an http:// URL");
        refused(&["127.0.0.1:7104"], "not an http:// URL");
        refused(&["http://127.0.0.1"], "IP address and port");
        refused(&["http://127.0.0.1:7104/path"], "IP address and port");
    }

    #[test]
    fn members_show_learners_and_the_unstarted_one() {
        let status = NodeStatus {
            id: 1,
            role: raft::StateRole::Leader,
            leader_id: 1,
            term: 2,
            commit_index: 9,
            applied_index: 9,
            first_log_index: 1,
            last_log_index: 9,
            snapshot_index: 0,
            members: BTreeMap::from([(1, "h:1".into()), (4, "h:4".into())]),
            learners: BTreeSet::from([4]),
            proposals: Default::default(),
        };
        let members = etcd_members(&status, Some(4));
        assert_eq!(members[0], etcd_member(1, "h:1", false, true));
        assert_eq!(members[0].name, "node-1");
        assert_eq!(members[0].client_ur_ls, vec!["http://h:1".to_string()]);
        assert!(members[1].is_learner);
        assert_eq!(members[1].name, "");
        assert!(members[1].client_ur_ls.is_empty());
        assert_eq!(members[1].peer_ur_ls, vec!["http://h:4".to_string()]);
    }
}
