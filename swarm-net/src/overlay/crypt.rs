//! The encrypted data path's wire format and cryptography, without IO: key rings,
//! sealing and opening of frames, the replay window, and the ARP proxy.
//!
//! A *message* is what the TAP device gives: a 10-byte virtio-net header (checksum and
//! segmentation offload data) and an Ethernet frame, which may be a TCP "super-frame" of up
//! to 64 KiB that the receiving kernel segments. It travels in 1 to [`MAX_FRAGMENTS`]
//! datagrams (UDP payloads), each a piece of it sealed on its own:
//!
//! ```text
//!  0       1            4         8               16               24    25    26   28
//! +-------+------------+---------+---------------+----------------+-----+-----+----+--------------+-----+
//! | ver 1 | VNI 24 bit | key id  | salt (64 bit) | counter 64 bit | idx | cnt | 0  | piece sealed | tag |
//! +-------+------------+---------+---------------+----------------+-----+-----+----+--------------+-----+
//! ```
//!
//! * The pieces of one message have consecutive counters (`counter - idx` is the
//!   message's first) and are reassembled in order; a message with a piece missing or out
//!   of order is dropped whole (TCP retransmits it).
//! * The cipher is AES-256-GCM (ring); the 28-byte header is the associated data, so the
//!   VNI, the key id, the salt, the counter and the piece's place are authenticated with
//!   it.
//! * The sender of a key ring's primary key picks a random 64-bit *salt* when the ring is
//!   installed, and derives its own AES key from the network key with HKDF-SHA256 (salt,
//!   and the VNI in the info). Its 96-bit nonce is the salt's low 32 bits followed by a
//!   64-bit counter that starts at 0 and only grows. Every ring (every
//!   [`Overlay::set_keys`](super::Overlay::set_keys), every restart) draws a fresh salt,
//!   so a nonce is never used twice under one derived key: two senders (or two rings of
//!   one sender) share a derived key only if they drew the same 64-bit salt.
//! * The *key id* is the first 4 bytes of SHA-256 of the key: the receiver finds the key
//!   among the (up to 3) of its ring without trying each.
//! * A receiver keeps, per (key id, salt), the derived key and a replay window of
//!   [`REPLAY_WINDOW`] counters, as ESP does (RFC 4303 §3.4.3): a counter seen before or
//!   older than the window is dropped. The window only moves after the frame
//!   authenticated.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};

use super::OverlayError;

/// Version byte of the format above.
pub(crate) const VERSION: u8 = 1;
/// Bytes of the header (the associated data).
pub(crate) const HEADER_LEN: usize = 28;
/// Bytes of the virtio-net header before each frame of a TAP device with `IFF_VNET_HDR`.
pub(crate) const VNET_HDR_LEN: usize = 10;
/// Most datagrams of one message.
pub(crate) const MAX_FRAGMENTS: usize = 64;
/// Longest message: the virtio-net header, an Ethernet header with a VLAN tag, 64 KiB.
pub(crate) const MAX_MESSAGE: usize = VNET_HDR_LEN + 18 + 65_535;
/// Bytes of the GCM tag after the sealed frame.
pub(crate) const TAG_LEN: usize = 16;
/// How many bytes an encrypted datagram adds to the frame it carries.
pub(crate) const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// How much smaller than a VXLAN network's MTU an encrypted network's MTU is: the
/// 8-byte VXLAN header becomes the 44 bytes of header and tag plus the 10 of the
/// virtio-net header, so that a full-size frame is one datagram.
pub const ENCRYPTION_MTU_COST: u32 = (OVERHEAD + VNET_HDR_LEN - 8) as u32;
/// Most keys a network's key ring holds (as Docker: the current one, the next one and
/// the previous one).
pub const MAX_KEYS: usize = 3;
/// Fewest bytes of a network key.
pub const MIN_KEY_LEN: usize = 16;
/// Most bytes of a network key.
pub const MAX_KEY_LEN: usize = 64;
/// How many counters behind the highest seen one a receiver still accepts (once each).
pub const REPLAY_WINDOW: u64 = 128;
/// Most (key, sender) sessions a receiver keeps per network; the least recently used one
/// makes room.
pub(crate) const MAX_SESSIONS: usize = 1024;

const INFO: &[u8] = b"swarm overlay v1 aes-256-gcm";

