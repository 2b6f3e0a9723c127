// Breaks harness `hash-map`: iteration order drawn at random.
fn by_client() -> std::collections::HashMap<u64, Vec<u64>> {
    Default::default()
}
