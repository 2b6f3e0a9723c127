//! Starting the library clients, and ending them: stop, let them finish their
//! calls, audit the config history once the watchers caught up and the lock guards'
//! fencing tokens, list the leases left.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::Handle;
use madsim::task::JoinHandle;

use super::context::{Ctx, Stop, WatcherProgress};
use super::{audit, config, fenced::FencedResources, locks, registry};
use crate::sim::nodes::BuildForRun as _;
use crate::sim::observer::Recorder;
use crate::sim::scenario::Scenario;
use crate::sim::trace::LibraryEvent;
use crate::sim::world::node_addr;

/// How long the end of the run waits for one client to finish its call.
const CLIENT_EXIT_PATIENCE: Duration = Duration::from_secs(30);
/// The leader checks for expired leases every 500 ms; proposing and applying the
/// removal takes a few round trips on the healed cluster.
const LEASE_EXPIRY_GRACE: Duration = Duration::from_secs(3);

pub struct LibraryRun {
    ctx: Ctx,
    clients: Vec<JoinHandle<()>>,
    watchers: Vec<(config::WatchRange, Arc<WatcherProgress>)>,
    handle: Handle,
}

/// Trace ids (and host numbers) of library clients: `base + k`, on `10.0.<net>.k`.
struct Kind {
    base: u64,
    net: u8,
    name: &'static str,
}

const LOCK_CLIENTS: Kind = Kind {
    base: 1000,
    net: 70,
    name: "lib-lock",
};
const PROVIDERS: Kind = Kind {
    base: 1020,
    net: 71,
    name: "lib-provider",
};
const CONSUMERS: Kind = Kind {
    base: 1040,
    net: 72,
    name: "lib-consumer",
};
const WRITERS: Kind = Kind {
    base: 1060,
    net: 73,
    name: "lib-writer",
};
const WATCHERS: Kind = Kind {
    base: 1080,
    net: 74,
    name: "lib-watcher",
};
const AUDIT_NET: u8 = 75;

fn host(handle: &Handle, kind: &Kind, k: u64) -> madsim::runtime::NodeHandle {
    handle
        .create_node()
        .name(format!("{}-{k}", kind.name))
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, kind.net, k as u8)))
        .build_for_run()
}

/// Starts the scenario's library clients (None if it has none).
pub fn start(handle: &Handle, scenario: &Scenario, recorder: Arc<Recorder>) -> Option<LibraryRun> {
    let spec = scenario.library.clone();
    if !spec.any() {
        return None;
    }
    let ctx = Ctx {
        endpoints: (1..=scenario.cluster.nodes)
            .map(|id| node_addr(id).to_string())
            .collect(),
        safety_ms: scenario.duration.safety_secs * 1000,
        spec: spec.clone(),
        recorder,
        stop: Stop::default(),
    };
    let mut clients = Vec::new();
    let resources = FencedResources::default();
    for k in 1..=spec.lock_clients {
        let lock = format!("lib/lock/{}", (k - 1) % spec.locks);
        let node = host(handle, &LOCK_CLIENTS, k);
        let task = locks::run_lock_client(
            ctx.clone(),
            LOCK_CLIENTS.base + k,
            node.id(),
            lock,
            resources.clone(),
        );
        clients.push(node.spawn(task));
    }
    for k in 1..=spec.providers {
        let task = registry::run_provider(ctx.clone(), PROVIDERS.base + k, k);
        clients.push(host(handle, &PROVIDERS, k).spawn(task));
    }
    for k in 1..=spec.consumers {
        let member = (k - 1) % scenario.cluster.nodes + 1;
        let task = registry::run_consumer(ctx.clone(), CONSUMERS.base + k, member);
        clients.push(host(handle, &CONSUMERS, k).spawn(task));
    }
    for k in 1..=spec.writers {
        let task = config::run_writer(ctx.clone(), WRITERS.base + k, k);
        clients.push(host(handle, &WRITERS, k).spawn(task));
    }
    let mut watchers = Vec::new();
    for k in 1..=spec.watchers {
        let range = config::WatchRange::for_watcher(&spec, k);
        let progress = Arc::new(WatcherProgress::default());
        let node = host(handle, &WATCHERS, k);
        let task = config::run_watcher(
            ctx.clone(),
            WATCHERS.base + k,
            (k <= spec.cut_off_watchers).then(|| node.id()),
            range.clone(),
            progress.clone(),
        );
        // Watchers run to the end of the run; the audit waits for them instead.
        drop(node.spawn(task));
        watchers.push((range, progress));
    }
    Some(LibraryRun {
        ctx,
        clients,
        watchers,
        handle: handle.clone(),
    })
}

impl LibraryRun {
    /// Ends the workload (once the cluster has healed): stops the clients, waits for
    /// them, then records the audit of the config history, the leases left once a
    /// TTL has passed, and `Ended`. The online checkers judge them as they are
    /// recorded.
    pub async fn finish(self) {
        self.ctx.stop.stop();
        let mut clients_running = 0;
        for client in self.clients {
            // A client still busy after this long is left behind (its calls count
            // as given up, its leases may rightly be alive).
            if tokio::time::timeout(CLIENT_EXIT_PATIENCE, client)
                .await
                .is_err()
            {
                clients_running += 1;
            }
        }
        let spec = &self.ctx.spec;
        // A lease nobody renews any more is removed within its TTL, the leader's
        // expiry check and a commit.
        let lease_expiry = Duration::from_secs(spec.lock_ttl_secs.max(spec.registration_ttl_secs))
            + LEASE_EXPIRY_GRACE;
        let leases_expired_at = tokio::time::Instant::now() + lease_expiry;
        let auditor = self
            .handle
            .create_node()
            .name("lib-audit")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, AUDIT_NET, 1)))
            .build_for_run();
        let ctx = self.ctx.clone();
        let watchers = self.watchers;
        let _ = auditor
            .spawn(async move {
                if ctx.spec.writers + ctx.spec.watchers > 0 {
                    audit::audit_config_history(ctx.clone(), watchers).await;
                }
                if ctx.spec.lock_clients > 0 {
                    audit::audit_fencing_tokens(ctx.clone()).await;
                }
                if ctx.spec.lock_clients + ctx.spec.providers > 0 {
                    tokio::time::sleep_until(leases_expired_at).await;
                    audit::list_leases(ctx, lease_expiry, clients_running).await;
                }
            })
            .await;
        self.ctx.record(0, LibraryEvent::Ended);
    }
}
