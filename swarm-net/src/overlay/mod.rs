//! Overlay networks across hosts: VXLAN (UDP 4789) between the nodes that have tasks on a
//! network, programmed through rtnetlink, the way Docker's overlay driver lays it out; for
//! encrypted networks, AES-256-GCM over UDP 4790 in user space.
//!
//! Per overlay network, each node keeps a *sandbox*: a network namespace of its own
//! (bind-mounted at `<netns_dir>/ov-<network id>`) holding
//!
//! * a bridge `br0` carrying the network's gateway address, and
//! * a VXLAN device `vxlan0` (VNI of the network, local address = the node's data-path
//!   address, destination port 4789, source-address learning off, ARP proxy on). It is
//!   created in the node's own namespace and then moved into the sandbox, so its UDP
//!   socket stays on the underlay while its frames live in the sandbox.
//!
//! A task joins through a veth pair: one end is a port of `br0`, the other is moved into
//! the task's network namespace, renamed (`eth0`, ...), given its address and a MAC
//! derived from it (`02:42:` + the IPv4 address, as Docker does), and optionally a default
//! route via the gateway. Keeping the subnet inside a sandbox means the same `10.0.x.0/24`
//! on several networks (or on several simulated hosts of one machine) never clashes with
//! the node's own routes.
//!
//! Remote endpoints are not learnt by flooding: [`Overlay::set_peers`] writes, for every
//! remote task, a permanent FDB entry (its MAC → the underlay address of its node) on
//! `vxlan0` and a permanent neighbour entry (its IP → its MAC) that the VXLAN ARP proxy
//! answers from. The kernel then sends each frame straight to the right node.
//!
//! # Encrypted networks
//!
//! Docker encrypts an overlay (`--opt encrypted`) with IPsec ESP in the kernel. The kernel
//! this was built on has neither ESP (`ip xfrm state add ... proto esp`: "Requested type
//! not found") nor WireGuard nor MACsec, so an encrypted network's frames are sealed in
//! user space instead:
//!
//! * its sandbox gets a TAP device `tap0` (a port of `br0`) instead of `vxlan0`, with an
//!   MTU [`ENCRYPTION_MTU_COST`] bytes lower (1404 for the default 1450), and with TCP
//!   segmentation and checksum offloads: the kernel hands it TCP "super-frames" of up to
//!   64 KiB with a virtio-net header, as to a virtual machine's NIC;
//! * a tokio task reads the frames of `tap0`: an ARP request for a peer's address is
//!   answered from the peer list (the same proxy `vxlan0` does from its neighbour
//!   entries); a unicast frame for a peer's MAC is sealed with AES-256-GCM (ring) in
//!   pieces of at most one underlay MTU, sent as UDP datagrams (one UDP GSO send per
//!   frame, `sendmmsg`) to the node of that peer; the rest (local or unknown MACs, other broadcast and multicast) is
//!   dropped, never flooded;
//! * one UDP socket per node, bound to the data-path address and
//!   [`OverlayConfig::crypt_port`] ([`CRYPT_PORT`], 4790) in the underlay namespace while
//!   an encrypted network is set up, and one task that reads it: it accepts datagrams
//!   only from the nodes of the network's peers, checks the replay window,
//!   authenticates and decrypts, reassembles the pieces of a frame (in order; a frame with
//!   a piece lost is dropped whole) and writes it into the `tap0` of the network the VNI
//!   names, whose kernel segments it.
//!
//! A datagram is a 28-byte header (version, VNI, key id, the sender's salt, a counter, the
//! piece's place in its frame: the associated data) then the sealed piece and its 16-byte
//! tag. Each sender derives its
//! own key from the network key with HKDF (salt, VNI) and never repeats a nonce (salt and
//! counter); each receiver keeps an ESP-style window of [`REPLAY_WINDOW`] counters per
//! sender. [`Overlay::crypt_stats`] counts what went through and why the rest was
//! dropped.
//!
//! Keys: a network has a ring of 1 to [`MAX_KEYS`] keys, given with [`Overlay::set_keys`],
//! the primary first: frames are sealed with the primary and accepted under any of them.
//! As in Docker, the managers are meant to generate the keys (random, 3 per encrypted
//! network, with Lamport times) and rotate them (every 12 hours in Docker), and each node
//! to receive them over the cluster's mTLS channel and call `set_keys`: add the new key,
//! then make it the primary, then drop the oldest, on every node, so that established
//! connections carry on. The facade does not do that yet.
//!
//! The data path's tasks run on the tokio runtime that called
//! [`Overlay::ensure_network`] (IO and time drivers enabled); it must keep running (not be
//! blocked in synchronous code). Dropping the [`Overlay`] aborts them; their socket and
//! `tap0` close once the runtime has dropped them, and a new `Overlay`'s
//! `ensure_network` waits for that (up to a second).
//! Being in user space, it is slower than the kernel's VXLAN (see BENCHMARKS.md,
//! "Overlay").
//!
//! [`OverlayDriver`] is the same surface as a trait, for a host that brings its own data
//! plane.
//!
//! Netlink sockets belong to the namespace of the thread that opens them, so an
//! [`Overlay`] programs the namespace of the thread that called [`Overlay::new`] as the
//! underlay, and opens short-lived threads that join a sandbox or a task namespace only to
//! open a socket there.
//!
//! ```no_run
//! # async fn demo() -> Result<(), swarm_net::overlay::OverlayError> {
//! use swarm_net::overlay::{NetworkDef, Overlay, OverlayConfig, Peer, mac_for_ip};
//!
//! // On node 1, whose data-path address is 192.168.251.1:
//! let overlay = Overlay::new(OverlayConfig::new("192.168.251.1".parse().unwrap())).await?;
//! let net = NetworkDef {
//!     id: "web".into(),
//!     vni: 4097,
//!     subnet: "10.0.9.0/24".into(),
//!     gateway: "10.0.9.1".into(),
//!     encrypted: false,
//! };
//! overlay.ensure_network(&net).await?;
//! let task = overlay.create_task_netns("task1")?;
//! let mac = overlay.attach("web", &task, "eth0", "10.0.9.2/24".parse()?, true).await?;
//! // `mac` goes to the other nodes through the store. The task 10.0.9.3 runs on node 2:
//! let other = "10.0.9.3".parse().unwrap();
//! overlay
//!     .set_peers("web", &[Peer {
//!         addr: std::net::IpAddr::V4(other),
//!         mac: mac_for_ip(other).0,
//!         node_underlay: "192.168.251.2".parse().unwrap(),
//!     }])
//!     .await?;
//! # let _ = mac;
//! # Ok(())
//! # }
//! ```
//!
//! Needs Linux and root (`CAP_NET_ADMIN` for links, `CAP_SYS_ADMIN` for namespaces and
//! bind mounts); otherwise [`Overlay::new`] fails with [`OverlayError::NotPermitted`] or
//! [`OverlayError::Unsupported`]. Only IPv4 overlay subnets are supported (the underlay may
//! be IPv4 or IPv6; with IPv6, lower [`OverlayConfig::mtu`] by 20 more bytes). Encrypted
//! networks also need TAP devices (`/dev/net/tun`).
//!
//! Each call that works in a sandbox or a task namespace opens a netlink socket there from
//! a short-lived thread (a few hundred microseconds, blocking the calling worker meanwhile).
// The checks below serve the Linux implementation only.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod crypt;
#[cfg(target_os = "linux")]
mod datapath;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod netns;
#[cfg(target_os = "linux")]
mod peers;
#[cfg(target_os = "linux")]
pub(crate) mod veth;

