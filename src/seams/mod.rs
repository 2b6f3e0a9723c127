//! The seams between the real and the simulated world.
//!
//! Every piece of the stack reaches the outside world only through these traits, each
//! with one real implementation here and one simulated implementation in the harness
//! (`sim/`): [`disk::Disk`] for persistence, [`clock::Clock`] for time,
//! [`observer::Observer`] for what the checkers need to see, and
//! [`transport::Transport`] for Raft messages (the real one is gRPC in
//! [`crate::transport`], which madsim-tonic simulates; the harness adds link faults).
//! [`mutants`] holds the catalog of deliberately injected bugs, compiled only into
//! simulation builds.

pub mod clock;
pub mod disk;
pub mod mutants;
pub mod observer;
pub mod transport;
