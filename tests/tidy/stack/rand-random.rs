// Breaks `rand-random`: unseeded randomness in the stack.
fn coin() -> bool {
    rand::random()
}