#[cfg(target_os = "linux")]
pub use linux::Overlay;
#[cfg(target_os = "linux")]
pub(crate) use linux::{add_address, connect_in, link_index, must_index, nl, set_link};
#[cfg(not(target_os = "linux"))]
pub use other::Overlay;

pub use crypt::{ENCRYPTION_MTU_COST, MAX_KEY_LEN, MAX_KEYS, MIN_KEY_LEN, REPLAY_WINDOW};

/// The standard VXLAN UDP port (IANA), the one Docker uses by default.
pub const VXLAN_PORT: u16 = 4789;

/// The default UDP port of the encrypted data path ([`OverlayConfig::crypt_port`]):
/// next to [`VXLAN_PORT`], so one firewall rule (`4789-4790/udp`) opens the data path of
/// both kinds of network. The kernel's VXLAN sockets hold 4789 on every address, so the
/// user-space data path cannot share it. (IANA lists 4790 for VXLAN-GPE, which Swarm does
/// not use; pick another port for a node that does.)
pub const CRYPT_PORT: u16 = 4790;

/// Where sandboxes and task namespaces are bind-mounted by default.
pub const DEFAULT_NETNS_DIR: &str = "/run/swarm/netns";

/// Name prefix of the sandbox namespaces under [`OverlayConfig::netns_dir`]; task
/// namespaces may not use it.
pub const SANDBOX_PREFIX: &str = "ov-";

