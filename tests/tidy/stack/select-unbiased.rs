// Breaks `select-unbiased`: tokio picks a ready branch at random.
async fn first(a: tokio::sync::oneshot::Receiver<()>, b: tokio::sync::oneshot::Receiver<()>) {
    tokio::select! {
        _ = a => {}
        _ = b => {}
    }
}
