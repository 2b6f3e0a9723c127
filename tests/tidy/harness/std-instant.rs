// Breaks harness `std-instant`: wall time where virtual time is meant.
fn elapsed_ms(start: std::time::Instant) -> u128 {
    start.elapsed().as_millis()
}
