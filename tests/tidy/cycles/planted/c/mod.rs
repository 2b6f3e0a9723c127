pub mod d;

pub fn e() {
    d::h();
}
