//! A leader-following client of coordlab's own services: `coordlab.Admin` (node
//! status, membership changes by id) here, and the coo (`mq::client::CooClient`)
//! on its `call_with`. The etcd keyspace has its client in `library::Connection`.
//!
//! Requests go to the preferred endpoint; a "not leader" answer moves the client to
//! the leader it names, and an unreachable or failing node moves it to the next
//! endpoint, with exponential backoff, until the overall deadline passes.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use crate::proto::admin_client::AdminClient as AdminRpc;
use crate::proto::{
    AddMemberRequest, MembershipResponse, RemoveMemberRequest, StatusRequest, StatusResponse,
};
use crate::raft::rpc_status::leader_hint;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The cluster answered with an error that retrying cannot fix.
    #[error("{endpoint}: {code:?}: {message}")]
    Rejected {
        endpoint: String,
        code: Code,
        message: String,
    },
    /// No endpoint served the request before the deadline.
    #[error("gave up after {attempts} attempts in {elapsed_ms} ms; last error: {last}")]
    Exhausted {
        attempts: u32,
        elapsed_ms: u64,
        last: String,
    },
}

impl ClientError {
    /// The gRPC code of a rejection, if that is what this is.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Timeouts and retry policy.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoints: Vec<String>,
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
    /// Deadline of the whole request, retries included.
    pub total_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl ClientConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        ClientConfig {
            endpoints,
            attempt_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// A leader-following client of `coordlab.Admin` (and, through `call_with`, of any
/// coordlab service that answers on the leader).
pub struct AdminClient {
    config: ClientConfig,
    endpoints: Vec<String>,
    preferred: usize,
    channels: HashMap<String, Channel>,
}

fn retryable(code: Code) -> bool {
    // FAILED_PRECONDITION is "not leader": another node can serve it.
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Unknown
            | Code::Cancelled
            | Code::FailedPrecondition
    )
}

impl AdminClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        for endpoint in &config.endpoints {
            Endpoint::from_shared(format!("http://{endpoint}")).map_err(|e| {
                ClientError::InvalidEndpoint {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
        Ok(AdminClient {
            endpoints: config.endpoints.clone(),
            config,
            preferred: 0,
            channels: HashMap::new(),
        })
    }

    /// The endpoint the next request goes to first.
    pub fn preferred_endpoint(&self) -> &str {
        &self.endpoints[self.preferred]
    }

    fn channel(&mut self, endpoint: &str) -> Result<Channel, ClientError> {
        if let Some(channel) = self.channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| ClientError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.config.attempt_timeout)
            .timeout(self.config.attempt_timeout)
            .connect_lazy();
        self.channels.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    fn prefer(&mut self, addr: &str) {
        match self.endpoints.iter().position(|e| e == addr) {
            Some(i) => self.preferred = i,
            None => {
                self.endpoints.push(addr.to_string());
                self.preferred = self.endpoints.len() - 1;
            }
        }
    }

    /// Runs `op` against the leader, following redirects and retrying failures.
    async fn call<T, F, Fut>(&mut self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut(AdminRpc<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call_with(|channel| op(AdminRpc::new(channel))).await
    }

    /// Runs `op` once against `endpoint`, with no leader following or retry.
    pub async fn call_once_at<T, F, Fut>(&mut self, endpoint: &str, op: F) -> Result<T, ClientError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let channel = self.channel(endpoint)?;
        let rejected = |code: Code, message: String| ClientError::Rejected {
            endpoint: endpoint.to_string(),
            code,
            message,
        };
        match tokio::time::timeout(self.config.attempt_timeout, op(channel)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(rejected(status.code(), status.message().to_string())),
            Err(_) => Err(rejected(
                Code::DeadlineExceeded,
                "attempt deadline passed".into(),
            )),
        }
    }

    /// Runs `op` — any gRPC call built on a channel — against the leader, following
    /// "not leader" hints and retrying failures on other endpoints with backoff.
    pub async fn call_with<T, F, Fut>(&mut self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let started = tokio::time::Instant::now();
        let mut backoff = self.config.backoff_min;
        let mut attempts = 0;
        let mut last = String::new();
        let mut followed_hint = false;
        while started.elapsed() < self.config.total_timeout {
            attempts += 1;
            let endpoint = self.endpoints[self.preferred].clone();
            let channel = self.channel(&endpoint)?;
            let outcome = tokio::time::timeout(self.config.attempt_timeout, op(channel)).await;
            let status = match outcome {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("attempt deadline passed"),
            };
            last = format!("{endpoint}: {:?}: {}", status.code(), status.message());
            if !retryable(status.code()) {
                return Err(ClientError::Rejected {
                    endpoint,
                    code: status.code(),
                    message: status.message().to_string(),
                });
            }
            match leader_hint(&status) {
                // Go straight to the named leader once; sleep if it bounces us again.
                Some((_, Some(addr))) if !followed_hint && addr != endpoint => {
                    self.prefer(&addr);
                    followed_hint = true;
                    continue;
                }
                _ => {
                    self.channels.remove(&endpoint);
                    self.preferred = (self.preferred + 1) % self.endpoints.len();
                    followed_hint = false;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
        Err(ClientError::Exhausted {
            attempts,
            elapsed_ms: started.elapsed().as_millis() as u64,
            last,
        })
    }

    /// Status of the preferred endpoint's node (no leader following).
    pub async fn status_of(&mut self, endpoint: &str) -> Result<StatusResponse, ClientError> {
        let mut client = AdminRpc::new(self.channel(endpoint)?);
        match tokio::time::timeout(self.config.attempt_timeout, client.status(StatusRequest {}))
            .await
        {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(ClientError::Rejected {
                endpoint: endpoint.to_string(),
                code: status.code(),
                message: status.message().to_string(),
            }),
            Err(_) => Err(ClientError::Rejected {
                endpoint: endpoint.to_string(),
                code: Code::DeadlineExceeded,
                message: "status timed out".into(),
            }),
        }
    }

    /// Status of the leader (asks any node, then the leader it names).
    pub async fn leader_status(&mut self) -> Result<StatusResponse, ClientError> {
        let started = tokio::time::Instant::now();
        let mut last = String::new();
        for _ in 0..2 {
            for i in 0..self.endpoints.len() {
                let endpoint = self.endpoints[(self.preferred + i) % self.endpoints.len()].clone();
                match self.status_of(&endpoint).await {
                    Ok(s) if s.leader_id == s.id => return Ok(s),
                    Ok(s) => {
                        if let Some(m) = s.members.iter().find(|m| m.id == s.leader_id) {
                            if let Ok(leader) = self.status_of(&m.addr.clone()).await {
                                if leader.leader_id == leader.id {
                                    self.prefer(&m.addr);
                                    return Ok(leader);
                                }
                            }
                        }
                        last = format!("{endpoint}: leader {} not reachable", s.leader_id);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(self.config.backoff_max).await;
        }
        Err(ClientError::Exhausted {
            attempts: 2 * self.endpoints.len() as u32,
            elapsed_ms: started.elapsed().as_millis() as u64,
            last,
        })
    }

    pub async fn add_member(
        &mut self,
        id: u64,
        addr: &str,
    ) -> Result<MembershipResponse, ClientError> {
        let req = AddMemberRequest {
            id,
            addr: addr.to_string(),
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.add_member(req).await }
        })
        .await
    }

    pub async fn remove_member(&mut self, id: u64) -> Result<MembershipResponse, ClientError> {
        self.call(|mut c| async move { c.remove_member(RemoveMemberRequest { id }).await })
            .await
    }
}
