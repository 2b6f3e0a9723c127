/// `Own` is the parent's own item: the glob `pub use high::*` does not make it
/// `high`'s, so this is no edge `low → high`.
pub struct Thing(pub super::Own);

pub fn own() -> crate::c::Own {
    crate::c::Own
}
