//! A small client of coordd's etcd v3 API (any etcd v3 server works too), used by
//! `coordctl`'s kv / watch / lease / lock commands: every member serves every
//! request, so a failing or unreachable endpoint just moves it to the next one, with
//! exponential backoff, until the overall deadline. With credentials it
//! authenticates first and carries the token in each request's metadata.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::ClientError;
use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::AuthenticateRequest;

#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// `(user, password)` when the cluster has auth enabled.
    pub credentials: Option<(String, String)>,
    /// Deadline of one attempt on one endpoint.
    pub attempt_timeout: Duration,
    /// Deadline of a whole call, retries included.
    pub total_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            credentials: None,
            attempt_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
        }
    }
}

pub struct EtcdClient {
    config: EtcdConfig,
    current: usize,
    channels: BTreeMap<String, Channel>,
    token: Option<MetadataValue<Ascii>>,
}

/// Whether trying another member (or the same one later) may succeed.
pub fn is_retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    ) || s.message() == "etcdserver: not leader"
}

impl EtcdClient {
    pub async fn connect(config: EtcdConfig) -> Result<Self, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let mut client = EtcdClient {
            config,
            current: 0,
            channels: BTreeMap::new(),
            token: None,
        };
        for e in client.config.endpoints.clone() {
            client.channel_to(&e)?;
        }
        if client.config.credentials.is_some() {
            client.authenticate().await?;
        }
        Ok(client)
    }

    fn channel_to(&mut self, endpoint: &str) -> Result<Channel, ClientError> {
        if let Some(c) = self.channels.get(endpoint) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| ClientError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.config.attempt_timeout)
            .connect_lazy();
        self.channels.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// A channel to the endpoint currently in use (for streams).
    pub fn channel(&mut self) -> Channel {
        let e = self.config.endpoints[self.current].clone();
        self.channel_to(&e).expect("endpoints were validated")
    }

    /// Moves to the next endpoint (after a stream broke).
    pub fn rotate(&mut self) {
        self.current = (self.current + 1) % self.config.endpoints.len();
    }

    /// Wraps a message with the auth token, if any.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(t) = &self.token {
            r.metadata_mut()
                .insert(crate::coord::service::TOKEN_KEY, t.clone());
        }
        r
    }

    async fn authenticate(&mut self) -> Result<(), ClientError> {
        let Some((name, password)) = self.config.credentials.clone() else {
            return Ok(());
        };
        let resp = self
            .call(|ch, _| {
                let req = AuthenticateRequest {
                    name: name.clone(),
                    password: password.clone(),
                };
                async move { AuthClient::new(ch).authenticate(req).await }
            })
            .await?;
        let token = resp.into_inner().token;
        self.token = Some(token.parse().map_err(|_| ClientError::Rejected {
            endpoint: self.config.endpoints[self.current].clone(),
            code: Code::Internal,
            message: "the server's token is not ASCII".into(),
        })?);
        Ok(())
    }

    /// Runs one unary call, moving between endpoints on retryable failures.
    pub async fn call<T, F, Fut>(&mut self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel, &Self) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.total_timeout;
        let mut backoff = Duration::from_millis(50);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let endpoint = self.config.endpoints[self.current].clone();
            let channel = self.channel();
            let attempt = tokio::time::timeout(self.config.attempt_timeout, f(channel, self)).await;
            let last = match attempt {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) if !is_retryable(&s) => {
                    return Err(ClientError::Rejected {
                        endpoint,
                        code: s.code(),
                        message: s.message().to_string(),
                    })
                }
                Ok(Err(s)) => format!("{endpoint}: {}", s.message()),
                Err(_) => format!("{endpoint}: attempt timed out"),
            };
            self.rotate();
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(ClientError::Exhausted {
                    attempts,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
