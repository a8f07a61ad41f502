//! PROXY protocol version 2 headers: the one a backend reads when its published
//! port asks for the client's address, and the hand-over header between two
//! nodes' meshes (the same format with two custom TLVs naming the task and the
//! ports).
//!
//! Wire format (HAProxy's `proxy-protocol.txt`, section 2.2): a 12-byte
//! signature, version/command, family/transport, a big-endian length, the
//! addresses, then type-length-value records. The hand-over uses the TLV types
//! reserved for custom use (0xE0–0xEF).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Protocol;

/// The 12 bytes every PROXY v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Signature, version/command, family, length.
pub const FIXED_LEN: usize = 16;
/// Largest header body accepted from a peer (addresses plus TLVs).
pub const MAX_BODY: usize = 600;
/// Longest task ID a hand-over header carries.
pub const MAX_TASK_ID: usize = 255;

const VERSION_PROXY: u8 = 0x21;
const TLV_TASK: u8 = 0xE0;
const TLV_PORTS: u8 = 0xE1;

/// Why bytes are not a valid header. Never a panic: every input maps to one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than the header announces.
    #[error("header truncated: {have} of {need} bytes")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The first 12 bytes are not the PROXY v2 signature.
    #[error("not a PROXY protocol v2 header (bad signature)")]
    Signature,
    /// Not version 2 with the PROXY command.
    #[error("unsupported PROXY version/command byte {0:#04x}")]
    Command(u8),
    /// Address family or transport other than TCP/UDP over IPv4/IPv6.
    #[error("unsupported PROXY family/transport byte {0:#04x}")]
    Family(u8),
    /// The announced length is larger than allowed or too short for the addresses.
    #[error("bad PROXY header length {0}")]
    Length(usize),
    /// A TLV runs past the end of the header.
    #[error("malformed TLV at offset {0}")]
    Tlv(usize),
    /// A hand-over header lacks the task or ports TLV, or they are malformed.
    #[error("hand-over header without a valid {0} TLV")]
    Missing(&'static str),
}

/// A decoded PROXY v2 header (addresses plus the hand-over TLVs when present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The original client.
    pub source: SocketAddr,
    /// The address the client reached (ingress address and published port).
    pub destination: SocketAddr,
    /// Hand-over only: the task the first node picked.
    pub task_id: Option<String>,
    /// Hand-over only: (published port, target port).
    pub ports: Option<(u16, u16)>,
}

/// What a hand-over names, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOver {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The original client.
    pub client: SocketAddr,
    /// The address the client reached on the first node.
    pub destination: SocketAddr,
    /// The task the first node picked.
    pub task_id: String,
    /// The published port.
    pub published_port: u16,
    /// The task's port.
    pub target_port: u16,
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    fn v6(a: SocketAddr) -> SocketAddr {
        match a.ip() {
            IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        }
    }
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

/// Encodes a PROXY v2 header for `source` → `destination`, with the
/// hand-over TLVs when `task` is given (`task_id`, published and target port).
/// A task ID longer than [`MAX_TASK_ID`] is cut (IDs are 25 characters).
pub fn encode(
    protocol: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
    task: Option<(&str, u16, u16)>,
) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let transport = match protocol {
        Protocol::Tcp => 0x01,
        Protocol::Udp => 0x02,
    };
    let mut body = Vec::with_capacity(64);
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x10
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x20
        }
        _ => unreachable!("same_family maps both addresses to one family"),
    };
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    if let Some((task_id, published, target)) = task {
        let id = &task_id.as_bytes()[..task_id.len().min(MAX_TASK_ID)];
        body.push(TLV_TASK);
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id);
        body.push(TLV_PORTS);
        body.extend_from_slice(&4u16.to_be_bytes());
        body.extend_from_slice(&published.to_be_bytes());
        body.extend_from_slice(&target.to_be_bytes());
    }
    let mut out = Vec::with_capacity(FIXED_LEN + body.len());
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_PROXY);
    out.push(family | transport);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks the fixed 16 bytes and returns the body length that follows.
pub fn body_len(fixed: &[u8]) -> Result<usize, HeaderError> {
    if fixed.len() < FIXED_LEN {
        return Err(HeaderError::Truncated {
            have: fixed.len(),
            need: FIXED_LEN,
        });
    }
    if fixed[..12] != SIGNATURE {
        return Err(HeaderError::Signature);
    }
    if fixed[12] != VERSION_PROXY {
        return Err(HeaderError::Command(fixed[12]));
    }
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    if len > MAX_BODY {
        return Err(HeaderError::Length(len));
    }
    Ok(len)
}

