//! The fault budget: a run may lose nodes for good (killed for good, a flipped
//! bit the node refuses to start from) only while a majority of the members
//! stays able to serve — else no leader could ever be elected again, and the
//! liveness checks would blame the stack for the harness's choice.

use std::collections::BTreeSet;

/// Whether more than half of `voters` are not `lost`.
fn majority_serves<'a>(
    voters: impl Iterator<Item = &'a u64> + Clone,
    lost: &BTreeSet<u64>,
) -> bool {
    let serving = voters.clone().filter(|id| !lost.contains(id)).count();
    serving > voters.count() / 2
}

/// Whether losing `node` keeps a majority of `voters` able to serve, judged both
/// with and without the removals under way (either may commit).
pub fn may_write_off(
    voters: &BTreeSet<u64>,
    removing: &BTreeSet<u64>,
    lost: &BTreeSet<u64>,
    node: u64,
) -> bool {
    let mut lost = lost.clone();
    lost.insert(node);
    majority_serves(voters.iter(), &lost) && majority_serves(voters.difference(removing), &lost)
}

/// Whether removing `node` (after the removals under way) keeps a majority of
/// the remaining voters able to serve.
pub fn may_remove(
    voters: &BTreeSet<u64>,
    removing: &BTreeSet<u64>,
    lost: &BTreeSet<u64>,
    node: u64,
) -> bool {
    let left = voters
        .iter()
        .filter(|id| **id != node && !removing.contains(id));
    majority_serves(left, lost)
}

/// Whether removing `node` (after the removals under way) leaves a member that
/// clients can reach: the workloads' clients know only the initial members'
/// addresses (ids `1..=initial`), as a user's configured endpoint list would,
/// so at least one of those must stay a member that is not lost.
pub fn leaves_a_known_endpoint(
    voters: &BTreeSet<u64>,
    removing: &BTreeSet<u64>,
    lost: &BTreeSet<u64>,
    node: u64,
    initial: u64,
) -> bool {
    voters
        .iter()
        .any(|&id| id <= initial && id != node && !removing.contains(&id) && !lost.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    /// everything::seed_11500016: five voters, node 1 removed, then nodes 4 and 5
    /// killed for good left two of four — no quorum, ever. The second loss must
    /// be refused.
    #[test]
    fn a_loss_is_judged_against_the_members_after_a_removal() {
        let voters = set(&[2, 3, 4, 5]);
        assert!(may_write_off(&voters, &set(&[]), &set(&[]), 4));
        assert!(!may_write_off(&voters, &set(&[]), &set(&[4]), 5));
        // Five voters would have afforded both.
        assert!(may_write_off(
            &set(&[1, 2, 3, 4, 5]),
            &set(&[]),
            &set(&[4]),
            5
        ));
    }

    #[test]
    fn a_loss_counts_a_removal_under_way_as_done() {
        let voters = set(&[1, 2, 3, 4, 5]);
        // Node 1 is being removed and node 4 is lost: losing 5 leaves 2 of {2,3,4,5}.
        assert!(!may_write_off(&voters, &set(&[1]), &set(&[4]), 5));
        assert!(may_write_off(&voters, &set(&[]), &set(&[4]), 5));
    }

    #[test]
    fn a_removal_keeps_a_majority_of_what_is_left() {
        let voters = set(&[1, 2, 3, 4, 5]);
        // {2,3,4,5} with 4 and 5 lost: refused.
        assert!(!may_remove(&voters, &set(&[]), &set(&[4, 5]), 1));
        // Removing a lost node only helps.
        assert!(may_remove(&voters, &set(&[]), &set(&[4, 5]), 5));
        assert!(may_remove(&voters, &set(&[]), &set(&[4]), 1));
    }

    /// membership::seed_9200054: three initial members, 4 and 5 added, then 2, 3
    /// and 1 removed — the cluster {4, 5} was healthy, but every client knew
    /// only 1–3 and no operation could succeed after the heal.
    #[test]
    fn the_last_initial_member_is_not_removed() {
        let voters = set(&[1, 4, 5]);
        assert!(!leaves_a_known_endpoint(
            &voters,
            &set(&[]),
            &set(&[]),
            1,
            3
        ));
        assert!(leaves_a_known_endpoint(&voters, &set(&[]), &set(&[]), 4, 3));
        // Nor may one be removed while the other initial member is being removed,
        // or is lost.
        let voters = set(&[1, 2, 4, 5]);
        assert!(!leaves_a_known_endpoint(
            &voters,
            &set(&[2]),
            &set(&[]),
            1,
            3
        ));
        assert!(!leaves_a_known_endpoint(
            &voters,
            &set(&[]),
            &set(&[2]),
            1,
            3
        ));
        assert!(leaves_a_known_endpoint(&voters, &set(&[]), &set(&[]), 1, 3));
    }
}
