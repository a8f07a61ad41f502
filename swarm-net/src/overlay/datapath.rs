//! The user-space data path of encrypted overlay networks (Linux).
//!
//! Per node, one [`CryptPlane`]: a UDP socket on the underlay (the node's data-path
//! address, [`OverlayConfig::crypt_port`](super::OverlayConfig::crypt_port)) and a
//! receiving task that authenticates, decrypts and writes each datagram into the TAP
//! device of the network its VNI names. Per encrypted network, one [`CryptNet`]: the TAP
//! device `tap0` (a port of the sandbox's bridge, with TCP segmentation offload) and a
//! sending task that reads its frames, answers ARP requests for the network's peers, and
//! seals every unicast frame (in MTU-sized pieces) for a remote endpoint to the node that
//! runs it.
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

use super::crypt::{
    Header, KeyRing, MAX_MESSAGE, OVERHEAD, Receiver, Rejected, VNET_HDR_LEN, arp_reply,
};
use super::{CryptStats, OverlayError, Peer};

/// `_IOW('T', 202, int)`: make the TUN/TAP file a device.
const TUNSETIFF: u64 = 0x4004_54ca;
/// `_IOW('T', 208, unsigned int)`: the offloads the reader of a TAP device handles.
const TUNSETOFFLOAD: u64 = 0x4004_54d0;
/// Offloads of `TUNSETOFFLOAD`: partial checksums, TCP segmentation (IPv4, IPv6, ECN).
const TUN_F_CSUM: u32 = 0x01;
const TUN_F_TSO4: u32 = 0x02;
const TUN_F_TSO6: u32 = 0x04;
const TUN_F_TSO_ECN: u32 = 0x08;
/// Bytes of an Ethernet header with a VLAN tag: a frame is at most MTU + this.
const FRAME_HEADROOM: usize = 18;
/// Most datagrams received at once, and messages read from a TAP device before they are
/// sent (with one `sendmmsg`).
const BATCH: usize = 32;
/// Most messages read from a TAP device at once (each buffer holds up to 64 KiB).
const READ_BATCH: usize = 8;
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
    /// Datagrams longer than `mtu` (the largest link MTU of any network) plus an Ethernet
    /// header and the encryption overhead are dropped.
    pub(crate) fn start(
        socket: std::net::UdpSocket,
        port: u16,
        mtu: u32,
    ) -> Result<Self, OverlayError> {
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
        let slot = mtu as usize + FRAME_HEADROOM + VNET_HDR_LEN + OVERHEAD;
        let rx = tokio::spawn(receive(
            socket.clone(),
            nets.clone(),
            malformed.clone(),
            slot,
        ));
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

    /// Starts the data path of network `id` (VNI `vni`) on the TAP device `tap` of MTU
    /// `mtu`.
    pub(crate) fn add(
        &self,
        id: &str,
        vni: u32,
        mtu: u32,
        tap: OwnedFd,
    ) -> Result<CryptNet, OverlayError> {
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
        // A full-size frame (no VLAN on the bridge) with its virtio-net header is one
        // piece: one datagram no longer than the underlay's MTU.
        let piece = mtu as usize + 14 + VNET_HDR_LEN;
        let tx = tokio::spawn(send(shared.clone(), self.socket.clone(), self.port, piece));
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
        ifr.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr)
    };
    if rc < 0 {
        return Err(OverlayError::io(
            format!("creating TAP device {name}"),
            io::Error::last_os_error(),
        ));
    }
    // The kernel may hand over TCP super-frames (up to 64 KiB) with partial checksums:
    // the receiving node's kernel segments and checksums them.
    let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETOFFLOAD as _,
            offloads as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(OverlayError::io(
            format!("enabling offloads on {name}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(fd)
}

/// Reads up to `frames.len()` frames from the TAP device (at least one), their lengths
/// in `lens`.
async fn read_tap(
    tap: &AsyncFd<OwnedFd>,
    frames: &mut [Vec<u8>],
    lens: &mut [usize],
) -> io::Result<usize> {
    loop {
        let mut guard = tap.readable().await?;
        let mut count = 0;
        while count < frames.len() {
            let buf = &mut frames[count];
            let read = guard.try_io(|fd| {
                // SAFETY: reads at most `buf.len()` bytes into a live buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(Ok(n)) => {
                    lens[count] = n;
                    count += 1;
                }
                Ok(Err(e)) if count == 0 => return Err(e),
                // Would block (readiness cleared), or an error after some frames.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if count > 0 {
            return Ok(count);
        }
    }
}

/// A socket address as the kernel takes it.
fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, large and aligned enough for both families.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: see above.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: see above.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address in `ss`, if it is IPv4 or IPv6.
fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET).
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6).
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Most bytes of one UDP GSO send (the payload of one IPv4 UDP datagram).
const GSO_MAX_BYTES: usize = 65_000;
/// Most datagrams of one UDP GSO send (`UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;

/// `sendmmsg(2)` of `runs` (node, first, end): datagrams `sealed[first..end]` to the
/// node, as one UDP GSO send (`UDP_SEGMENT`, the size of the first) when there are
/// several; how many runs were sent (at least one).
fn send_runs(
    fd: i32,
    sealed: &[Vec<u8>],
    runs: &[(SocketAddr, usize, usize)],
) -> io::Result<usize> {
    let mut addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        runs.iter().map(|r| to_sockaddr(&r.0)).collect();
    let mut iovs: Vec<libc::iovec> = sealed[..runs.last().map_or(0, |r| r.2)]
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    // One cmsghdr with a u16 per run, 8-byte aligned.
    let mut controls = vec![[0u64; 4]; runs.len()];
    // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize,
            libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize,
        )
    };
    let iov_base = iovs.as_mut_ptr();
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(runs.len());
    for (((_, first, end), (addr, addr_len)), control) in
        runs.iter().zip(addrs.iter_mut()).zip(controls.iter_mut())
    {
        // SAFETY: mmsghdr is plain data; every pointer set below (addresses, iovecs,
        // control buffers) outlives the call.
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
        h.msg_hdr.msg_namelen = *addr_len;
        h.msg_hdr.msg_iov = unsafe { iov_base.add(*first) };
        h.msg_hdr.msg_iovlen = (end - first) as _;
        if end - first > 1 {
            let cmsg = control.as_mut_ptr().cast::<libc::cmsghdr>();
            // SAFETY: the control buffer (32 bytes, aligned) holds CMSG_SPACE(2) bytes.
            unsafe {
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = len as _;
                let size = sealed[*first].len() as u16;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
            }
            h.msg_hdr.msg_control = control.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = space as _;
        }
        hdrs.push(h);
    }
    // SAFETY: `hdrs` points at live addresses, buffers and controls during the call.
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as _, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The sending task of one network: TAP → (ARP proxy | seal → UDP). Reads up to
/// `READ_BATCH` messages (virtio-net header and frame) at a time, seals each in pieces of
/// at most `piece` bytes, and sends the datagrams with `sendmmsg`, `BATCH` at a time.
async fn send(net: Arc<NetShared>, socket: Arc<UdpSocket>, port: u16, piece: usize) {
    // One byte more than the longest message: a message that fills its buffer was cut.
    let mut messages = vec![vec![0u8; MAX_MESSAGE + 1]; READ_BATCH];
    let mut lens = [0usize; READ_BATCH];
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    // Runs of datagrams for one node: (node, first, end), each sent as one UDP GSO send.
    let mut runs: Vec<(SocketAddr, usize, usize)> = Vec::new();
    let mut reply = vec![0u8; VNET_HDR_LEN];
    loop {
        let count = match read_tap(&net.tap, &mut messages, &mut lens).await {
            Ok(n) => n,
            Err(e) => {
                bump(&net.counters.errors);
                tracing::warn!(network = %net.id, error = %e, "reading tap0");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        runs.clear();
        let mut used = 0;
        {
            let peers = net.peers.load();
            let ring = net.ring.load();
            for (buf, &n) in messages.iter().zip(&lens).take(count) {
                let message = &buf[..n];
                if message.len() < VNET_HDR_LEN + 14 || message.len() > MAX_MESSAGE {
                    bump(&net.counters.not_forwarded);
                    continue;
                }
                let frame = &message[VNET_HDR_LEN..];
                if frame[0] & 1 == 1 {
                    // Broadcast or multicast: only ARP requests for known peers are
                    // answered; nothing is flooded to the other nodes.
                    match arp_reply(frame, |ip| peers.by_ip.get(&ip).copied()) {
                        Some(arp) => {
                            reply.truncate(VNET_HDR_LEN);
                            reply.extend_from_slice(&arp);
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
                let Some(ring) = ring.as_ref() else {
                    bump(&net.counters.no_key);
                    continue;
                };
                let first = used;
                if !ring.seal_message(message, piece, &mut sealed, &mut used) {
                    bump(&net.counters.no_key);
                    continue;
                }
                // All pieces but the last have one size: runs of them are GSO sends.
                let per_send = (GSO_MAX_BYTES / sealed[first].len()).clamp(1, GSO_MAX_SEGMENTS);
                let node = SocketAddr::new(node, port);
                let mut at = first;
                while at < used {
                    let end = used.min(at + per_send);
                    runs.push((node, at, end));
                    at = end;
                }
            }
        }
        let mut from = 0;
        while from < runs.len() {
            let to = runs.len().min(from + BATCH);
            let sent = socket
                .async_io(tokio::io::Interest::WRITABLE, || {
                    send_runs(socket.as_raw_fd(), &sealed, &runs[from..to])
                })
                .await;
            match sent {
                Ok(n) => {
                    let datagrams: usize = runs[from..from + n].iter().map(|r| r.2 - r.1).sum();
                    net.counters
                        .sent
                        .fetch_add(datagrams as u64, Ordering::Relaxed);
                    from += n;
                }
                Err(e) => {
                    // The first run failed: skip it.
                    bump(&net.counters.errors);
                    tracing::debug!(network = %net.id, node = %runs[from].0, error = %e, "sending encrypted datagrams");
                    from += 1;
                }
            }
        }
    }
}

/// `recvmmsg(2)` into `bufs`: per datagram its length (`None` if cut) and sender.
fn recv_batch(
    fd: i32,
    bufs: &mut [Vec<u8>],
    got: &mut Vec<(Option<usize>, Option<SocketAddr>)>,
) -> io::Result<()> {
    // SAFETY: sockaddr_storage is plain data.
    let mut addrs: Vec<libc::sockaddr_storage> = (0..bufs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = addrs
        .iter_mut()
        .zip(iovs.iter_mut())
        .map(|(addr, iov)| {
            // SAFETY: mmsghdr is plain data; the pointers set below outlive the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: `hdrs` points at live buffers and addresses for the duration of the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as _,
            0,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    got.clear();
    for (h, addr) in hdrs.iter().zip(&addrs).take(n as usize) {
        let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        got.push(((!cut).then_some(h.msg_len as usize), from_sockaddr(addr)));
    }
    Ok(())
}

/// The receiving task of a node: UDP → (authenticate, decrypt) → the TAP device of the
/// datagram's network, `BATCH` datagrams at a time of at most `slot` bytes.
async fn receive(
    socket: Arc<UdpSocket>,
    nets: Arc<RwLock<HashMap<u32, Arc<NetShared>>>>,
    malformed: Arc<AtomicU64>,
    slot: usize,
) {
    let mut bufs = vec![vec![0u8; slot]; BATCH];
    let mut got = Vec::with_capacity(BATCH);
    let mut message = Vec::with_capacity(MAX_MESSAGE);
    let mut receivers: HashMap<u32, Receiver> = HashMap::new();
    loop {
        let received = socket
            .async_io(tokio::io::Interest::READABLE, || {
                recv_batch(socket.as_raw_fd(), &mut bufs, &mut got)
            })
            .await;
        if let Err(e) = received {
            tracing::debug!(error = %e, "receiving on the encrypted data path");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        if receivers.len() > nets.read().len() + 16 {
            let live = nets.read();
            receivers.retain(|vni, _| live.contains_key(vni));
        }
        for (buf, (len, from)) in bufs.iter_mut().zip(&got) {
            let (Some(len), Some(from)) = (len, from) else {
                bump(&malformed);
                continue;
            };
            let datagram = &mut buf[..*len];
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
            let receiver = receivers.entry(header.vni).or_default();
            match receiver.accept(&ring, datagram, &mut message) {
                Ok(true) => {
                    net.write_tap(&message);
                    bump(&net.counters.received);
                }
                Ok(false) => {}
                Err(Rejected::Malformed) => bump(&malformed),
                Err(Rejected::UnknownKey) => bump(&net.counters.unknown_key),
                Err(Rejected::Forged) => bump(&net.counters.forged),
                Err(Rejected::Replayed) => bump(&net.counters.replayed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip_through_the_kernel_form() {
        for a in ["192.168.242.1:4790", "[fd00::1]:4790", "[fe80::1%3]:1"] {
            let addr: SocketAddr = a.parse().unwrap();
            let (ss, _) = to_sockaddr(&addr);
            let back = from_sockaddr(&ss).unwrap();
            assert_eq!((back.ip(), back.port()), (addr.ip(), addr.port()), "{a}");
        }
    }
}
