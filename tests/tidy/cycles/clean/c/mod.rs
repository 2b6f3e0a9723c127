//! Re-exports its children's items, named and by glob; defines `Own` itself.

mod high;
mod low;
mod user;

pub use high::*;
pub use low::Thing;

pub struct Own;
