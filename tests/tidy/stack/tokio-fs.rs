// Breaks `tokio-fs`: madsim-tokio's fs is real tokio and panics in the simulator.
async fn load(path: &str) -> Vec<u8> {
    tokio::fs::read(path).await.unwrap()
}
