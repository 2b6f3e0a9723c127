pub fn own() -> super::super::Thing {
    super::super::Thing(crate::c::Own)
}
