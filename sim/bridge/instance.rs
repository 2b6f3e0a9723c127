//! An instance of the service: a small gRPC server (coordlab's `Admin`, of which
//! only `Status` answers) that records every call reaching it and from which
//! client; once stopped it refuses them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coordlab::proto::admin_server::{Admin, AdminServer};
use coordlab::proto::{
    AddMemberRequest, MembershipResponse, RemoveMemberRequest, StatusRequest, StatusResponse,
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::context::Ctx;
use crate::sim::trace::BridgeEvent;

/// The metadata header naming the calling client.
pub const CLIENT_HEADER: &str = "x-bridge-client";

struct Recording {
    ctx: Ctx,
    node: u64,
    instance: String,
    stopped: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl Admin for Recording {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let client = request
            .metadata()
            .get(CLIENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unnamed")
            .to_string();
        let refused = self.stopped.load(Ordering::SeqCst);
        self.ctx.record(
            self.node,
            BridgeEvent::CallReceived {
                instance: self.instance.clone(),
                client,
                refused,
            },
        );
        if refused {
            return Err(Status::unavailable("the instance has stopped"));
        }
        Ok(Response::new(StatusResponse::default()))
    }

    async fn add_member(
        &self,
        _: Request<AddMemberRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        Err(Status::unimplemented("an instance serves Status only"))
    }

    async fn remove_member(
        &self,
        _: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        Err(Status::unimplemented("an instance serves Status only"))
    }
}

/// A running instance; `stop` ends its server.
pub struct Instance {
    pub id: String,
    stopped: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

impl Instance {
    pub fn start(ctx: &Ctx, node: u64, id: String, addr: SocketAddr) -> Instance {
        let (stop, shutdown) = oneshot::channel::<()>();
        let stopped = Arc::new(AtomicBool::new(false));
        let service = AdminServer::new(Recording {
            ctx: ctx.clone(),
            node,
            instance: id.clone(),
            stopped: stopped.clone(),
        });
        let served = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_shutdown(addr, async move {
                    let _ = shutdown.await;
                })
                .await;
        });
        Instance {
            id,
            stopped,
            stop: Some(stop),
            served,
        }
    }

    /// Stops the server and waits until it no longer accepts calls.
    pub async fn stop(mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.served).await;
    }
}
