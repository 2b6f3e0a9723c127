use crate::{
    b::{self, g}, // EDGE a → b
    root_item,
};

pub fn f() {
    root_item();
    b::g();
    g();
}
