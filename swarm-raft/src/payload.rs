//! The bytes of raft entries: many store batches per entry, each tagged with the
//! member and sequence number of its proposer so that member can resolve it.
//!
//! ```text
//! normal entry data:  [1][origin u64][count u32] ( [seq u64][len u32][batch bytes] )*
//! conf change context: [1][origin u64][seq u64][address utf-8]
//! ```

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;

/// One proposed batch inside an entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tagged<'a> {
    pub seq: u64,
    pub batch: &'a [u8],
}

/// Packs `batches` (seq, encoded store batch) proposed by `origin`.
pub(crate) fn encode_entry(origin: u64, batches: &[(u64, Vec<u8>)]) -> Bytes {
    let len: usize = batches.iter().map(|(_, b)| 12 + b.len()).sum();
    let mut out = BytesMut::with_capacity(13 + len);
    out.put_u8(VERSION);
    out.put_u64_le(origin);
    out.put_u32_le(batches.len() as u32);
    for (seq, b) in batches {
        out.put_u64_le(*seq);
        out.put_u32_le(b.len() as u32);
        out.put_slice(b);
    }
    out.freeze()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
}

/// Unpacks an entry written by [`encode_entry`]: `None` if malformed.
pub(crate) fn decode_entry(data: &[u8]) -> Option<(u64, Vec<Tagged<'_>>)> {
    let mut r = Reader(data);
    if r.u8()? != VERSION {
        return None;
    }
    let origin = r.u64()?;
    let count = r.u32()? as usize;
    let mut out = Vec::with_capacity(count.min(data.len() / 12));
    for _ in 0..count {
        let seq = r.u64()?;
        let len = r.u32()? as usize;
        out.push(Tagged {
            seq,
            batch: r.take(len)?,
        });
    }
    r.0.is_empty().then_some((origin, out))
}

/// The context of a conf change: who asked, and the new member's address.
pub(crate) fn encode_conf_context(origin: u64, seq: u64, addr: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(17 + addr.len());
    out.put_u8(VERSION);
    out.put_u64_le(origin);
    out.put_u64_le(seq);
    out.put_slice(addr.as_bytes());
    out.freeze()
}

/// Unpacks a conf change context: (origin, seq, address).
pub(crate) fn decode_conf_context(data: &[u8]) -> Option<(u64, u64, String)> {
    let mut r = Reader(data);
    if r.u8()? != VERSION {
        return None;
    }
    let origin = r.u64()?;
    let seq = r.u64()?;
    let addr = String::from_utf8(r.0.to_vec()).ok()?;
    Some((origin, seq, addr))
}

/// The bytes of a raft snapshot: the address book, then the store's snapshot.
///
/// ```text
/// [1][book_len u32]["<id> <addr>\n"*][store snapshot bytes]
/// ```
pub(crate) fn encode_snapshot(peers: &BTreeMap<u64, String>, store: &[u8]) -> Vec<u8> {
    let mut book = String::new();
    for (id, addr) in peers {
        book.push_str(&format!("{id} {addr}\n"));
    }
    let mut out = Vec::with_capacity(5 + book.len() + store.len());
    out.push(VERSION);
    out.extend_from_slice(&(book.len() as u32).to_le_bytes());
    out.extend_from_slice(book.as_bytes());
    out.extend_from_slice(store);
    out
}

/// Unpacks a snapshot written by [`encode_snapshot`]: `None` if malformed.
pub(crate) fn decode_snapshot(data: &[u8]) -> Option<(BTreeMap<u64, String>, &[u8])> {
    let mut r = Reader(data);
    if r.u8()? != VERSION {
        return None;
    }
    let len = r.u32()? as usize;
    let book = std::str::from_utf8(r.take(len)?).ok()?;
    let mut peers = BTreeMap::new();
    for line in book.lines() {
        let (id, addr) = line.split_once(' ')?;
        peers.insert(id.parse().ok()?, addr.to_string());
    }
    Some((peers, r.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip() {
        let data = encode_entry(7, &[(1, vec![1, 2, 3]), (2, vec![]), (9, vec![4])]);
        let (origin, batches) = decode_entry(&data).unwrap();
        assert_eq!(origin, 7);
        assert_eq!(batches.len(), 3);
        assert_eq!(
            batches[0],
            Tagged {
                seq: 1,
                batch: &[1, 2, 3]
            }
        );
        assert_eq!(
            batches[2],
            Tagged {
                seq: 9,
                batch: &[4]
            }
        );
    }

    #[test]
    fn malformed_entries_are_refused() {
        let data = encode_entry(7, &[(1, vec![1, 2, 3])]);
        assert!(decode_entry(&data[..data.len() - 1]).is_none());
        assert!(decode_entry(&[2, 0, 0]).is_none());
        assert!(decode_entry(&[]).is_none());
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(decode_entry(&longer).is_none());
    }

    #[test]
    fn conf_context_round_trip() {
        let c = encode_conf_context(3, 44, "127.0.0.1:4000");
        assert_eq!(
            decode_conf_context(&c),
            Some((3, 44, "127.0.0.1:4000".into()))
        );
        assert!(decode_conf_context(&c[..5]).is_none());
    }

    #[test]
    fn snapshot_round_trip() {
        let peers = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string())]);
        let data = encode_snapshot(&peers, b"store");
        let (p, store) = decode_snapshot(&data).unwrap();
        assert_eq!(p, peers);
        assert_eq!(store, b"store");
        assert!(decode_snapshot(&data[..3]).is_none());
    }
}