/// How one node runs its overlay networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// This node's data-path address: the local end of every VXLAN tunnel, the address
    /// the other nodes send this node's frames to.
    pub underlay_ip: IpAddr,
    /// UDP port of VXLAN, the same on every node ([`VXLAN_PORT`] by default).
    pub vxlan_port: u16,
    /// UDP port of the encrypted data path, the same on every node ([`CRYPT_PORT`] by
    /// default); its socket is bound to `underlay_ip` in the underlay namespace while an
    /// encrypted network is set up.
    pub crypt_port: u16,
    /// Directory where named network namespaces (sandboxes and task namespaces) are
    /// bind-mounted ([`DEFAULT_NETNS_DIR`] by default).
    pub netns_dir: PathBuf,
    /// MTU of the overlay links: the underlay's MTU minus the 50 bytes of VXLAN over IPv4
    /// (1450 for a 1500-byte underlay, the default). Encrypted networks use
    /// [`ENCRYPTION_MTU_COST`] (46) bytes less: 1404 by default. At least 114 (so that an
    /// encrypted network still gets IPv4's minimum of 68).
    pub mtu: u32,
}

impl OverlayConfig {
    /// The defaults for a node whose data-path address is `underlay_ip`.
    pub fn new(underlay_ip: IpAddr) -> Self {
        OverlayConfig {
            underlay_ip,
            vxlan_port: VXLAN_PORT,
            crypt_port: CRYPT_PORT,
            netns_dir: PathBuf::from(DEFAULT_NETNS_DIR),
            mtu: 1450,
        }
    }
}

/// An overlay network as this node needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    /// The network's ID (letters, digits, `-`, `_`, `.`; up to 64 characters): names the
    /// sandbox.
    pub id: String,
    /// VXLAN network identifier, 1 to 16777215, the same on every node.
    pub vni: u32,
    /// IPv4 subnet in CIDR notation, e.g. `10.0.9.0/24`.
    pub subnet: String,
    /// The gateway address, inside the subnet (`10.0.9.1`, or `10.0.9.1/24`): given to
    /// the bridge and used for default routes.
    pub gateway: String,
    /// Whether frames between the nodes are encrypted (AES-256-GCM in user space, see the
    /// [module docs](self)); such a network carries no traffic until
    /// [`Overlay::set_keys`] gave it keys.
    pub encrypted: bool,
}

/// A remote endpoint of a network: a task running on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The task's address on the overlay.
    pub addr: IpAddr,
    /// The task's MAC address on the overlay ([`mac_for_ip`] of its address for tasks
    /// attached by an [`Overlay`]).
    pub mac: [u8; 6],
    /// The data-path address of the node running the task.
    pub node_underlay: IpAddr,
}

