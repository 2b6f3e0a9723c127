//! Membership changes: what may be proposed, decided from the leader's view alone.
//!
//! [`plan_membership_change`] is pure: the core hands it a [`MembershipView`] of its
//! configuration, member addresses and replication progress, and proposes the
//! ConfChangeV2 it returns (or answers the typed refusal). One change at a time:
//! raft-rs refuses a second one until the first is applied.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::ConfChangeType;
use thiserror::Error;

/// A learner may be promoted once its matched index is at most this many entries
/// behind the leader's last index. etcd 3.4 asks for 90% of the leader's matched
/// index instead, a lag that grows with the log (at index 1,000,000 a learner
/// 100,000 entries behind passes). A fixed bound keeps what promotion costs fixed:
/// the new voter needs at most one append round to catch up, so a quorum that
/// counts it on its next entries does not wait for a long replay. An idle cluster
/// has it at 0 after a heartbeat; 64 leaves room for writes in flight.
pub const LEARNER_IN_SYNC_MAX_LAG_ENTRIES: u64 = 64;

/// A membership change, applied through Raft (ConfChangeV2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voter reachable at `addr` (or promote learner `id`, without the
    /// in-sync check that [`MembershipChange::Promote`] makes).
    AddVoter { id: u64, addr: String },
    /// Add a learner (non-voting) reachable at `addr`.
    AddLearner { id: u64, addr: String },
    /// Add a member at `addr` under an id the leader chooses: one more than the
    /// highest id this cluster ever used (see [`MembershipView::highest_member_id`]).
    AddNew { addr: String, learner: bool },
    /// Make learner `id` a voter, once it is in sync with the leader.
    Promote { id: u64 },
    /// Remove a node.
    Remove { id: u64 },
}

/// Why a membership change is refused before it is proposed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MembershipError {
    #[error("node id 0 is reserved")]
    ReservedId,
    /// (The simulation's membership workload matches on "is not a member".)
    #[error("node {0} is not a member")]
    NotAMember(u64),
    #[error("node {0} is already a voter")]
    AlreadyVoter(u64),
    #[error("node id {0} was used before: Raft never takes a removed node back")]
    IdUsedBefore(u64),
    #[error("node {0} needs an address")]
    NoAddress(u64),
    #[error("address {addr} is already used by node {id}")]
    AddressInUse { addr: String, id: u64 },
    #[error("node {0} is not a learner")]
    NotALearner(u64),
    #[error(
        "learner {id} is not in sync with the leader (matched index {matched}, \
         leader's last index {last_index}, allowed lag {LEARNER_IN_SYNC_MAX_LAG_ENTRIES})"
    )]
    LearnerNotInSync {
        id: u64,
        matched: u64,
        last_index: u64,
    },
    #[error("another membership change is not applied yet")]
    ChangeInProgress,
}

/// What the leader knows when it decides on a change.
#[derive(Debug, Clone, Default)]
pub struct MembershipView {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    /// Member addresses, learners included.
    pub addrs: BTreeMap<u64, String>,
    /// The highest id the founding configuration or any applied change ever used.
    pub highest_member_id: u64,
    /// The leader's last log index.
    pub last_index: u64,
    /// Each learner's matched index, as the leader's progress tracker has it.
    pub learner_matched: BTreeMap<u64, u64>,
    /// A conf change is proposed but not yet applied.
    pub change_pending: bool,
}

/// The one ConfChangeSingle to propose, with the address it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub change_type: ConfChangeType,
    pub node_id: u64,
    pub addr: String,
}

impl MembershipView {
    fn is_member(&self, id: u64) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    fn check_new_id(&self, id: u64) -> Result<(), MembershipError> {
        if id <= self.highest_member_id && !self.is_member(id) {
            return Err(MembershipError::IdUsedBefore(id));
        }
        Ok(())
    }

    fn check_addr(&self, id: u64, addr: &str) -> Result<(), MembershipError> {
        if addr.is_empty() {
            return Err(MembershipError::NoAddress(id));
        }
        match self
            .addrs
            .iter()
            .find(|(&other, a)| other != id && *a == addr)
        {
            Some((&other, _)) => Err(MembershipError::AddressInUse {
                addr: addr.to_string(),
                id: other,
            }),
            None => Ok(()),
        }
    }

    /// In sync: the learner acknowledged entries (a learner that never answered
    /// has matched 0, however short the log) and lags by at most the bound.
    fn check_in_sync(&self, id: u64) -> Result<(), MembershipError> {
        let matched = self.learner_matched.get(&id).copied().unwrap_or(0);
        if matched == 0 || matched + LEARNER_IN_SYNC_MAX_LAG_ENTRIES < self.last_index {
            return Err(MembershipError::LearnerNotInSync {
                id,
                matched,
                last_index: self.last_index,
            });
        }
        Ok(())
    }
}