/// The header of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) vni: u32,
    pub(crate) key_id: u32,
    pub(crate) salt: u64,
    pub(crate) counter: u64,
    /// This piece's place in its message, from 0.
    pub(crate) index: u8,
    /// How many pieces the message has (at least 1).
    pub(crate) count: u8,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = VERSION;
        h[1..4].copy_from_slice(&self.vni.to_be_bytes()[1..]);
        h[4..8].copy_from_slice(&self.key_id.to_be_bytes());
        h[8..16].copy_from_slice(&self.salt.to_be_bytes());
        h[16..24].copy_from_slice(&self.counter.to_be_bytes());
        h[24] = self.index;
        h[25] = self.count;
        h
    }

    /// The header of `datagram`; `None` when it is too short to hold a header and a tag
    /// is of another version, or places its piece outside its message.
    pub(crate) fn parse(datagram: &[u8]) -> Option<Header> {
        if datagram.len() < OVERHEAD || datagram[0] != VERSION {
            return None;
        }
        let (index, count) = (datagram[24], datagram[25]);
        if count == 0 || index >= count || usize::from(count) > MAX_FRAGMENTS {
            return None;
        }
        let word = |r: std::ops::Range<usize>| {
            datagram[r]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        Some(Header {
            vni: word(1..4) as u32,
            key_id: word(4..8) as u32,
            salt: word(8..16),
            counter: word(16..24),
            index,
            count,
        })
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&(self.salt as u32).to_be_bytes());
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

/// The id of a network key: the first 4 bytes of its SHA-256.
pub(crate) fn key_id(key: &[u8]) -> u32 {
    let d = digest(&SHA256, key);
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The AES-256-GCM key of the sender with `salt` on network `vni` under `key`.
fn derive(key: &[u8], vni: u32, salt: u64) -> LessSafeKey {
    let prk = Salt::new(HKDF_SHA256, &salt.to_be_bytes()).extract(key);
    let vni = vni.to_be_bytes();
    let info = [INFO, &vni];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .expect("32 bytes are within HKDF-SHA256's output limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

/// Why a datagram was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Too short, another version, or another VNI than the network's.
    Malformed,
    /// Sealed with a key not (or no longer) in the ring.
    UnknownKey,
    /// The tag did not match: wrong key, or altered on the way.
    Forged,
    /// A counter already seen, or older than the replay window.
    Replayed,
}

/// The keys of one network on one node: the primary one seals, any one opens.
pub(crate) struct KeyRing {
    vni: u32,
    /// (key id, key); the primary first.
    keys: Vec<(u32, Vec<u8>)>,
    sealer: Sealer,
}

struct Sealer {
    key_id: u32,
    salt: u64,
    key: LessSafeKey,
    next: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|(id, _)| format!("{id:08x}"))
            .collect();
        f.debug_struct("KeyRing")
            .field("vni", &self.vni)
            .field("key_ids", &ids)
            .finish()
    }
}

impl KeyRing {
    /// A ring for network `vni` (named `network_id` in errors) with `keys`, the first one
    /// the primary: 1 to [`MAX_KEYS`] distinct keys of [`MIN_KEY_LEN`] to
    /// [`MAX_KEY_LEN`] bytes. The sealer gets a fresh random salt.
    pub(crate) fn new(network_id: &str, vni: u32, keys: &[Vec<u8>]) -> Result<Self, OverlayError> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(OverlayError::InvalidArgument(format!(
                "network {network_id}: {} keys given, 1 to {MAX_KEYS} expected",
                keys.len()
            )));
        }
        let mut ring: Vec<(u32, Vec<u8>)> = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&k.len()) {
                return Err(OverlayError::InvalidArgument(format!(
                    "network {network_id}: key {i} has {} bytes, {MIN_KEY_LEN} to {MAX_KEY_LEN} expected",
                    k.len()
                )));
            }
            let id = key_id(k);
            if ring.iter().any(|(other, _)| *other == id) {
                return Err(OverlayError::InvalidArgument(format!(
                    "network {network_id}: key {i} is given twice"
                )));
            }
            ring.push((id, k.clone()));
        }
        let mut salt = [0u8; 8];
        SystemRandom::new().fill(&mut salt).map_err(|_| {
            OverlayError::io("drawing a salt", std::io::Error::other("no randomness"))
        })?;
        let salt = u64::from_be_bytes(salt);
        let sealer = Sealer {
            key_id: ring[0].0,
            salt,
            key: derive(&ring[0].1, vni, salt),
            next: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(KeyRing {
            vni,
            keys: ring,
            sealer,
        })
    }

    /// The ids of the keys, the primary first.
    pub(crate) fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }

    fn key(&self, id: u32) -> Option<&[u8]> {
        self.keys
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, key)| key.as_slice())
    }

    /// Seals `message` with the primary key as pieces of at most `piece` bytes, one
    /// datagram each (header, sealed piece, tag), into `outs[*used..]` (reusing the
    /// buffers there, adding more), advancing `*used`. `false` (nothing added) when it
    /// would take more than [`MAX_FRAGMENTS`] pieces, or the counter is exhausted (after
    /// 2^64 datagrams: a new ring is needed).
    pub(crate) fn seal_message(
        &self,
        message: &[u8],
        piece: usize,
        outs: &mut Vec<Vec<u8>>,
        used: &mut usize,
    ) -> bool {
        let piece = piece.max(1);
        let count = message.len().div_ceil(piece).max(1);
        if count > MAX_FRAGMENTS {
            return false;
        }
        let s = &self.sealer;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        // The pieces' counters, reserved at once: consecutive, never reused.
        let Ok(base) = s
            .next
            .fetch_update(relaxed, relaxed, |n| n.checked_add(count as u64))
        else {
            return false;
        };
        let first = *used;
        for i in 0..count {
            let chunk = message
                .get(i * piece..((i + 1) * piece).min(message.len()))
                .unwrap_or_default();
            if outs.len() <= *used {
                outs.push(Vec::with_capacity(piece + OVERHEAD));
            }
            let out = &mut outs[*used];
            out.clear();
            let header = Header {
                vni: self.vni,
                key_id: s.key_id,
                salt: s.salt,
                counter: base + i as u64,
                index: i as u8,
                count: count as u8,
            };
            let h = header.encode();
            out.extend_from_slice(&h);
            out.extend_from_slice(chunk);
            match s.key.seal_in_place_separate_tag(
                header.nonce(),
                Aad::from(h),
                &mut out[HEADER_LEN..],
            ) {
                Ok(tag) => out.extend_from_slice(tag.as_ref()),
                // Only for pieces longer than GCM allows (64 GiB): never one of these.
                Err(_) => {
                    *used = first;
                    return false;
                }
            }
            *used += 1;
        }
        true
    }

    /// Seals `frame` as a message of one datagram into `out`.
    #[cfg(test)]
    pub(crate) fn seal(&self, frame: &[u8], out: &mut Vec<u8>) -> bool {
        let mut outs = vec![std::mem::take(out)];
        let mut used = 0;
        let ok = self.seal_message(frame, frame.len(), &mut outs, &mut used);
        *out = outs.swap_remove(0);
        ok
    }
}