/// Counters of an encrypted network's data path on this node since the network was set
/// up here ([`Overlay::crypt_stats`]): what went through and why the rest was dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CryptStats {
    /// Datagrams sealed and sent to another node (a TCP super-frame takes several).
    pub sent: u64,
    /// Frames (or TCP super-frames) authenticated, decrypted, reassembled and delivered
    /// to the sandbox.
    pub received: u64,
    /// ARP requests for remote endpoints answered from the peer list.
    pub arp_answered: u64,
    /// Frames from the sandbox sent nowhere: for no remote endpoint (a local or unknown
    /// MAC), or broadcast and multicast other than ARP requests for a peer (never
    /// flooded).
    pub not_forwarded: u64,
    /// Frames dropped because the network has no keys yet (either direction).
    pub no_key: u64,
    /// Datagrams from an address that runs none of the network's peers.
    pub unknown_sender: u64,
    /// Datagrams sealed with a key not in the ring (e.g. a node with other keys).
    pub unknown_key: u64,
    /// Datagrams whose tag did not verify (wrong key, altered or forged).
    pub forged: u64,
    /// Datagrams already received, or older than the [`REPLAY_WINDOW`].
    pub replayed: u64,
    /// Read and write failures on the TAP device or the socket.
    pub errors: u64,
    /// Node-wide, for every encrypted network: datagrams too short, of an unknown format
    /// version, or for a VNI with no encrypted network here.
    pub malformed: u64,
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The MAC Docker gives an endpoint with IPv4 address `ip`: `02:42` (locally administered)
/// followed by the four bytes of the address, so both ends can compute it.
pub fn mac_for_ip(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
}

/// An address with its prefix length, e.g. `10.0.9.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix_len: u8,
}

impl Cidr {
    /// `addr/prefix_len`, refused when the prefix is too long for the family.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, OverlayError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(OverlayError::InvalidArgument(format!(
                "prefix length {prefix_len} is longer than {max} for {addr}"
            )));
        }
        Ok(Cidr { addr, prefix_len })
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = OverlayError;

    fn from_str(s: &str) -> Result<Self, OverlayError> {
        let bad = || OverlayError::InvalidArgument(format!("{s:?} is not an address/prefix"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Cidr::new(addr, len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why an overlay operation failed. Invalid input changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The process lacks a privilege; the message names it. Retrying will not help.
    #[error("overlay networks not permitted: {0}")]
    NotPermitted(String),
    /// The platform or kernel lacks a feature; the message names it. Retrying will not
    /// help.
    #[error("overlay networks unsupported: {0}")]
    Unsupported(String),
    /// A bad argument; the message names the field. Nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The network was not set up on this node ([`Overlay::ensure_network`] first).
    #[error("overlay network {0:?} is not set up on this node")]
    UnknownNetwork(String),
    /// A netlink request failed; `op` says which. `errno` is the kernel's error number
    /// when it sent one.
    #[error("{op}: {message}")]
    Netlink {
        /// What was being done.
        op: String,
        /// The error as netlink reported it.
        message: String,
        /// The kernel's error number (positive), if any.
        errno: Option<i32>,
    },
    /// A system call failed; `op` says which.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl OverlayError {
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        OverlayError::Io {
            op: op.into(),
            source,
        }
    }
}

/// A network definition checked and parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParsedNetwork {
    pub(crate) vni: u32,
    pub(crate) encrypted: bool,
    pub(crate) subnet: Cidr,
    pub(crate) gateway: Ipv4Addr,
}

/// Checks a name used for a file under the netns directory or for a network ID.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), OverlayError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(OverlayError::InvalidArgument(format!(
            "{what} {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Checks an interface name for a task's end of a veth.
pub(crate) fn check_ifname(name: &str) -> Result<(), OverlayError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if ok {
        Ok(())
    } else {
        Err(OverlayError::InvalidArgument(format!(
            "interface name {name:?} must be 1 to 15 printable characters without '/' or ':'"
        )))
    }
}

