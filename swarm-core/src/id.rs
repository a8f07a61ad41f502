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
/// accepted as an ID (tests and benches use readable ones such as `task1`). Cloning
/// is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id(Arc<str>);

impl Id {
    /// A fresh random ID.
    pub fn generate() -> Id {
        let n: u128 = rand::rng().random();
        Id(encode_base36(n).into())
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the ID is the empty string (an unset reference, such as a task's node
    /// before it is assigned).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The empty ID, used for unset references.
    pub fn empty() -> Id {
        Id(Arc::from(""))
    }
}

impl Default for Id {
    fn default() -> Self {
        Id::empty()
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
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(Arc::from(s))
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id(Arc::from(s))
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
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
    fn id_compares_with_str() {
        let id = Id::from("abc");
        assert_eq!(id, "abc");
        assert_eq!(id.to_string(), "abc");
        assert!(!id.is_empty());
        assert!(Id::default().is_empty());
    }
}
