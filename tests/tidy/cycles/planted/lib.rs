//! A planted cycle: `a` uses `b` (nested brace `use`), `b` uses `a` (inline path).
//! `c → b` is an edge too, but no cycle runs through `c`.

mod a;
mod b;
mod c;

pub fn root_item() {}
