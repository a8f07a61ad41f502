//! The user-space data path of encrypted overlay networks (Linux).
//!
//! Per node, one [`CryptPlane`]: a UDP socket on the underlay (the node's data-path
//! address, [`OverlayConfig::crypt_port`](super::OverlayConfig::crypt_port)) and a
//! receiving task that authenticates, decrypts and writes each datagram into the TAP
//! device of the network its VNI names. Per encrypted network, one [`CryptNet`]: the TAP
//! device `tap0` (a port of the sandbox's bridge) and a sending task that reads its frames,
//! answers ARP requests for the network's peers, and seals every unicast frame for a
//! remote endpoint to the node that runs it.
//!
//! Both tasks run on the tokio runtime that called
//! [`Overlay::ensure_network`](super::Overlay::ensure_network): it must keep running (a
//! current-thread runtime blocked in synchronous code stalls the data path). Dropping the
//! owner aborts the task; the TAP device goes away with its last descriptor.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::RwLock;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::crypt::{Header, KeyRing, OVERHEAD, Receiver, Rejected, arp_reply};
use super::{CryptStats, OverlayError, Peer};

/// `_IOW('T', 202, int)`: make the TUN/TAP file a device.
const TUNSETIFF: u64 = 0x4004_54ca;
/// Largest frame read from a TAP device or datagram received (more than any MTU).
const BUF: usize = 65_536;
/// Socket buffers of the data path's UDP socket (bulk traffic overruns the default).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// The remote endpoints of a network, as the data path looks them up.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    by_mac: HashMap<[u8; 6], IpAddr>,
    by_ip: HashMap<Ipv4Addr, [u8; 6]>,
    nodes: HashSet<IpAddr>,
}

impl PeerTable {
    pub(crate) fn new(peers: &[Peer]) -> PeerTable {
        let mut t = PeerTable::default();
        for p in peers {
            t.by_mac.insert(p.mac, p.node_underlay);
            if let IpAddr::V4(ip) = p.addr {
                t.by_ip.insert(ip, p.mac);
            }
            t.nodes.insert(p.node_underlay);
        }
        t
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    arp_answered: AtomicU64,
    not_forwarded: AtomicU64,
    no_key: AtomicU64,
    unknown_sender: AtomicU64,
    unknown_key: AtomicU64,
    forged: AtomicU64,
    replayed: AtomicU64,
    errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the two tasks share about one network.
struct NetShared {
    id: String,
    tap: AsyncFd<OwnedFd>,
    ring: ArcSwapOption<KeyRing>,
    peers: ArcSwap<PeerTable>,
    counters: Counters,
}

impl NetShared {
    fn write_tap(&self, frame: &[u8]) {
        // SAFETY: writes `frame.len()` bytes from a live slice to a descriptor we own.
        let n = unsafe {
            libc::write(
                self.tap.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
            )
        };
        if n < 0 {
            bump(&self.counters.errors);
            tracing::debug!(network = %self.id, error = %io::Error::last_os_error(), "writing to tap0");
        }
    }
}

/// The data path of one encrypted network; dropping it stops the sending task and closes
/// the TAP device.
pub(crate) struct CryptNet {
    vni: u32,
    shared: Arc<NetShared>,
    tx: JoinHandle<()>,
}

impl Drop for CryptNet {
    fn drop(&mut self) {
        self.tx.abort();
    }
}

impl CryptNet {
    /// Replaces the key ring.
    pub(crate) fn set_ring(&self, ring: KeyRing) {
        self.shared.ring.store(Some(Arc::new(ring)));
    }

    /// Replaces the remote endpoints.
    pub(crate) fn set_peers(&self, peers: &[Peer]) {
        self.shared.peers.store(Arc::new(PeerTable::new(peers)));
    }

    /// The counters; `malformed` is the plane's.
    pub(crate) fn stats(&self, plane: &CryptPlane) -> CryptStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CryptStats {
            sent: get(&c.sent),
            received: get(&c.received),
            arp_answered: get(&c.arp_answered),
            not_forwarded: get(&c.not_forwarded),
            no_key: get(&c.no_key),
            unknown_sender: get(&c.unknown_sender),
            unknown_key: get(&c.unknown_key),
            forged: get(&c.forged),
            replayed: get(&c.replayed),
            errors: get(&c.errors),
            malformed: plane.malformed.load(Ordering::Relaxed),
        }
    }
}

/// A node's encrypted data path: the UDP socket and the receiving task.
pub(crate) struct CryptPlane {
    socket: Arc<UdpSocket>,
    port: u16,
    nets: Arc<RwLock<HashMap<u32, Arc<NetShared>>>>,
    malformed: Arc<AtomicU64>,
    rx: JoinHandle<()>,
}

impl Drop for CryptPlane {
    fn drop(&mut self) {
        self.rx.abort();
    }
}

impl CryptPlane {
    /// Starts the plane on `socket` (bound to the data-path address and `port`).
    pub(crate) fn start(socket: std::net::UdpSocket, port: u16) -> Result<Self, OverlayError> {
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // SAFETY: setsockopt with a pointer to a live int of the size given. Best
            // effort: the defaults work, only slower.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&SOCKET_BUFFER as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        socket
            .set_nonblocking(true)
            .map_err(|e| OverlayError::io("making the data path socket non-blocking", e))?;
        let socket = Arc::new(
            UdpSocket::from_std(socket)
                .map_err(|e| OverlayError::io("registering the data path socket", e))?,
        );
        let nets = Arc::new(RwLock::new(HashMap::new()));
        let malformed = Arc::new(AtomicU64::new(0));
        let rx = tokio::spawn(receive(socket.clone(), nets.clone(), malformed.clone()));
        Ok(CryptPlane {
            socket,
            port,
            nets,
            malformed,
            rx,
        })
    }

