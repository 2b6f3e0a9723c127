//! The single-process implementations (the seed's NoOp/Local ones, made to keep the
//! same contracts the Raft implementations keep, so code tested against these
//! behaves the same in a cluster).

mod consensus;
mod events;
mod lock;
mod nodes;
mod sync;

pub use consensus::NoOpConsensus;
pub use events::LocalEventBus;
pub use lock::LocalDistributedLock;
pub use nodes::LocalNodeManager;
pub use sync::LocalStateSynchronizer;
