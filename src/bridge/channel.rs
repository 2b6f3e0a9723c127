//! A tonic `Channel` to a service that balances over its serving instances, kept
//! in step with a subscription's view: an instance leaves the balance as soon as
//! its shutdown notice (or its agent's going down) reaches the client, before its
//! grace period ends.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::library::balancer::{BalanceChange, Change};
use crate::sync::watch;

use super::client::{ClientView, Subscription};

pub struct ServiceChannel {
    balanced: Channel,
    routed: watch::Receiver<Vec<String>>,
    task: JoinHandle<()>,
}

impl ServiceChannel {
    /// The balanced channel (clone it for each gRPC client).
    pub fn channel(&self) -> Channel {
        self.balanced.clone()
    }

    /// The instances calls may go to, by id: updated once the balancer has been
    /// told (it applies what it was told before routing its next call).
    pub fn routed(&self) -> watch::Receiver<Vec<String>> {
        self.routed.clone()
    }
}

impl Drop for ServiceChannel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// A channel balancing over `service`'s serving instances (the subscription
    /// must include `service`).
    pub fn channel(&self, service: &str) -> ServiceChannel {
        let (balanced, balance) = Channel::balance_channel::<String>(64);
        let (publish, routed) = watch::channel(Vec::new());
        let task = tokio::spawn(follow(self.view(), service.to_string(), balance, publish));
        ServiceChannel {
            balanced,
            routed,
            task,
        }
    }
}

async fn follow(
    mut view: watch::Receiver<ClientView>,
    service: String,
    balance: mpsc::Sender<BalanceChange>,
    publish: watch::Sender<Vec<String>>,
) {
    // id → address of the instances in the balance.
    let mut routed: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let serving: BTreeMap<String, String> = view
            .borrow_and_update()
            .serving(&service)
            .into_iter()
            .map(|i| (i.instance_id.clone(), i.address.clone()))
            .collect();
        let gone: Vec<String> = routed
            .iter()
            .filter(|(id, address)| serving.get(*id) != Some(*address))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            routed.remove(&id);
            if balance.send(Change::Remove(id)).await.is_err() {
                return;
            }
        }
        for (id, address) in serving {
            if routed.contains_key(&id) {
                continue;
            }
            let Ok(endpoint) = Endpoint::from_shared(format!("http://{address}")) else {
                tracing::warn!(service, instance = %id, address, "unusable address; instance skipped");
                continue;
            };
            routed.insert(id.clone(), address);
            if balance.send(Change::Insert(id, endpoint)).await.is_err() {
                return;
            }
        }
        publish.send_replace(routed.keys().cloned().collect());
        if view.changed().await.is_err() {
            return;
        }
    }
}
