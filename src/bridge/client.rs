//! A discovery client (the seed's `discovery.NewClient` with its `FailoverConfig`):
//! asks any broker, follows the services it subscribed to, and when its broker
//! dies moves to another and resynchronises — a new subscription starts with every
//! subscribed service's instances as of now, so nothing that changed meanwhile is
//! lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::debug;

use crate::proto::linkbridge::{
    bridge_client::BridgeClient, AlternativesRequest, DiscoverRequest, Instance, InstanceStatus,
    SubscribeRequest,
};
use crate::sync::watch;

use super::error::BridgeError;

/// The seed's `FailoverConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverConfig {
    /// Wait between two attempts.
    pub retry_interval: Duration,
    /// Attempts after the first before a call gives up (and a subscription, unless
    /// `continuous_retry`).
    pub max_retries: u32,
    /// Move to the next broker after a failure; otherwise retry the same one.
    pub enable_auto_failover: bool,
    /// A subscription keeps trying every broker for as long as it lives.
    pub continuous_retry: bool,
}

impl Default for FailoverConfig {
    /// The seed's example: one second, three retries, failover on, keep trying.
    fn default() -> Self {
        FailoverConfig {
            retry_interval: Duration::from_secs(1),
            max_retries: 3,
            enable_auto_failover: true,
            continuous_retry: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Names the client in brokers' local state.
    pub client_id: String,
    /// The seed's `BrokerAddresses` (`host:port`).
    pub broker_addresses: Vec<String>,
    pub failover: FailoverConfig,
    /// Deadline of one attempt.
    pub timeout: Duration,
}

/// What a subscription knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientView {
    /// The broker the subscription is on, while it is on one.
    pub broker: Option<String>,
    /// Subscriptions opened so far (more than one: it failed over).
    pub subscriptions: u64,
    /// Each subscribed service's instances, as its broker last pushed them.
    pub services: BTreeMap<String, Vec<Instance>>,
    /// The registry revision each service's instances are as of.
    pub revisions: BTreeMap<String, i64>,
    /// Set when a subscription without `continuous_retry` ran out of retries.
    pub gave_up: bool,
}

impl ClientView {
    /// The instances of `service` a call may go to now.
    pub fn serving(&self, service: &str) -> Vec<&Instance> {
        self.services
            .get(service)
            .map(|all| {
                all.iter()
                    .filter(|i| i.status == InstanceStatus::Serving as i32)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct DiscoveryClient {
    config: Arc<ClientConfig>,
    /// Index of the broker calls go to.
    current: Arc<AtomicUsize>,
}

pub struct Subscription {
    view: watch::Receiver<ClientView>,
    task: JoinHandle<()>,
}

impl Subscription {
    pub fn view(&self) -> watch::Receiver<ClientView> {
        self.view.clone()
    }

    pub fn current(&self) -> ClientView {
        self.view.borrow().clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DiscoveryClient {
    pub fn new(config: ClientConfig) -> Result<DiscoveryClient, BridgeError> {
        if config.broker_addresses.is_empty() {
            return Err(BridgeError::Protocol(
                "a client needs at least one broker address",
            ));
        }
        Ok(DiscoveryClient {
            config: Arc::new(config),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Every instance of `service` (any status).
    pub async fn discover(&self, service: &str) -> Result<Vec<Instance>, BridgeError> {
        let request = DiscoverRequest {
            service: service.into(),
        };
        self.call(|mut client| {
            let request = request.clone();
            async move { client.discover(request).await }
        })
        .await
        .map(|r| r.instances)
    }

    /// The serving instances of `service` other than `leaving`.
    pub async fn alternatives(
        &self,
        service: &str,
        leaving: &str,
    ) -> Result<Vec<Instance>, BridgeError> {
        let request = AlternativesRequest {
            service: service.into(),
            leaving_instance_id: leaving.into(),
        };
        self.call(|mut client| {
            let request = request.clone();
            async move { client.alternatives(request).await }
        })
        .await
        .map(|r| r.instances)
    }

    /// Follows `services` from a broker, failing over as configured.
    pub fn subscribe(&self, services: Vec<String>) -> Subscription {
        let (publish, view) = watch::channel(ClientView::default());
        let task = tokio::spawn(follow(self.clone(), services, publish));
        Subscription { view, task }
    }

    /// Calls a broker; on a broker that cannot answer, retries (on the next broker
    /// with auto failover) up to `max_retries` times.
    async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, BridgeError>
    where
        F: FnMut(BridgeClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let failover = &self.config.failover;
        let mut last = String::new();
        for attempt in 0..=failover.max_retries {
            if attempt > 0 {
                tokio::time::sleep(failover.retry_interval).await;
            }
            let addr = self.broker();
            let answer = match self.connect(&addr).await {
                Some(client) => tokio::time::timeout(self.config.timeout, f(client))
                    .await
                    .unwrap_or_else(|_| Err(Status::deadline_exceeded("broker did not answer"))),
                None => Err(Status::unavailable(format!("cannot connect to {addr}"))),
            };
            match answer {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if is_broker_down(&status) => {
                    debug!(broker = %addr, error = %status, "broker failed; retrying");
                    last = format!("{addr}: {}", status.message());
                    self.fail_over();
                }
                Err(status) => return Err(BridgeError::Refused(status.message().to_string())),
            }
        }
        Err(BridgeError::Cluster(format!(
            "no broker answered after {} attempts (last: {last})",
            failover.max_retries + 1
        )))
    }

    fn broker(&self) -> String {
        let brokers = &self.config.broker_addresses;
        brokers[self.current.load(Ordering::SeqCst) % brokers.len()].clone()
    }

    fn fail_over(&self) {
        if self.config.failover.enable_auto_failover {
            self.current.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn connect(&self, addr: &str) -> Option<BridgeClient<Channel>> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
        let channel = tokio::time::timeout(self.config.timeout, endpoint.connect())
            .await
            .ok()?
            .ok()?;
        Some(BridgeClient::new(channel))
    }
}

fn modify(publish: &watch::Sender<ClientView>, change: impl FnOnce(&mut ClientView)) {
    publish.send_if_modified(|view| {
        change(view);
        true
    });
}

fn is_broker_down(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

async fn follow(
    client: DiscoveryClient,
    services: Vec<String>,
    publish: watch::Sender<ClientView>,
) {
    let failover = client.config.failover.clone();
    let mut failures = 0u32;
    let mut leaving = false;
    loop {
        let addr = client.broker();
        if let Some(mut broker) = client.connect(&addr).await {
            let request = SubscribeRequest {
                services: services.clone(),
                client_id: client.config.client_id.clone(),
            };
            if let Ok(Ok(stream)) =
                tokio::time::timeout(client.config.timeout, broker.subscribe(request)).await
            {
                let mut stream = stream.into_inner();
                modify(&publish, |v| {
                    v.broker = Some(addr.clone());
                    v.subscriptions += 1;
                });
                while let Ok(Some(update)) = stream.message().await {
                    failures = 0;
                    if update.broker_leaving {
                        leaving = true;
                        break;
                    }
                    modify(&publish, |v| {
                        v.revisions.insert(update.service.clone(), update.revision);
                        v.services.insert(update.service, update.instances);
                    });
                }
            }
        }
        modify(&publish, |v| v.broker = None);
        if std::mem::take(&mut leaving) {
            // Told by a broker that shuts down: straight to the next one.
            debug!(broker = %addr, "broker leaving; moving on");
            client.current.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        debug!(broker = %addr, "subscription lost");
        failures += 1;
        if !failover.continuous_retry && failures > failover.max_retries {
            modify(&publish, |v| v.gave_up = true);
            return;
        }
        client.fail_over();
        tokio::time::sleep(failover.retry_interval).await;
    }
}
