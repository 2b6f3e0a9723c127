// Breaks harness `thread-rng`: the real thread_rng, not madsim's seeded one.
fn pause_ms() -> u64 {
    use rand::Rng;
    rand::thread_rng().gen_range(1..5)
}