/// Validates a network definition; nothing is touched.
pub(crate) fn parse_network(net: &NetworkDef) -> Result<ParsedNetwork, OverlayError> {
    check_name("network id", &net.id)?;
    if net.vni == 0 || net.vni > 0x00ff_ffff {
        return Err(OverlayError::InvalidArgument(format!(
            "vni {} of network {} is outside 1..=16777215",
            net.vni, net.id
        )));
    }
    let subnet: Cidr = net.subnet.parse().map_err(|_| {
        OverlayError::InvalidArgument(format!(
            "subnet {:?} of network {} is not a CIDR prefix",
            net.subnet, net.id
        ))
    })?;
    if !subnet.addr.is_ipv4() || subnet.prefix_len > 30 {
        return Err(OverlayError::InvalidArgument(format!(
            "subnet {} of network {}: only IPv4 subnets of /30 or larger are supported",
            subnet, net.id
        )));
    }
    let gateway = net.gateway.split('/').next().unwrap_or_default();
    let gateway: Ipv4Addr = gateway.parse().map_err(|_| {
        OverlayError::InvalidArgument(format!(
            "gateway {:?} of network {} is not an IPv4 address",
            net.gateway, net.id
        ))
    })?;
    if !subnet.contains(IpAddr::V4(gateway)) {
        return Err(OverlayError::InvalidArgument(format!(
            "gateway {gateway} of network {} is outside its subnet {subnet}",
            net.id
        )));
    }
    Ok(ParsedNetwork {
        vni: net.vni,
        encrypted: net.encrypted,
        subnet,
        gateway,
    })
}

/// Validates a task address on a network.
pub(crate) fn check_task_addr(
    network_id: &str,
    net: &ParsedNetwork,
    addr: Cidr,
) -> Result<Ipv4Addr, OverlayError> {
    let IpAddr::V4(ip) = addr.addr else {
        return Err(OverlayError::InvalidArgument(format!(
            "address {addr} on network {network_id}: only IPv4 is supported"
        )));
    };
    if !net.subnet.contains(addr.addr) || ip == net.gateway {
        return Err(OverlayError::InvalidArgument(format!(
            "address {addr} is not a task address of network {network_id} (subnet {}, gateway {})",
            net.subnet, net.gateway
        )));
    }
    Ok(ip)
}

/// Validates the peers of a network; `Ok` holds the remote ones (peers on this node,
/// `node_underlay == local`, are left out: local endpoints are on the bridge already).
pub(crate) fn check_peers(
    network_id: &str,
    net: &ParsedNetwork,
    local: IpAddr,
    peers: &[Peer],
) -> Result<Vec<Peer>, OverlayError> {
    let mut out = Vec::with_capacity(peers.len());
    for p in peers {
        if !net.subnet.contains(p.addr) {
            return Err(OverlayError::InvalidArgument(format!(
                "peer {} is outside the subnet {} of network {network_id}",
                p.addr, net.subnet
            )));
        }
        if p.node_underlay.is_ipv4() != local.is_ipv4() {
            return Err(OverlayError::InvalidArgument(format!(
                "peer {}: node address {} is not of the family of this node's {local}",
                p.addr, p.node_underlay
            )));
        }
        if p.mac[0] & 1 == 1 || p.mac == [0; 6] {
            return Err(OverlayError::InvalidArgument(format!(
                "peer {}: {} is not a unicast MAC",
                p.addr,
                MacAddr(p.mac)
            )));
        }
        if p.node_underlay == local {
            continue;
        }
        if let Some(other) = out.iter().find(|o: &&Peer| o.addr == p.addr) {
            return Err(OverlayError::InvalidArgument(format!(
                "peer {} given twice (nodes {} and {})",
                p.addr, other.node_underlay, p.node_underlay
            )));
        }
        out.push(*p);
    }
    Ok(out)
}

