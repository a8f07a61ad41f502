//! Object identifiers.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Length of a generated ID: 128 random bits written in base 36, zero-padded.
pub const ID_LEN: usize = 25;

/// The identifier of a stored object.
///
/// Generated IDs are 25 lowercase base-36 characters carrying 128 random bits, like
/// SwarmKit's, so IDs printed by `docker` look the same. Any non-empty string is
/// accepted as an ID (tests and benches use readable ones such as `task1`).
///
/// IDs of up to 30 bytes (every generated one) are stored inline, so cloning one
/// is a 32-byte copy with no allocation and no reference count: the store's
/// persistent maps clone keys whenever they copy a node, so this matters.
#[derive(Clone)]
pub struct Id(Repr);

const INLINE: usize = 30;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Arc<str>),
}

impl Id {
    /// A fresh random ID.
    pub fn generate() -> Id {
        let n: u128 = rand::rng().random();
        Id::from(encode_base36(n).as_str())
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, buf } => {
                // SAFETY: an inline ID is only ever built from a whole `&str`
                // (see `From<&str>`), so its bytes are valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(&buf[..*len as usize]) }
            }
            Repr::Heap(s) => s,
        }
    }

    /// Whether the ID is the empty string (an unset reference, such as a task's node
    /// before it is assigned).
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// The empty ID, used for unset references.
    pub fn empty() -> Id {
        Id(Repr::Inline {
            len: 0,
            buf: [0; INLINE],
        })
    }
}

impl Default for Id {
    fn default() -> Self {
        Id::empty()
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Id {}

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash like `str`, since maps keyed by `Id` are searched with `&str`.
        self.as_str().hash(state)
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object ID string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

fn encode_base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [b'0'; ID_LEN];
    let mut i = ID_LEN;
    while n > 0 {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    // 36^25 > 2^128, so every u128 fits in 25 digits.
    String::from_utf8(buf.to_vec()).expect("base-36 digits are ASCII")
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Id(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            Id(Repr::Heap(Arc::from(s)))
        }
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::from(s.as_str())
    }
}

impl From<&String> for Id {
    fn from(s: &String) -> Self {
        Id::from(s.as_str())
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_25_base36_chars_and_distinct() {
        let a = Id::generate();
        let b = Id::generate();
        assert_eq!(a.as_str().len(), ID_LEN);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn base36_pads_and_covers_u128() {
        assert_eq!(encode_base36(0), "0".repeat(25));
        assert_eq!(encode_base36(35), format!("{}z", "0".repeat(24)));
        assert_eq!(encode_base36(u128::MAX), "f5lxx1zz5pnorynqglhzmsp33");
    }

    #[test]
    fn long_ids_live_on_the_heap_and_behave_the_same() {
        let long = "x".repeat(64);
        let a = Id::from(long.as_str());
        assert_eq!(a.as_str(), long);
        assert_eq!(a.clone(), a);
        let (x, y) = (Id::from("a"), Id::from("b"));
        assert!(x < y && y < a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), a);
        use std::hash::{BuildHasher, RandomState};
        let h = RandomState::new();
        assert_eq!(
            h.hash_one(Id::from("abc")),
            h.hash_one("abc"),
            "hashes like str"
        );
    }

    #[test]
    fn id_compares_with_str() {
        let id = Id::from("abc");
        assert_eq!(id, "abc");
        assert_eq!(id.to_string(), "abc");
        assert!(!id.is_empty());
        assert!(Id::default().is_empty());
    }
}
