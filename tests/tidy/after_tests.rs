// A test module whose braces hide in strings, characters, raw strings and
// comments; the scan must find where it really ends and check what follows.
fn before() {}

#[cfg(test)]
mod tests {
    // An unbalanced brace in a comment: {
    /* and in a block comment: { { */
    #[test]
    fn braces_that_do_not_count() {
        let _ = "}}}";
        let _ = r#"}"#;
        let _ = '{';
        let _ = '\'';
        let _ = std::thread::spawn(|| {});
    }
}

// AFTER THE TEST MODULE: the next line breaks `thread-spawn`.
fn after() { std::thread::spawn(|| {}); }

#[cfg(test)]
#[path = "elsewhere.rs"]
mod more_tests;

fn clean_again() {}