/// A replay window (RFC 4303 §3.4.3): the highest counter seen and which of the
/// [`REPLAY_WINDOW`] counters below it were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    top: Option<u64>,
    /// Bit `i`: counter `top - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `counter` would be accepted (not seen, not too old).
    pub(crate) fn fresh(&self, counter: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if counter > top => true,
            Some(top) => {
                let back = top - counter;
                back < REPLAY_WINDOW && self.seen & (1u128 << back) == 0
            }
        }
    }

    /// Records `counter` as seen (call only after it authenticated and was `fresh`).
    pub(crate) fn mark(&mut self, counter: u64) {
        match self.top {
            Some(top) if counter <= top => {
                let back = top - counter;
                if back < REPLAY_WINDOW {
                    self.seen |= 1u128 << back;
                }
            }
            Some(top) => {
                let shift = counter - top;
                self.seen = if shift >= REPLAY_WINDOW {
                    1
                } else {
                    (self.seen << shift) | 1
                };
                self.top = Some(counter);
            }
            None => {
                self.seen = 1;
                self.top = Some(counter);
            }
        }
    }
}

struct Session {
    key: LessSafeKey,
    window: ReplayWindow,
    last_used: u64,
    /// The message being reassembled.
    partial: Partial,
}

/// A message being reassembled from its pieces, in order.
#[derive(Default)]
struct Partial {
    /// Counter of its first piece, while one is under way.
    base: Option<u64>,
    next: u8,
    count: u8,
    buf: Vec<u8>,
}

/// What a node knows of the senders of one network: their derived keys and replay
/// windows. Only the receiving task touches it.
#[derive(Default)]
pub(crate) struct Receiver {
    sessions: HashMap<(u32, u64), Session>,
    clock: u64,
}

