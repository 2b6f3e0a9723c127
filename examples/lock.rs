//! Seed 001's lock example: hold "my-resource" for a while, print its TTL.
//!
//! `cargo run --example lock` against `coordd --dev` (127.0.0.1:7101-7103), or set
//! `COORD_ENDPOINTS=host:port,...` (a real etcd works too).

use std::time::Duration;

use coordlab::library::{Coordinator, CoordinatorConfig, CoordinatorError};

fn endpoints() -> CoordinatorConfig {
    let list = std::env::var("COORD_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103".into());
    CoordinatorConfig::new(list.split(',').map(str::to_string))
}

#[tokio::main]
async fn main() -> Result<(), CoordinatorError> {
    let coordinator = Coordinator::new(endpoints()).await?;
    let lock = coordinator
        .lock()
        .acquire("my-resource", Duration::from_secs(30))
        .await?;
    let ttl = lock.remaining_ttl().await?;
    println!(
        "Lock '{}' will expire in {ttl:?} (fencing token {})",
        lock.key(),
        lock.fencing_token()
    );
    // ... work that needs mutual exclusion; pass the fencing token to the resource ...
    lock.unlock().await?;
    coordinator.close().await;
    Ok(())
}
