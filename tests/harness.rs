//! The harness's pure parts in the normal build: the trace, every invariant checker
//! (each fed hand-made bad histories by its unit tests) and scenario validation.

#[allow(dead_code)]
#[path = "../sim/mod.rs"]
mod sim;
