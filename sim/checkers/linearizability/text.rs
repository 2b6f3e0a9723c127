//! A string built by puts and appends, as the key/value model's state: each append
//! adds a node pointing at the string it extends, so a step costs the appended
//! piece, not the whole string (Porcupine's histories append to one key thousands
//! of times). Equal strings are equal values however they were built; the hash is
//! a polynomial over the bytes, kept incrementally.

use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// The polynomial hash's base (odd, so multiplication is invertible mod 2^64).
const BASE: u64 = 0x100_0000_01b3;

fn extend_hash(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = hash.wrapping_mul(BASE).wrapping_add(u64::from(b) + 1);
    }
    hash
}

struct Node {
    /// The string this one extends (None: it starts here, after a put).
    parent: Option<Rc<Node>>,
    piece: Box<str>,
    len: usize,
    hash: u64,
}

impl Drop for Node {
    /// Frees a long chain without recursing down it.
    fn drop(&mut self) {
        let mut parent = self.parent.take();
        while let Some(node) = parent {
            match Rc::try_unwrap(node) {
                Ok(mut node) => parent = node.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// A string value. Cheap to clone and to extend.
#[derive(Clone, Default)]
pub struct Text(Option<Rc<Node>>);

impl Text {
    /// The string `value`, on its own.
    pub fn new(value: &str) -> Self {
        Text(None).append(value)
    }

    /// This string followed by `piece`.
    pub fn append(&self, piece: &str) -> Self {
        if piece.is_empty() {
            return self.clone();
        }
        Text(Some(Rc::new(Node {
            parent: self.0.clone(),
            piece: piece.into(),
            len: self.len() + piece.len(),
            hash: extend_hash(self.content_hash(), piece.as_bytes()),
        })))
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |n| n.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn content_hash(&self) -> u64 {
        self.0.as_ref().map_or(0, |n| n.hash)
    }

    /// The pieces, last first.
    fn pieces_backwards(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = self.0.as_deref();
        std::iter::from_fn(move || {
            let node = at?;
            at = node.parent.as_deref();
            Some(node.piece.as_bytes())
        })
    }

    /// Whether `s` starts with this string (compared from the end, where two
    /// candidate strings usually differ).
    pub fn is_prefix_of(&self, s: &str) -> bool {
        let s = s.as_bytes();
        if self.len() > s.len() {
            return false;
        }
        let mut end = self.len();
        for piece in self.pieces_backwards() {
            if s[end - piece.len()..end] != *piece {
                return false;
            }
            end -= piece.len();
        }
        true
    }

    /// Whether this string is `s`.
    pub fn equals(&self, s: &str) -> bool {
        self.len() == s.len() && self.is_prefix_of(s)
    }

    /// The string, for reports.
    pub fn to_string_lossy(&self) -> String {
        let mut pieces: Vec<&[u8]> = self.pieces_backwards().collect();
        pieces.reverse();
        String::from_utf8_lossy(&pieces.concat()).into_owned()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Rc::ptr_eq(a, b) => true,
            _ if self.len() != other.len() || self.content_hash() != other.content_hash() => false,
            // Same length and hash: compare the bytes, from the end.
            _ => {
                let mut a = self.pieces_backwards().flat_map(|p| p.iter().rev());
                let mut b = other.pieces_backwards().flat_map(|p| p.iter().rev());
                loop {
                    match (a.next(), b.next()) {
                        (None, None) => return true,
                        (x, y) if x != y => return false,
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Eq for Text {}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.content_hash());
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_equal_by_content_however_built() {
        let a = Text::default().append("ab").append("c");
        let b = Text::new("a").append("").append("bc");
        assert_eq!(a, b);
        let mut hasher = std::hash::DefaultHasher::new();
        a.hash(&mut hasher);
        let ha = hasher.finish();
        let mut hasher = std::hash::DefaultHasher::new();
        b.hash(&mut hasher);
        assert_eq!(ha, hasher.finish());
        assert_ne!(a, Text::new("abd"));
        assert_ne!(a, Text::new("ab"));
        assert!(a.equals("abc") && !a.equals("abcd") && !a.equals("xbc"));
        assert!(a.is_prefix_of("abcd") && a.is_prefix_of("abc") && !a.is_prefix_of("abd"));
        assert!(Text::default().is_prefix_of("") && Text::default().equals(""));
        assert_eq!(a.to_string_lossy(), "abc");
    }

    #[test]
    fn a_long_chain_drops_without_recursion() {
        let mut t = Text::default();
        for _ in 0..1_000_000 {
            t = t.append("x");
        }
        assert_eq!(t.len(), 1_000_000);
        drop(t);
    }
}
