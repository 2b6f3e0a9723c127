// Breaks `thread-spawn`: an OS thread escapes the simulator.
fn background() {
    std::thread::spawn(|| loop {});
}