    /// Whether no network uses the plane any more.
    pub(crate) fn is_idle(&self) -> bool {
        self.nets.read().is_empty()
    }

    /// Starts the data path of network `id` (VNI `vni`) on the TAP device `tap`.
    pub(crate) fn add(&self, id: &str, vni: u32, tap: OwnedFd) -> Result<CryptNet, OverlayError> {
        if self.nets.read().contains_key(&vni) {
            return Err(OverlayError::InvalidArgument(format!(
                "VNI {vni} is already used by another encrypted network of this node"
            )));
        }
        let shared = Arc::new(NetShared {
            id: id.to_owned(),
            // SAFETY: an OwnedFd keeps its descriptor open and unchanged while the
            // AsyncFd owns it.
            tap: unsafe { AsyncFd::register_with_interest(tap, tokio::io::Interest::READABLE) }
                .map_err(|e| OverlayError::io("registering tap0", e.into()))?,
            ring: ArcSwapOption::empty(),
            peers: ArcSwap::from_pointee(PeerTable::default()),
            counters: Counters::default(),
        });
        let tx = tokio::spawn(send(shared.clone(), self.socket.clone(), self.port));
        self.nets.write().insert(vni, shared.clone());
        Ok(CryptNet { vni, shared, tx })
    }

    /// Stops delivering to `net` (which the caller then drops).
    pub(crate) fn remove(&self, net: &CryptNet) {
        let mut nets = self.nets.write();
        if nets
            .get(&net.vni)
            .is_some_and(|s| Arc::ptr_eq(s, &net.shared))
        {
            nets.remove(&net.vni);
        }
    }
}

/// Opens the TAP device `name` in the calling thread's network namespace, non-blocking,
/// frames without the packet-information prefix. It exists as long as the descriptor.
pub(crate) fn open_tap(name: &str) -> Result<OwnedFd, OverlayError> {
    // SAFETY: open(2) on a NUL-terminated literal.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                OverlayError::Unsupported(format!(
                    "encrypted overlay networks need TAP devices (/dev/net/tun, module tun): {e}"
                ))
            }
            Some(libc::EPERM) | Some(libc::EACCES) => {
                OverlayError::NotPermitted(format!("opening /dev/net/tun: {e}"))
            }
            _ => OverlayError::io("opening /dev/net/tun", e),
        });
    }
    // SAFETY: a descriptor open(2) just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an ifreq we own, zeroed, then named and flagged; TUNSETIFF reads it.
    let rc = unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr)
    };
    if rc < 0 {
        return Err(OverlayError::io(
            format!("creating TAP device {name}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(fd)
}

/// Reads one frame from the TAP device.
async fn read_tap(tap: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = tap.readable().await?;
        let read = guard.try_io(|fd| {
            // SAFETY: reads at most `buf.len()` bytes into a live buffer.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        if let Ok(result) = read {
            return result;
        }
    }
}

/// The sending task of one network: TAP → (ARP proxy | seal → UDP).
async fn send(net: Arc<NetShared>, socket: Arc<UdpSocket>, port: u16) {
    let mut buf = vec![0u8; BUF];
    let mut out = Vec::with_capacity(BUF + OVERHEAD);
    loop {
        let n = match read_tap(&net.tap, &mut buf).await {
            Ok(n) => n,
            Err(e) => {
                bump(&net.counters.errors);
                tracing::warn!(network = %net.id, error = %e, "reading tap0");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let frame = &buf[..n];
        if frame.len() < 14 {
            bump(&net.counters.not_forwarded);
            continue;
        }
        let peers = net.peers.load();
        if frame[0] & 1 == 1 {
            // Broadcast or multicast: only ARP requests for known peers are answered;
            // nothing is flooded to the other nodes.
            match arp_reply(frame, |ip| peers.by_ip.get(&ip).copied()) {
                Some(reply) => {
                    net.write_tap(&reply);
                    bump(&net.counters.arp_answered);
                }
                None => bump(&net.counters.not_forwarded),
            }
            continue;
        }
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let Some(node) = peers.by_mac.get(&dst).copied() else {
            // A local endpoint the bridge has not learnt yet, or a stale one.
            bump(&net.counters.not_forwarded);
            continue;
        };
        drop(peers);
        let Some(ring) = net.ring.load_full() else {
            bump(&net.counters.no_key);
            continue;
        };
        if !ring.seal(frame, &mut out) {
            bump(&net.counters.no_key);
            continue;
        }
        match socket.send_to(&out, SocketAddr::new(node, port)).await {
            Ok(_) => bump(&net.counters.sent),
            Err(e) => {
                bump(&net.counters.errors);
                tracing::debug!(network = %net.id, %node, error = %e, "sending an encrypted frame");
            }
        }
    }
}

/// The receiving task of a node: UDP → (authenticate, decrypt) → the TAP device of the
/// datagram's network.
async fn receive(
    socket: Arc<UdpSocket>,
    nets: Arc<RwLock<HashMap<u32, Arc<NetShared>>>>,
    malformed: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; BUF];
    let mut receivers: HashMap<u32, Receiver> = HashMap::new();
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "receiving on the encrypted data path");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let datagram = &mut buf[..n];
        let Some(header) = Header::parse(datagram) else {
            bump(&malformed);
            continue;
        };
        let Some(net) = nets.read().get(&header.vni).cloned() else {
            bump(&malformed);
            continue;
        };
        if !net.peers.load().nodes.contains(&from.ip()) {
            bump(&net.counters.unknown_sender);
            continue;
        }
        let Some(ring) = net.ring.load_full() else {
            bump(&net.counters.no_key);
            continue;
        };
        if receivers.len() > nets.read().len() + 16 {
            let live = nets.read();
            receivers.retain(|vni, _| live.contains_key(vni));
        }
        let receiver = receivers.entry(header.vni).or_default();
        match receiver.open(&ring, datagram) {
            Ok(frame) => {
                net.write_tap(frame);
                bump(&net.counters.received);
            }
            Err(Rejected::Malformed) => bump(&malformed),
            Err(Rejected::UnknownKey) => bump(&net.counters.unknown_key),
            Err(Rejected::Forged) => bump(&net.counters.forged),
            Err(Rejected::Replayed) => bump(&net.counters.replayed),
        }
    }
}
