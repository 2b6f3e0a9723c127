//! Synchronisation primitives whose behaviour does not depend on anything outside
//! the caller's own history (see [`watch`] for why tokio's is not used).

pub mod watch;