/// The overlay networks of one node, as the agent drives them: the boundary a host may
/// replace (with another data plane, or a recording fake in its tests). [`Overlay`] is
/// the implementation; see it for what each call does.
///
/// Contract: invalid input is refused with [`OverlayError::InvalidArgument`] and changes
/// nothing; `ensure_network`, `remove_network`, `detach`, `create_task_netns` and
/// `remove_task_netns` are idempotent; `set_peers` sets the whole peer list (a retry
/// after an error completes it). No call panics on input.
#[async_trait::async_trait]
pub trait OverlayDriver: Send + Sync {
    /// Creates (or adopts) the sandbox of `net`.
    async fn ensure_network(&self, net: &NetworkDef) -> Result<(), OverlayError>;
    /// Removes the sandbox of `network_id` and every attachment to it.
    async fn remove_network(&self, network_id: &str) -> Result<(), OverlayError>;
    /// Sets the remote endpoints of `network_id` to exactly `peers`.
    async fn set_peers(&self, network_id: &str, peers: &[Peer]) -> Result<(), OverlayError>;
    /// Sets the key ring of the encrypted network `network_id` (the primary key first).
    async fn set_keys(&self, network_id: &str, keys: &[Vec<u8>]) -> Result<(), OverlayError>;
    /// The remote endpoints programmed on `network_id`.
    async fn peers(&self, network_id: &str) -> Result<Vec<Peer>, OverlayError>;
    /// Connects the task namespace at `task_netns` to `network_id` as `ifname` with
    /// `addr`; returns the task's MAC.
    async fn attach(
        &self,
        network_id: &str,
        task_netns: &Path,
        ifname: &str,
        addr: Cidr,
        default_route: bool,
    ) -> Result<MacAddr, OverlayError>;
    /// Disconnects `ifname` of the task namespace at `task_netns` from `network_id`.
    async fn detach(
        &self,
        network_id: &str,
        task_netns: &Path,
        ifname: &str,
    ) -> Result<(), OverlayError>;
    /// Creates the named task namespace `name`; returns its path.
    fn create_task_netns(&self, name: &str) -> Result<PathBuf, OverlayError>;
    /// Removes the named task namespace `name`.
    fn remove_task_netns(&self, name: &str) -> Result<(), OverlayError>;
}

#[async_trait::async_trait]
impl OverlayDriver for Overlay {
    async fn ensure_network(&self, net: &NetworkDef) -> Result<(), OverlayError> {
        Overlay::ensure_network(self, net).await
    }
    async fn remove_network(&self, network_id: &str) -> Result<(), OverlayError> {
        Overlay::remove_network(self, network_id).await
    }
    async fn set_peers(&self, network_id: &str, peers: &[Peer]) -> Result<(), OverlayError> {
        Overlay::set_peers(self, network_id, peers).await
    }
    async fn set_keys(&self, network_id: &str, keys: &[Vec<u8>]) -> Result<(), OverlayError> {
        Overlay::set_keys(self, network_id, keys).await
    }
    async fn peers(&self, network_id: &str) -> Result<Vec<Peer>, OverlayError> {
        Overlay::peers(self, network_id).await
    }
    async fn attach(
        &self,
        network_id: &str,
        task_netns: &Path,
        ifname: &str,
        addr: Cidr,
        default_route: bool,
    ) -> Result<MacAddr, OverlayError> {
        Overlay::attach(self, network_id, task_netns, ifname, addr, default_route).await
    }
    async fn detach(
        &self,
        network_id: &str,
        task_netns: &Path,
        ifname: &str,
    ) -> Result<(), OverlayError> {
        Overlay::detach(self, network_id, task_netns, ifname).await
    }
    fn create_task_netns(&self, name: &str) -> Result<PathBuf, OverlayError> {
        Overlay::create_task_netns(self, name)
    }
    fn remove_task_netns(&self, name: &str) -> Result<(), OverlayError> {
        Overlay::remove_task_netns(self, name)
    }
}

#[cfg(not(target_os = "linux"))]
mod other;

#[cfg(test)]
mod tests;