impl Receiver {
    /// Authenticates and decrypts `datagram` in place with `ring`; the frame it carried.
    pub(crate) fn open<'a>(
        &mut self,
        ring: &KeyRing,
        datagram: &'a mut [u8],
    ) -> Result<&'a [u8], Rejected> {
        let header = Header::parse(datagram).ok_or(Rejected::Malformed)?;
        if header.vni != ring.vni {
            return Err(Rejected::Malformed);
        }
        let key = ring.key(header.key_id).ok_or(Rejected::UnknownKey)?;
        self.clock += 1;
        let ident = (header.key_id, header.salt);
        let (aad, sealed) = datagram.split_at_mut(HEADER_LEN);
        let aad: [u8; HEADER_LEN] = (&*aad).try_into().map_err(|_| Rejected::Malformed)?;
        if let Some(session) = self.sessions.get_mut(&ident) {
            if !session.window.fresh(header.counter) {
                return Err(Rejected::Replayed);
            }
            let frame = session
                .key
                .open_in_place(header.nonce(), Aad::from(aad), sealed)
                .map_err(|_| Rejected::Forged)?;
            session.window.mark(header.counter);
            session.last_used = self.clock;
            return Ok(frame);
        }
        // A sender not seen yet: derive its key, and keep it only if the frame is genuine
        // (so forged datagrams cannot fill the table).
        let derived = derive(key, ring.vni, header.salt);
        let frame = derived
            .open_in_place(header.nonce(), Aad::from(aad), sealed)
            .map_err(|_| Rejected::Forged)?;
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k)
        {
            self.sessions.remove(&oldest);
        }
        let mut window = ReplayWindow::default();
        window.mark(header.counter);
        self.sessions.insert(
            ident,
            Session {
                key: derived,
                window,
                last_used: self.clock,
                partial: Partial::default(),
            },
        );
        Ok(frame)
    }

    /// Opens `datagram` (see [`Receiver::open`]) and reassembles its message: `Ok(true)`
    /// when a whole message is now in `message`, `Ok(false)` when more pieces are
    /// awaited (or the message was dropped for a missing piece).
    pub(crate) fn accept(
        &mut self,
        ring: &KeyRing,
        datagram: &mut [u8],
        message: &mut Vec<u8>,
    ) -> Result<bool, Rejected> {
        let header = Header::parse(datagram).ok_or(Rejected::Malformed)?;
        let piece = self.open(ring, datagram)?;
        if header.count == 1 {
            message.clear();
            message.extend_from_slice(piece);
            return Ok(true);
        }
        let Some(session) = self.sessions.get_mut(&(header.key_id, header.salt)) else {
            return Ok(false);
        };
        let p = &mut session.partial;
        let base = header.counter.checked_sub(u64::from(header.index));
        if header.index == 0 {
            p.base = base;
            p.next = 0;
            p.count = header.count;
            p.buf.clear();
        }
        let in_order =
            p.base.is_some() && p.base == base && p.next == header.index && p.count == header.count;
        if !in_order || p.buf.len() + piece.len() > MAX_MESSAGE {
            p.base = None;
            return Ok(false);
        }
        p.buf.extend_from_slice(piece);
        p.next += 1;
        if p.next < p.count {
            return Ok(false);
        }
        p.base = None;
        std::mem::swap(message, &mut p.buf);
        Ok(true)
    }

    /// How many senders are remembered.
    #[cfg(test)]
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// If `frame` is an ARP request for an address that `lookup` knows, the ARP reply
/// (as that address's owner would send it) to give back to the asker.
pub(crate) fn arp_reply(
    frame: &[u8],
    lookup: impl Fn(Ipv4Addr) -> Option<[u8; 6]>,
) -> Option<Vec<u8>> {
    // Ethernet (14) + ARP for IPv4 over Ethernet (28).
    if frame.len() < 42 || frame[12..14] != [0x08, 0x06] {
        return None;
    }
    let arp = &frame[14..42];
    // htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request).
    if arp[0..8] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] {
        return None;
    }
    let asker_mac: [u8; 6] = arp[8..14].try_into().ok()?;
    let asker_ip: [u8; 4] = arp[14..18].try_into().ok()?;
    let target_ip: [u8; 4] = arp[24..28].try_into().ok()?;
    let target_mac = lookup(Ipv4Addr::from(target_ip))?;
    let mut reply = Vec::with_capacity(42);
    reply.extend_from_slice(&asker_mac);
    reply.extend_from_slice(&target_mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&target_mac);
    reply.extend_from_slice(&target_ip);
    reply.extend_from_slice(&asker_mac);
    reply.extend_from_slice(&asker_ip);
    Some(reply)
}

#[cfg(test)]
mod tests;
