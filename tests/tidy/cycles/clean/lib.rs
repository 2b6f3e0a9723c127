//! No cycle: `b → a`, `b → c`, `c → a`; under `c`, `user → high → low`.

mod a;
mod b;
mod c;

pub fn root_item() {}
