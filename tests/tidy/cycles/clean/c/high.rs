//! A file module with a child of its own, in `high/` (the 2018 layout).

mod detail;

use super::Thing;

pub struct Top;

pub fn thing() -> Thing {
    crate::a::f("");
    detail::own()
}
