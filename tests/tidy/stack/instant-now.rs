// Breaks `instant-now`: reading the wall clock instead of the Clock seam.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(1)
}
