/// Two levels up, then down into a sibling of `c`: the edge `c → b`.
pub fn h() {
    super::super::b::g();
}
