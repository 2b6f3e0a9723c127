// Breaks `std-fs`: the disk without the Disk seam.
fn load(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
