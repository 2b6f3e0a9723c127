//! The conformance suite against the single-node container, one test per check,
//! each on a fresh container.

use super::conformance::{self, ConformanceOptions};
use super::{ServiceContainer, SystemConfig};

fn container() -> ServiceContainer {
    let mut config = SystemConfig::single_node();
    // Small, so the drop test overflows it quickly.
    config.events.subscriber_queue = 16;
    ServiceContainer::new_single_node(config).expect("a single-node container")
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let result = conformance::$name(&container(), &ConformanceOptions::local()).await;
            if let Err(e) = result {
                panic!("{}: {e}", stringify!($name));
            }
        }
    )*};
}

conformance_tests! {
    consensus_commits_proposals,
    nodes_register_discover_and_go_offline,
    nodes_broadcast_reaches_subscribers,
    state_sync_applies_changes_in_order_and_notifies,
    lock_try_acquire_is_none_while_held_and_drop_releases,
    lock_acquire_waits_for_release,
    lock_is_mutually_exclusive_with_increasing_tokens,
    lock_expires_after_ttl_unless_renewed,
    events_cluster_delivery_is_once_in_one_order,
    events_local_and_cluster_stay_apart,
    events_drops_are_counted_and_reported,
    events_routing_rules_apply,
    seed_integration,
}

/// The whole suite on one container, as the Raft container will run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_passes_on_one_shared_container() {
    conformance::run_all(&container(), &ConformanceOptions::local())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
