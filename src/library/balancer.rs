//! `get_connection`: gRPC channels to a service's registered instances, kept in step
//! with the registry by a watch that starts right after the initial read (so no
//! change between the two is missed). `next_channel` hands out instances
//! round-robin; `channel` is one tonic `Channel` balancing over them. An instance
//! leaves both as soon as its deregistration event arrives.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use super::error::CoordinatorError;
use super::registry::{EventType, ServiceInfo, ServiceRegistry};
use crate::seams::mutants;

type Instances = BTreeMap<String, (ServiceInfo, Channel)>;

// Defined here rather than in `registry`: the balancer builds on the registry's
// snapshot and watch, and the registry does not depend on the balancer.
impl ServiceRegistry {
    /// A connection to `name` that balances over its instances and follows the
    /// registry (see [`ServiceConnection`]).
    pub async fn get_connection(&self, name: &str) -> Result<ServiceConnection, CoordinatorError> {
        ServiceConnection::follow(self.clone(), name).await
    }
}

pub struct ServiceConnection {
    name: String,
    instances: Arc<Mutex<Instances>>,
    next: AtomicUsize,
    balanced: Channel,
    follower: JoinHandle<()>,
}

fn channel_to(info: &ServiceInfo) -> Option<(Endpoint, Channel)> {
    let ep = Endpoint::from_shared(format!("http://{}", info.endpoint())).ok()?;
    let ch = ep.clone().connect_lazy();
    Some((ep, ch))
}

// tonic's balancer takes its own `Change`; madsim's simulated tonic takes tower's.
#[cfg(not(madsim))]
pub(crate) use tonic::transport::channel::Change;
#[cfg(madsim)]
pub(crate) use tower::discover::Change;

/// What a balanced channel is told: an instance (by id) joins or leaves.
pub(crate) type BalanceChange = Change<String, Endpoint>;

fn insert(instances: &Mutex<Instances>, balance: &mpsc::Sender<BalanceChange>, info: ServiceInfo) {
    let Some((ep, ch)) = channel_to(&info) else {
        tracing::warn!(service = %info.name, id = %info.id, "unusable address; instance skipped");
        return;
    };
    let id = info.id.clone();
    instances
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), (info, ch));
    let _ = balance.try_send(Change::Insert(id, ep));
}

impl ServiceConnection {
    pub(crate) async fn follow(
        registry: ServiceRegistry,
        name: &str,
    ) -> Result<ServiceConnection, CoordinatorError> {
        let snapshot = registry.snapshot(name).await?;
        let (balanced, balance) = Channel::balance_channel::<String>(64);
        let instances = Arc::new(Mutex::new(BTreeMap::new()));
        for info in snapshot.services {
            insert(&instances, &balance, info);
        }
        let mut watch = registry.watch_from(name, snapshot.revision + 1);
        let shared = instances.clone();
        let follower = tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "registry watch ended");
                        return;
                    }
                };
                match event.kind {
                    EventType::Put => insert(&shared, &balance, event.service),
                    EventType::Delete if mutants::active("resolver_ignores_deletes") => {}
                    EventType::Delete => {
                        let id = event.service.id;
                        shared.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        let _ = balance.try_send(Change::Remove(id));
                    }
                }
            }
        });
        Ok(ServiceConnection {
            name: name.to_string(),
            instances,
            next: AtomicUsize::new(0),
            balanced,
            follower,
        })
    }

    /// The next instance, round-robin, with a channel to it.
    pub fn next_channel(&self) -> Result<(ServiceInfo, Channel), CoordinatorError> {
        let instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        if instances.is_empty() {
            return Err(CoordinatorError::NoInstances {
                name: self.name.clone(),
            });
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        let (info, ch) = instances.values().nth(i).expect("index within length");
        Ok((info.clone(), ch.clone()))
    }

    /// One channel balancing over every current instance (tonic's balancer).
    pub fn channel(&self) -> Channel {
        self.balanced.clone()
    }

    /// The instances currently routed to.
    pub fn instances(&self) -> Vec<ServiceInfo> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(info, _)| info.clone())
            .collect()
    }
}

impl Drop for ServiceConnection {
    fn drop(&mut self) {
        self.follower.abort();
    }
}
