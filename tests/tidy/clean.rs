// Near misses for every rule: none of this may fire. The rules' patterns appear
// only in comments like this one (thread_rng, HashMap, std::fs, SystemTime), in
// the seeded or biased forms, or inside the test module below.
use std::collections::BTreeMap;

/// Doc comments are comments too: rand::random, Instant::now, thread::spawn.
fn seeded() -> u64 {
    madsim::rand::random()
}

async fn first(a: tokio::sync::oneshot::Receiver<()>, b: tokio::sync::oneshot::Receiver<()>) {
    tokio::select! {
        biased;
        _ = a => {}
        _ = b => {}
    }
}

fn ordered() -> BTreeMap<u64, u64> {
    BTreeMap::new()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn tests_may_use_anything() {
        let _ = std::time::Instant::now();
        let _: HashMap<u64, u64> = HashMap::new();
        let _ = std::fs::read("x");
        let _ = "a brace in a string: }";
        let _ = '}';
    }
}

fn after_the_tests() -> BTreeMap<u64, u64> {
    ordered()
}