/// Decides whether `change` may be proposed now and as what.
pub fn plan_membership_change(
    view: &MembershipView,
    change: &MembershipChange,
) -> Result<PlannedChange, MembershipError> {
    use ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
    if view.change_pending {
        return Err(MembershipError::ChangeInProgress);
    }
    let planned = |change_type, node_id, addr: &str| PlannedChange {
        change_type,
        node_id,
        addr: addr.to_string(),
    };
    match change {
        MembershipChange::AddNew { addr, learner } => {
            let id = view.highest_member_id + 1;
            view.check_addr(id, addr)?;
            Ok(planned(
                if *learner { AddLearnerNode } else { AddNode },
                id,
                addr,
            ))
        }
        MembershipChange::AddVoter { id, addr } | MembershipChange::AddLearner { id, addr } => {
            let id = *id;
            if id == raft::INVALID_ID {
                return Err(MembershipError::ReservedId);
            }
            let voter = matches!(change, MembershipChange::AddVoter { .. });
            if voter && view.voters.contains(&id) {
                return Err(MembershipError::AlreadyVoter(id));
            }
            view.check_new_id(id)?;
            view.check_addr(id, addr)?;
            Ok(planned(
                if voter { AddNode } else { AddLearnerNode },
                id,
                addr,
            ))
        }
        &MembershipChange::Promote { id } => {
            if id == raft::INVALID_ID || !view.is_member(id) {
                return Err(MembershipError::NotAMember(id));
            }
            if !view.learners.contains(&id) {
                return Err(MembershipError::NotALearner(id));
            }
            view.check_in_sync(id)?;
            // The learner keeps its address; the entry carries it for every member.
            let addr = view.addrs.get(&id).cloned().unwrap_or_default();
            Ok(planned(AddNode, id, &addr))
        }
        &MembershipChange::Remove { id } => {
            if id == raft::INVALID_ID {
                return Err(MembershipError::ReservedId);
            }
            if !view.is_member(id) {
                return Err(MembershipError::NotAMember(id));
            }
            Ok(planned(RemoveNode, id, ""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Voters 1, 3 and 5 (node 2 was removed), learner 4 at matched index 90 of
    /// the leader's 100.
    fn view() -> MembershipView {
        MembershipView {
            voters: [1, 3, 5].into(),
            learners: [4].into(),
            addrs: [(1, "h:1"), (3, "h:3"), (4, "h:4"), (5, "h:5")]
                .map(|(id, a)| (id, a.to_string()))
                .into(),
            highest_member_id: 5,
            last_index: 100,
            learner_matched: [(4, 90)].into(),
            change_pending: false,
        }
    }

    #[test]
    fn a_new_member_gets_one_more_than_the_highest_id_ever_used() {
        let mut v = view();
        // Node 5 is removed: its id stays taken.
        v.voters.remove(&5);
        v.addrs.remove(&5);
        let p = plan_membership_change(
            &v,
            &MembershipChange::AddNew {
                addr: "h:6".into(),
                learner: true,
            },
        )
        .unwrap();
        assert_eq!(
            p,
            PlannedChange {
                change_type: ConfChangeType::AddLearnerNode,
                node_id: 6,
                addr: "h:6".into()
            }
        );
        // Raft §4.1 assumes a removed server never comes back under its old id.
        let err = plan_membership_change(
            &v,
            &MembershipChange::AddVoter {
                id: 5,
                addr: "h:5".into(),
            },
        )
        .unwrap_err();
        assert_eq!(err, MembershipError::IdUsedBefore(5));
    }

    #[test]
    fn an_address_serves_one_member() {
        let err = plan_membership_change(
            &view(),
            &MembershipChange::AddNew {
                addr: "h:3".into(),
                learner: false,
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            MembershipError::AddressInUse {
                addr: "h:3".into(),
                id: 3
            }
        );
        // Promoting learner 4 by AddVoter keeps its own address.
        let p = plan_membership_change(
            &view(),
            &MembershipChange::AddVoter {
                id: 4,
                addr: "h:4".into(),
            },
        )
        .unwrap();
        assert_eq!(p.change_type, ConfChangeType::AddNode);
    }

    #[test]
    fn only_a_learner_in_sync_is_promoted() {
        let promote =
            |v: &MembershipView, id| plan_membership_change(v, &MembershipChange::Promote { id });
        let mut v = view();
        assert_eq!(promote(&v, 3), Err(MembershipError::NotALearner(3)));
        assert_eq!(promote(&v, 9), Err(MembershipError::NotAMember(9)));
        let p = promote(&v, 4).unwrap();
        assert_eq!(
            (p.change_type, p.node_id, p.addr.as_str()),
            (ConfChangeType::AddNode, 4, "h:4")
        );
        v.last_index = 90 + LEARNER_IN_SYNC_MAX_LAG_ENTRIES;
        assert!(promote(&v, 4).is_ok(), "at the bound");
        v.last_index += 1;
        assert_eq!(
            promote(&v, 4),
            Err(MembershipError::LearnerNotInSync {
                id: 4,
                matched: 90,
                last_index: 155
            })
        );
        // A learner the leader never heard from has matched nothing, and is not
        // in sync even with a log shorter than the bound.
        v.learner_matched.insert(4, 0);
        v.last_index = 10;
        assert!(matches!(
            promote(&v, 4),
            Err(MembershipError::LearnerNotInSync { matched: 0, .. })
        ));
    }

    #[test]
    fn removals_and_pending_changes() {
        let mut v = view();
        assert_eq!(
            plan_membership_change(&v, &MembershipChange::Remove { id: 2 }),
            Err(MembershipError::NotAMember(2))
        );
        assert_eq!(
            plan_membership_change(&v, &MembershipChange::Remove { id: 0 }),
            Err(MembershipError::ReservedId)
        );
        assert!(plan_membership_change(&v, &MembershipChange::Remove { id: 4 }).is_ok());
        v.change_pending = true;
        assert_eq!(
            plan_membership_change(&v, &MembershipChange::Remove { id: 4 }),
            Err(MembershipError::ChangeInProgress)
        );
    }
}
