//! The harness's pure parts — trace and checkers — for tools that run outside the
//! simulator (`lincheck`).

#[path = "checkers/mod.rs"]
pub mod checkers;
#[path = "trace.rs"]
pub mod trace;
