pub fn g() {
    let _ = crate::a::f(); // EDGE b → a
}
