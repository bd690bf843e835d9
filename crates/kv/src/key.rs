//! The store's keys: short ones held in place, longer ones shared.
//!
//! The store is an ordered map, and every lookup or insert compares the key with about a dozen
//! of those in the map on its way down. A [`Bytes`] key keeps its bytes elsewhere, so each of
//! those comparisons reads one more cache line, usually a miss: in the server, inserting a put
//! cost a leader 2 µs where the same insert in a warm benchmark loop costs a fifth of that. A
//! [`Key`] of at most [`INLINE`] bytes holds them inside itself, in the map's node, and is no
//! larger than a `Bytes` (32 bytes); longer keys stay shared as before. Keys compare as their
//! bytes do, whichever way they are held.
//!
//! Measured (`crates/skiff/benches/cpu_per_op.sh`, six rounds in two runs with the builds in
//! both orders, puts of 9-byte keys at 256 clients): the leader's CPU per put fell in five of
//! six rounds (-0.5 to -20 %), the followers' in all six (-3 to -21 %). The warm loop of
//! `cargo bench -p skiff-kv --bench apply` is 2 % slower (the key is copied in), which is
//! what the cache misses saved in a real server pay for. A short key also needs no allocation
//! of its own.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;

/// The longest key held in place.
pub(crate) const INLINE: usize = 22;

/// A key of the store.
#[derive(Clone)]
pub(crate) enum Key {
    /// At most [`INLINE`] bytes, in place: `bytes[..len]`.
    Inline {
        /// How many of `bytes` are the key's.
        len: u8,
        /// The key, then zeros.
        bytes: [u8; INLINE],
    },
    /// A longer key, shared with whoever else holds it.
    Shared(Bytes),
}

const _: () = assert!(std::mem::size_of::<Key>() == std::mem::size_of::<Bytes>());

impl Key {
    /// The key `bytes`, copied in place if short.
    pub(crate) fn new(bytes: Bytes) -> Key {
        if bytes.len() <= INLINE { Key::from_slice(&bytes) } else { Key::Shared(bytes) }
    }

    /// The key `bytes`, copied.
    pub(crate) fn from_slice(bytes: &[u8]) -> Key {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Key::Inline { len: bytes.len() as u8, bytes: inline }
        } else {
            Key::Shared(Bytes::copy_from_slice(bytes))
        }
    }

    /// The key's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Shared(bytes) => bytes,
        }
    }

    /// The key as [`Bytes`]: shared if it is, copied if held in place.
    pub(crate) fn to_bytes(&self) -> Bytes {
        match self {
            Key::Inline { .. } => Bytes::copy_from_slice(self.as_bytes()),
            Key::Shared(bytes) => bytes.clone(),
        }
    }

    /// The key's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.as_bytes().len()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Lookups by `&[u8]` (the map's `get`, `range` and `remove_with_key`): consistent with
/// [`Ord`], which compares the bytes.
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Bytes::copy_from_slice(self.as_bytes()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_as_their_bytes_however_they_are_held() {
        let short = b"key-00042".as_slice();
        let long = [b'k'; INLINE + 1];
        for bytes in [&b""[..], short, &long[..INLINE], &long[..]] {
            let key = Key::new(Bytes::copy_from_slice(bytes));
            assert_eq!(key.as_bytes(), bytes);
            assert_eq!(key.to_bytes(), bytes);
            assert_eq!(key.len(), bytes.len());
            assert_eq!(matches!(key, Key::Inline { .. }), bytes.len() <= INLINE);
        }
        // Across the two forms and a shared prefix, the order is the bytes' order.
        let mut keys: Vec<Key> = [&long[..], &long[..INLINE], b"k", b"", b"kz", b"a"]
            .into_iter()
            .map(Key::from_slice)
            .collect();
        keys.sort();
        let sorted: Vec<&[u8]> = keys.iter().map(Key::as_bytes).collect();
        let expected: Vec<&[u8]> = vec![b"", b"a", b"k", &long[..INLINE], &long[..], b"kz"];
        assert_eq!(sorted, expected);
        assert_eq!(Key::from_slice(&long), Key::new(Bytes::copy_from_slice(&long)));
        assert_ne!(Key::from_slice(b"k"), Key::from_slice(b"k\0"), "length counts, not zeros");
    }
}
