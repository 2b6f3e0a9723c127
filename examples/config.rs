//! Seed 001's config-center example: set, get (typed), list.
//!
//! `cargo run --example config` against `coordd --dev`, or set `COORD_ENDPOINTS`.

use coordlab::library::{Coordinator, CoordinatorConfig, CoordinatorError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct AppConfig {
    name: String,
    port: u16,
    enabled: bool,
}

#[tokio::main]
async fn main() -> Result<(), CoordinatorError> {
    let list = std::env::var("COORD_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103".into());
    let coordinator =
        Coordinator::new(CoordinatorConfig::new(list.split(',').map(str::to_string))).await?;

    let app_config = AppConfig {
        name: "gochat".into(),
        port: 8080,
        enabled: true,
    };
    coordinator.config().set("app/config", &app_config).await?;

    let retrieved: AppConfig = coordinator.config().get("app/config").await?;
    println!("Retrieved config: {retrieved:?}");

    let keys = coordinator.config().list("app/").await?;
    println!("Keys under 'app/': {keys:?}");

    coordinator.close().await;
    Ok(())
}
