// Breaks `cfg-madsim`: an "am I simulated?" branch outside the seams.
#[cfg(madsim)]
fn election_timeout_ms() -> u64 {
    10
}
