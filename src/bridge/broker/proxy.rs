//! The broker as a proxy: a unary call forwarded, bytes unread, to a serving
//! instance. The simulator cannot carry it (madsim's tonic hands messages over as
//! typed values, never as bytes, so an instance's typed service cannot read a
//! pass-through payload): the proxy is exercised in real mode only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::super::state::ClusterState;

/// Bytes in, bytes out: the proxy never decodes what it forwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

// madsim's tonic has no codec traits (it hands messages over as values).
#[cfg(not(madsim))]
mod codec {
    use bytes::{Buf, BufMut, Bytes};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::Status;

    use super::PassThrough;

    impl Codec for PassThrough {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = PassThrough;
        type Decoder = PassThrough;

        fn encoder(&mut self) -> Self::Encoder {
            PassThrough
        }

        fn decoder(&mut self) -> Self::Decoder {
            PassThrough
        }
    }

    impl Encoder for PassThrough {
        type Item = Bytes;
        type Error = Status;

        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for PassThrough {
        type Item = Bytes;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }
}

/// Channels to instances, kept across calls; and where the rotation stands.
#[derive(Default)]
pub struct Forwarder {
    channels: Mutex<BTreeMap<String, Channel>>,
    next: AtomicUsize,
    /// Deadline of one forwarded attempt.
    pub timeout: Duration,
}

impl Forwarder {
    pub fn new(timeout: Duration) -> Forwarder {
        Forwarder {
            timeout,
            ..Default::default()
        }
    }

    fn channel(&self, address: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Status::failed_precondition(format!("instance address {address}: {e}")))?
            .timeout(self.timeout);
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// Forwards to the serving instances of `service` in rotation, moving on
    /// from one that cannot be reached. `registry` is read afresh before every
    /// attempt, so an instance whose shutdown notice arrived meanwhile is skipped.
    pub async fn forward(
        &self,
        registry: impl Fn() -> std::sync::Arc<ClusterState>,
        service: &str,
        method: &str,
        payload: Bytes,
    ) -> Result<(Bytes, String), Status> {
        if cfg!(madsim) {
            return Err(Status::unimplemented(
                "the proxy runs in real mode only: the simulator carries typed messages, not bytes",
            ));
        }
        let path: PathAndQuery = method.parse().map_err(|_| {
            Status::invalid_argument(format!("method `{method}` is not a gRPC path"))
        })?;
        let mut tried: Vec<String> = Vec::new();
        loop {
            let serving = registry().serving(service);
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(instance) = (0..serving.len())
                .map(|k| &serving[(start + k) % serving.len()])
                .find(|i| !tried.contains(&i.record.id))
            else {
                return Err(Status::unavailable(format!(
                    "no serving instance of `{service}` answered (tried: {})",
                    tried.join(", ")
                )));
            };
            tried.push(instance.record.id.clone());
            let channel = self.channel(&instance.record.address)?;
            let mut grpc = tonic::client::Grpc::new(channel);
            let answer = async {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                grpc.unary(Request::new(payload.clone()), path.clone(), PassThrough)
                    .await
            };
            match answer.await {
                Ok(response) => return Ok((response.into_inner(), instance.record.id.clone())),
                Err(status) if matches!(status.code(), Code::Unavailable | Code::Cancelled) => {
                    tracing::debug!(instance = %instance.record.id, error = %status, "proxy: instance unreachable, trying the next");
                }
                Err(status) => return Err(status),
            }
        }
    }
}
