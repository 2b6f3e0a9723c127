// Breaks `tokio-watch`: which receiver wakes first depends on the process's history.
fn leader_channel() -> (tokio::sync::watch::Sender<u64>, tokio::sync::watch::Receiver<u64>) {
    tokio::sync::watch::channel(0)
}
