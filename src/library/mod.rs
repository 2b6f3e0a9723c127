//! The seed-001 client library: a `Coordinator` giving distributed locks, a service
//! registry with balanced gRPC connections, and a config center, over the etcd v3
//! API — so it works against coordd and against etcd itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coordlab::library::CoordinatorError> {
//! use std::time::Duration;
//! use coordlab::library::{Coordinator, CoordinatorConfig};
//!
//! let coordinator = Coordinator::new(CoordinatorConfig::new(["127.0.0.1:7101"])).await?;
//! let lock = coordinator.lock().acquire("my-resource", Duration::from_secs(30)).await?;
//! println!("holding {} with fencing token {}", lock.key(), lock.fencing_token());
//! lock.unlock().await?;
//! coordinator.close().await;
//! # Ok(()) }
//! ```

pub(crate) mod balancer;
mod config_center;
mod error;
mod lease;
mod lock;
mod options;
mod registry;
mod watch;

use std::sync::Arc;

pub use crate::client::{
    attach_write_id, is_retryable, ClientError, Connection, RetryConfig, WriteId,
};
pub use balancer::ServiceConnection;
pub use config_center::{ConfigCenter, ConfigEvent, ConfigWatcher};
pub use error::CoordinatorError;
pub use lease::{renew_once, KeptLease, Renewal};
pub use lock::{DistributedLock, LockGuard};
pub use options::CoordinatorConfig;
pub use registry::{
    service_prefix, EventType, ServiceEvent, ServiceInfo, ServiceRegistry, ServiceWatch,
};
pub use watch::{KeyEvent, ResumableWatch, Resumes};

/// Seed 001's `Provider`: the entry point to locks, registry and config.
pub struct Coordinator {
    conn: Arc<Connection>,
    lock: DistributedLock,
    registry: ServiceRegistry,
    config: ConfigCenter,
}

impl Coordinator {
    /// Connects (and authenticates, with credentials) to the cluster.
    pub async fn new(config: CoordinatorConfig) -> Result<Coordinator, CoordinatorError> {
        let conn = Arc::new(Connection::connect(config.connection_config()).await?);
        Ok(Coordinator {
            lock: DistributedLock::new(conn.clone()),
            registry: ServiceRegistry::new(conn.clone()),
            config: ConfigCenter::new(conn.clone()),
            conn,
        })
    }

    /// `localhost:2379` with seed 001's defaults.
    pub async fn new_default() -> Result<Coordinator, CoordinatorError> {
        Coordinator::new(CoordinatorConfig::default()).await
    }

    pub fn lock(&self) -> &DistributedLock {
        &self.lock
    }

    pub fn registry(&self) -> &ServiceRegistry {
        &self.registry
    }

    pub fn config(&self) -> &ConfigCenter {
        &self.config
    }

    /// The underlying connection (for raw etcd API calls).
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// Unregisters this coordinator's services and closes the connection; later
    /// calls fail with `Closed`.
    pub async fn close(&self) {
        self.registry.unregister_all().await;
        self.conn.close();
    }
}
