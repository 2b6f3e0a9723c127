use crate::{a, c::{self, Top}};

pub fn g() -> Top {
    a::f("");
    c::Own;
    Top
}
