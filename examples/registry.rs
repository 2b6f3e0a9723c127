//! Seed 001's registry example: register an instance, discover it, and call it
//! through a connection that follows the registry.
//!
//! `cargo run --example registry` against `coordd --dev`, or set `COORD_ENDPOINTS`.
//! The registered "chat-service" instance is the first coordd member itself (any
//! gRPC server would do), so the call through the connection really happens.

use std::time::Duration;

use coordlab::library::{Coordinator, CoordinatorConfig, CoordinatorError, ServiceInfo};
use coordlab::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use coordlab::proto::etcdserverpb::StatusRequest;

#[tokio::main]
async fn main() -> Result<(), CoordinatorError> {
    let list = std::env::var("COORD_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103".into());
    let config = CoordinatorConfig::new(list.split(',').map(str::to_string));
    let (host, port) = config.endpoints[0]
        .rsplit_once(':')
        .expect("endpoint is host:port");
    let coordinator = Coordinator::new(config.clone()).await?;

    let service = ServiceInfo {
        id: "chat-service-001".into(),
        name: "chat-service".into(),
        address: host.into(),
        port: port.parse().expect("numeric port"),
        ..Default::default()
    };
    coordinator
        .registry()
        .register(service.clone(), Duration::from_secs(30))
        .await?;

    let services = coordinator.registry().discover("chat-service").await?;
    println!("Found services: {services:?}");

    let conn = coordinator
        .registry()
        .get_connection("chat-service")
        .await?;
    let (instance, channel) = conn.next_channel()?;
    match MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await
    {
        Ok(r) => println!(
            "called {} at {}: it runs version {}",
            instance.id,
            instance.endpoint(),
            r.into_inner().version
        ),
        Err(e) => println!("called {}: {e}", instance.id),
    }

    coordinator.registry().unregister(&service.id).await?;
    coordinator.close().await;
    Ok(())
}
