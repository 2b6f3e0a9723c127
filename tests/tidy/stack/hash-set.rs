// Breaks `hash-set`: iteration order drawn at random.
fn members() -> std::collections::HashSet<u64> {
    Default::default()
}
