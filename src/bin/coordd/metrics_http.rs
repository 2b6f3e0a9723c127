//! `coordd --metrics-listen ADDR`: the node's metrics at `GET /metrics`, in the text
//! exposition format, over plain HTTP/1.1 (hyper). Each scrape reads the node (and
//! the bridge broker, when it runs) before encoding.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use coordlab::bridge::Broker;
use coordlab::metrics::{NodeMetrics, CONTENT_TYPE};
use coordlab::server::NodeProbe;
use coordlab::sync::watch;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// How long a scrape waits for the node's Raft loop, and for the broker (which
/// asks every member, up to 500 ms each), before answering without them.
const NODE_DEADLINE: Duration = Duration::from_secs(2);
const BRIDGE_DEADLINE: Duration = Duration::from_secs(3);

/// What a scrape reads: the series, and the running node and broker once they run.
pub struct Scrape {
    pub metrics: Arc<NodeMetrics>,
    pub node: Arc<OnceLock<NodeProbe>>,
    pub broker: Option<Arc<OnceLock<Broker>>>,
}

impl Scrape {
    /// Reads the node and the broker into the series, then encodes them all. A
    /// part that does not answer in time keeps its last reading.
    async fn text(&self) -> String {
        if let Some(node) = self.node.get() {
            match tokio::time::timeout(NODE_DEADLINE, node.sample()).await {
                Ok(Ok(sample)) => self.metrics.record_node(&sample),
                Ok(Err(e)) => tracing::warn!(error = %e, "metrics: node status unavailable"),
                Err(_) => tracing::warn!("metrics: node status timed out"),
            }
        }
        if let Some(broker) = self.broker.as_ref().and_then(|b| b.get()) {
            match tokio::time::timeout(BRIDGE_DEADLINE, broker.cluster_metrics()).await {
                Ok(Ok(cluster)) => self.metrics.record_bridge(&cluster),
                Ok(Err(e)) => tracing::warn!(error = %e, "metrics: bridge status unavailable"),
                Err(_) => tracing::warn!("metrics: bridge status timed out"),
            }
        }
        self.metrics.encode()
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, content_type: &str, body: String| {
            Response::builder()
                .status(status)
                .header(hyper::header::CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(body)))
                .expect("a valid response")
        };
        let text = "text/plain; charset=utf-8";
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => reply(StatusCode::OK, CONTENT_TYPE, self.text().await),
            (_, "/metrics") => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                text,
                "only GET /metrics\n".into(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                text,
                "metrics are at /metrics\n".into(),
            ),
        }
    }
}

/// Binds `addr` (so a taken port fails coordd's start, not a later scrape).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))
}

/// Serves scrapes on `listener` until `stop`.
pub async fn serve(listener: TcpListener, scrape: Arc<Scrape>, mut stop: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let scrape = scrape.clone();
                async move { Ok::<_, Infallible>(scrape.respond(request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics: connection ended with an error");
            }
        });
    }
}