/// Decodes a header at the start of `buf`; returns it and the bytes it used
/// (a datagram's payload follows them).
pub fn decode(buf: &[u8]) -> Result<(ProxyHeader, usize), HeaderError> {
    let len = body_len(buf)?;
    let need = FIXED_LEN + len;
    if buf.len() < need {
        return Err(HeaderError::Truncated {
            have: buf.len(),
            need,
        });
    }
    let fam = buf[13];
    let protocol = match fam & 0x0F {
        0x01 => Protocol::Tcp,
        0x02 => Protocol::Udp,
        _ => return Err(HeaderError::Family(fam)),
    };
    let body = &buf[FIXED_LEN..need];
    let (source, destination, mut at) = match fam & 0xF0 {
        0x10 => {
            if body.len() < 12 {
                return Err(HeaderError::Length(len));
            }
            let s = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let d = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            let sp = u16::from_be_bytes([body[8], body[9]]);
            let dp = u16::from_be_bytes([body[10], body[11]]);
            (
                SocketAddr::new(s.into(), sp),
                SocketAddr::new(d.into(), dp),
                12,
            )
        }
        0x20 => {
            if body.len() < 36 {
                return Err(HeaderError::Length(len));
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            let sp = u16::from_be_bytes([body[32], body[33]]);
            let dp = u16::from_be_bytes([body[34], body[35]]);
            (
                SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                SocketAddr::new(Ipv6Addr::from(d).into(), dp),
                36,
            )
        }
        _ => return Err(HeaderError::Family(fam)),
    };
    let mut header = ProxyHeader {
        protocol,
        source,
        destination,
        task_id: None,
        ports: None,
    };
    while at < body.len() {
        if body.len() - at < 3 {
            return Err(HeaderError::Tlv(at));
        }
        let kind = body[at];
        let tlv_len = u16::from_be_bytes([body[at + 1], body[at + 2]]) as usize;
        let start = at + 3;
        let end = start.checked_add(tlv_len).ok_or(HeaderError::Tlv(at))?;
        if end > body.len() {
            return Err(HeaderError::Tlv(at));
        }
        let value = &body[start..end];
        match kind {
            TLV_TASK => {
                let id = std::str::from_utf8(value).map_err(|_| HeaderError::Missing("task"))?;
                header.task_id = Some(id.to_owned());
            }
            TLV_PORTS => {
                if value.len() != 4 {
                    return Err(HeaderError::Missing("ports"));
                }
                header.ports = Some((
                    u16::from_be_bytes([value[0], value[1]]),
                    u16::from_be_bytes([value[2], value[3]]),
                ));
            }
            _ => {} // Other TLVs (ALPN, authority, ...) are ignored, as the spec allows.
        }
        at = end;
    }
    Ok((header, need))
}

impl ProxyHeader {
    /// The hand-over this header carries, or why it carries none.
    pub fn hand_over(self) -> Result<HandOver, HeaderError> {
        let task_id = self
            .task_id
            .filter(|t| !t.is_empty())
            .ok_or(HeaderError::Missing("task"))?;
        let (published_port, target_port) = self.ports.ok_or(HeaderError::Missing("ports"))?;
        Ok(HandOver {
            protocol: self.protocol,
            client: self.source,
            destination: self.destination,
            task_id,
            published_port,
            target_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_v4_header_matches_the_spec_layout() {
        let h = encode(
            Protocol::Tcp,
            addr("192.0.2.1:4000"),
            addr("127.0.0.21:8080"),
            None,
        );
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[192, 0, 2, 1]);
        assert_eq!(&h[24..26], &4000u16.to_be_bytes());
        let (d, used) = decode(&h).unwrap();
        assert_eq!(used, h.len());
        assert_eq!(d.source, addr("192.0.2.1:4000"));
        assert_eq!(d.destination, addr("127.0.0.21:8080"));
        assert_eq!(d.clone().hand_over(), Err(HeaderError::Missing("task")));
    }

    #[test]
    fn hand_over_round_trips_and_mixed_families_map_to_v6() {
        let h = encode(
            Protocol::Udp,
            addr("[2001:db8::1]:53"),
            addr("10.0.0.1:5353"),
            Some(("task1", 5353, 53)),
        );
        let mut with_payload = h.clone();
        with_payload.extend_from_slice(b"payload");
        let (d, used) = decode(&with_payload).unwrap();
        assert_eq!(&with_payload[used..], b"payload");
        let ho = d.hand_over().unwrap();
        assert_eq!(ho.protocol, Protocol::Udp);
        assert_eq!(ho.client, addr("[2001:db8::1]:53"));
        assert_eq!(ho.destination, addr("[::ffff:10.0.0.1]:5353"));
        assert_eq!(ho.task_id, "task1");
        assert_eq!((ho.published_port, ho.target_port), (5353, 53));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let good = encode(
            Protocol::Tcp,
            addr("1.2.3.4:5"),
            addr("5.6.7.8:9"),
            Some(("t", 1, 2)),
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (good[..10].to_vec(), "short"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "http"),
            (
                {
                    let mut g = good.clone();
                    g[12] = 0x20;
                    g
                },
                "LOCAL command",
            ),
            (
                {
                    let mut g = good.clone();
                    g[13] = 0x31;
                    g
                },
                "unix family",
            ),
            (
                {
                    let mut g = good.clone();
                    g[14] = 0xFF;
                    g
                },
                "huge length",
            ),
            (
                {
                    let mut g = good.clone();
                    g[15] = 3;
                    g[14] = 0;
                    g
                },
                "length shorter than the addresses",
            ),
            (good[..good.len() - 1].to_vec(), "truncated TLV"),
            (
                {
                    let mut g = good.clone();
                    let n = g.len();
                    g[n - 6] = 0x04; // ports TLV length 4 -> 1028
                    g
                },
                "TLV past the end",
            ),
        ];
        for (bytes, what) in cases {
            assert!(
                decode(&bytes).and_then(|(h, _)| h.hand_over()).is_err(),
                "{what} accepted"
            );
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = decode(&bytes).map(|(h, _)| h.hand_over());
        }

        #[test]
        fn mutated_headers_never_panic(
            idx in 0usize..64, val in any::<u8>(), cut in 0usize..64, id in "[a-z0-9]{0,40}",
        ) {
            let mut h = encode(Protocol::Tcp, addr("1.2.3.4:5"), addr("5.6.7.8:9"), Some((&id, 80, 8080)));
            let i = idx % h.len();
            h[i] = val;
            h.truncate(h.len().saturating_sub(cut % 8));
            if let Ok((d, used)) = decode(&h) {
                prop_assert!(used <= h.len());
                let _ = d.hand_over();
            }
        }
    }
}
