// Breaks `thread-rng`: unseeded randomness in the stack.
fn jitter_ms() -> u64 {
    use rand::Rng;
    rand::thread_rng().gen_range(0..10)
}
