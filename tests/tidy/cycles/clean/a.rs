//! Near misses: paths to `b` that are not code.
/// Doc comments: crate::b::g() and super::b::g().
// A comment: crate::b::g();
/* A block comment: crate::b::g() /* nested */ crate::b::g() */

pub fn f<'a>(s: &'a str) -> &'a str {
    let _quote = '"';
    let _text = "crate::b::g() \" crate::b::g()";
    let _raw = r#"crate::b::g() " crate::b::g()"#;
    let _bytes = b"crate::b::g()";
    crate::root_item(); // the parent: no edge
    s
}

#[cfg(test)]
mod tests {
    // `super` here is `a`: its own module, no edge.
    use super::f;

    #[test]
    fn uses_its_parent() {
        f("");
    }
}
