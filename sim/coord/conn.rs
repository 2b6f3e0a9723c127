//! A client's connection to the cluster's etcd API: one endpoint at a time, picked
//! at random (any member serves any request), left for another after any failure;
//! every attempt has a deadline, since a partition can swallow an answer on a
//! connection that stays open.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::sim::world::node_addr;

pub struct EtcdConn {
    endpoints: Vec<String>,
    current: usize,
    channels: BTreeMap<String, Channel>,
    /// Deadline of one attempt.
    pub request_timeout: Duration,
}

impl EtcdConn {
    /// A connection to one of nodes `1..=nodes`, chosen at random.
    pub fn new(nodes: u64, request_timeout: Duration) -> Self {
        let endpoints: Vec<String> = (1..=nodes).map(|id| node_addr(id).to_string()).collect();
        let current = thread_rng().gen_range(0..endpoints.len());
        EtcdConn {
            endpoints,
            current,
            channels: BTreeMap::new(),
            request_timeout,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    /// Moves to another endpoint, chosen at random.
    pub fn switch_endpoint(&mut self) {
        let n = self.endpoints.len();
        if n > 1 {
            self.current = (self.current + thread_rng().gen_range(1..n)) % n;
        }
    }

    /// A channel to the current endpoint (lazily connected; deadlines are ours).
    pub fn channel(&mut self) -> Channel {
        let endpoint = self.endpoints[self.current].clone();
        let timeout = self.request_timeout;
        self.channels
            .entry(endpoint)
            .or_insert_with_key(|endpoint| {
                Endpoint::from_shared(format!("http://{endpoint}"))
                    .expect("simulated node addresses are valid URIs")
                    .connect_timeout(timeout)
                    .connect_lazy()
            })
            .clone()
    }

    /// One attempt at the current endpoint within `deadline`; a failure moves the
    /// connection to another endpoint.
    pub async fn once_within<T, F, Fut>(&mut self, deadline: Duration, call: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let result = match tokio::time::timeout(deadline, call(self.channel())).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded("attempt deadline passed")),
        };
        if result.is_err() {
            self.switch_endpoint();
        }
        result
    }

    /// One attempt within the request deadline.
    pub async fn once<T, F, Fut>(&mut self, call: F) -> Result<T, Status>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.once_within(self.request_timeout, call).await
    }

    /// A request without side effects (a read), tried on endpoint after endpoint
    /// until one answers or `total` has passed.
    pub async fn retry<T, F, Fut>(&mut self, total: Duration, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let give_up = tokio::time::Instant::now() + total;
        loop {
            let left = give_up.saturating_duration_since(tokio::time::Instant::now());
            let result = self
                .once_within(
                    self.request_timeout.min(left.max(Duration::from_millis(1))),
                    &mut call,
                )
                .await;
            match result {
                Ok(v) => return Ok(v),
                Err(e) if tokio::time::Instant::now() >= give_up => return Err(e),
                Err(_) => {
                    let backoff = thread_rng().gen_range(20..150);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
            }
        }
    }
}

/// The end of a prefix range (etcd's `range_end` for "every key starting with").
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
