pub fn top() -> super::Top {
    super::Top
}

#[cfg(test)]
mod tests {
    // `super::super` is `c`, from this inline module: an edge `user → low` made in
    // test code only.
    use super::super::low::Thing;

    #[test]
    fn reaches_a_sibling() {
        let _ = Thing(crate::c::Own);
    }
}
