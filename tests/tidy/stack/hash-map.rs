// Breaks `hash-map`: iteration order drawn at random.
use std::collections::HashMap;

fn index() -> HashMap<u64, u64> {
    Default::default()
}
