//! The Linux implementation of [`Overlay`]: rtnetlink in the node's namespace, in each
//! network's sandbox and in the task namespaces.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan};
use tokio::sync::Mutex;

use super::crypt::{ENCRYPTION_MTU_COST, KeyRing};
use super::datapath::{CryptNet, CryptPlane, open_tap};
use super::peers::{add_peer, del_peer, programmed_peers};
use super::veth::{self, Bridge, Route, TaskEnd, TaskNs};
use super::{
    Cidr, CryptStats, MacAddr, NetworkDef, OverlayConfig, OverlayError, ParsedNetwork, Peer,
    SANDBOX_PREFIX, check_ifname, check_name, check_peers, check_task_addr, mac_for_ip, netns,
    parse_network,
};

/// Name of the bridge inside a sandbox.
const BRIDGE: &str = "br0";
/// Name of the VXLAN device inside a sandbox.
const VXLAN: &str = "vxlan0";
/// Name of the TAP device inside the sandbox of an encrypted network.
const TAP: &str = "tap0";
/// How long `patiently` retries.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `f` until it succeeds, fails with an error other than the system error `busy`,
/// or [`PATIENCE`] is over, letting the runtime run between tries (resources of an
/// [`Overlay`] dropped just before are released as the runtime drops its aborted tasks).
async fn patiently<T>(
    busy: i32,
    mut f: impl FnMut() -> Result<T, OverlayError>,
) -> Result<T, OverlayError> {
    let started = std::time::Instant::now();
    loop {
        match f() {
            Err(OverlayError::Io { source, .. })
                if source.raw_os_error() == Some(busy) && started.elapsed() < PATIENCE =>
            {
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// One node's overlay networks (see the [module docs](super)). One per node; every
/// method may be called concurrently (they are serialized inside).
///
/// Dropping an `Overlay` leaves the sandboxes and task namespaces in place, as Docker
/// does across daemon restarts: a new `Overlay` with the same configuration adopts them
/// through [`Overlay::ensure_network`]; [`Overlay::remove_network`] and
/// [`Overlay::remove_task_netns`] remove them.
pub struct Overlay {
    cfg: OverlayConfig,
    /// Netlink in the namespace of the thread that called [`Overlay::new`]: the underlay.
    host: Handle,
    /// That namespace, where the encrypted data path's socket is opened.
    underlay_ns: std::fs::File,
    networks: Mutex<HashMap<String, Sandbox>>,
    /// The encrypted data path, while an encrypted network is set up (only changed with
    /// `networks` locked).
    plane: parking_lot::Mutex<Option<CryptPlane>>,
}

/// A network's sandbox as this node set it up.
struct Sandbox {
    parsed: ParsedNetwork,
    handle: Handle,
    bridge: u32,
    /// MTU of the network's links.
    mtu: u32,
    /// The device that carries frames to the other nodes.
    dev: Dev,
    /// The remote endpoints programmed on `vxlan0` or in the data path.
    peers: Vec<Peer>,
}

/// How a sandbox reaches the other nodes.
enum Dev {
    /// The kernel's `vxlan0` (its index in the sandbox).
    Vxlan(u32),
    /// `tap0` and the user-space encrypted data path.
    Crypt(CryptNet),
}

impl Dev {
    fn vxlan(&self) -> Option<u32> {
        match self {
            Dev::Vxlan(index) => Some(*index),
            Dev::Crypt(_) => None,
        }
    }
}

/// The sandbox of `network_id`, or [`OverlayError::UnknownNetwork`].
fn sandbox<'a>(
    nets: &'a HashMap<String, Sandbox>,
    network_id: &str,
) -> Result<&'a Sandbox, OverlayError> {
    nets.get(network_id).ok_or_else(|| unknown(network_id))
}

fn unknown(network_id: &str) -> OverlayError {
    OverlayError::UnknownNetwork(network_id.to_owned())
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("cfg", &self.cfg).finish()
    }
}

pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// Maps a netlink error of `op`; `EPERM` becomes [`OverlayError::NotPermitted`].
pub(crate) fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> OverlayError {
    move |e| {
        let op = op.into();
        match errno(&e) {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                OverlayError::NotPermitted(format!("{op}: {e} (needs CAP_NET_ADMIN)"))
            }
            errno => OverlayError::Netlink {
                op,
                message: e.to_string(),
                errno,
            },
        }
    }
}

/// Opens a netlink connection in the namespace at `path` (from a thread that joined it)
/// and drives it on the current runtime.
pub(crate) fn connect_in(path: &Path) -> Result<Handle, OverlayError> {
    let rt = tokio::runtime::Handle::current();
    let (conn, handle, _) = netns::run_in(path, move || {
        let _in_runtime = rt.enter();
        rtnetlink::new_connection().map_err(|e| OverlayError::io("opening a netlink socket", e))
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The index of link `name`, `None` when there is none.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, OverlayError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

pub(crate) async fn must_index(handle: &Handle, name: &str) -> Result<u32, OverlayError> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| OverlayError::Netlink {
            op: format!("looking up link {name}"),
            message: "the link just created is gone".into(),
            errno: Some(libc::ENODEV),
        })
}

pub(crate) async fn set_link(
    handle: &Handle,
    op: String,
    msg: LinkUnspecMsg,
) -> Result<(), OverlayError> {
    handle.link().set(msg).execute().await.map_err(nl(op))
}

pub(crate) type LinkUnspecMsg = netlink_packet_route::link::LinkMessage;

/// Adds `ip/prefix_len` to link `index`; an address already there is fine.
pub(crate) async fn add_address(
    handle: &Handle,
    index: u32,
    ip: IpAddr,
    prefix_len: u8,
    what: &str,
) -> Result<(), OverlayError> {
    match handle.address().add(index, ip, prefix_len).execute().await {
        Err(e) if errno(&e) != Some(libc::EEXIST) => {
            Err(nl(format!("adding {ip}/{prefix_len} to {what}"))(e))
        }
        _ => Ok(()),
    }
}

impl Overlay {
    /// Starts the overlay of this node. The namespace of the calling thread is the
    /// underlay: VXLAN sockets live there. Needs a tokio runtime.
    ///
    /// Fails with [`OverlayError::NotPermitted`] when not root, with
    /// [`OverlayError::Unsupported`] without network namespaces, and with
    /// [`OverlayError::InvalidArgument`] for a bad configuration.
    pub async fn new(cfg: OverlayConfig) -> Result<Overlay, OverlayError> {
        let uid = nix::unistd::geteuid();
        if !uid.is_root() {
            return Err(OverlayError::NotPermitted(format!(
                "overlay networks need root (CAP_NET_ADMIN for links, CAP_SYS_ADMIN for \
                 network namespaces); running as uid {uid}"
            )));
        }
        if !Path::new("/proc/self/ns/net").exists() {
            return Err(OverlayError::Unsupported(
                "the kernel has no network namespaces (/proc/self/ns/net is missing)".into(),
            ));
        }
        if cfg.vxlan_port == 0 || cfg.crypt_port == 0 {
            return Err(OverlayError::InvalidArgument(
                "vxlan_port and crypt_port may not be 0".into(),
            ));
        }
        if cfg.vxlan_port == cfg.crypt_port {
            return Err(OverlayError::InvalidArgument(format!(
                "crypt_port {} is the vxlan_port too: the kernel's VXLAN sockets hold it",
                cfg.crypt_port
            )));
        }
        if !(68 + ENCRYPTION_MTU_COST..=65535).contains(&cfg.mtu) {
            return Err(OverlayError::InvalidArgument(format!(
                "mtu {} is outside {}..=65535",
                cfg.mtu,
                68 + ENCRYPTION_MTU_COST
            )));
        }
        if cfg.underlay_ip.is_unspecified() || cfg.underlay_ip.is_multicast() {
            return Err(OverlayError::InvalidArgument(format!(
                "underlay_ip {} is not a unicast address of this node",
                cfg.underlay_ip
            )));
        }
        let (conn, host, _) = rtnetlink::new_connection()
            .map_err(|e| OverlayError::io("opening a netlink socket", e))?;
        tokio::spawn(conn);
        let underlay_ns = netns::open(Path::new("/proc/thread-self/ns/net"))?;
        tracing::info!(underlay = %cfg.underlay_ip, port = cfg.vxlan_port, "overlay started");
        Ok(Overlay {
            cfg,
            host,
            underlay_ns,
            networks: Mutex::new(HashMap::new()),
            plane: parking_lot::Mutex::new(None),
        })
    }

    /// The configuration this overlay runs with.
    pub fn config(&self) -> &OverlayConfig {
        &self.cfg
    }

    /// Where the sandbox namespace of network `network_id` is (or would be) mounted, for
    /// a caller that serves something inside it (e.g. the embedded DNS).
    pub fn sandbox_netns(&self, network_id: &str) -> PathBuf {
        self.cfg
            .netns_dir
            .join(format!("{SANDBOX_PREFIX}{network_id}"))
    }

    /// Creates the sandbox of `net` (idempotent, and adopting a sandbox left by a previous
    /// run): its namespace, the bridge `br0` with the gateway address, and `vxlan0` (VNI
    /// `net.vni`, local = this node's underlay address, `vxlan_port`, no learning, ARP
    /// proxy). A network already set up with another VNI or subnet is refused.
    ///
    /// For an encrypted network, `tap0` and the user-space data path take the place of
    /// `vxlan0` (see the [module docs](super)): the first one opens the UDP socket on
    /// `underlay_ip`:`crypt_port`, and their tasks run on the calling tokio runtime. Its
    /// links get an MTU [`ENCRYPTION_MTU_COST`](super::ENCRYPTION_MTU_COST) bytes lower.
    /// It carries nothing until [`Overlay::set_keys`] gives it keys. Its peers and keys live
    /// in this process: a sandbox adopted from a previous run gets a new `tap0` and needs
    /// `set_peers` and `set_keys` again. A sandbox left by a previous run with the other
    /// kind of device is refused (remove the network first).
    pub async fn ensure_network(&self, net: &NetworkDef) -> Result<(), OverlayError> {
        let parsed = parse_network(net)?;
        let mut nets = self.networks.lock().await;
        if let Some(sb) = nets.get(&net.id) {
            if sb.parsed != parsed {
                return Err(OverlayError::InvalidArgument(format!(
                    "network {} is already set up with vni {}, subnet {}, gateway {}, encrypted {}",
                    net.id, sb.parsed.vni, sb.parsed.subnet, sb.parsed.gateway, sb.parsed.encrypted
                )));
            }
            return Ok(());
        }
        let path = self.sandbox_netns(&net.id);
        let existed = netns::is_netns(&path);
        if parsed.encrypted {
            self.start_plane().await?;
        }
        netns::create(&self.cfg.netns_dir, &format!("{SANDBOX_PREFIX}{}", net.id))?;
        match self.build_sandbox(&net.id, parsed, &path).await {
            Ok(sb) => {
                tracing::info!(network = %net.id, vni = net.vni, subnet = %parsed.subnet, encrypted = net.encrypted, "overlay network ready");
                nets.insert(net.id.clone(), sb);
                Ok(())
            }
            Err(e) => {
                if !existed {
                    let _ = netns::remove(&path);
                }
                self.stop_idle_plane();
                Err(e)
            }
        }
    }

    /// Opens the encrypted data path's socket in the underlay namespace, unless open.
    ///
    /// An `Overlay` of this process dropped just before still holds the port until its
    /// runtime has dropped the aborted tasks: a port in use is retried for a while.
    async fn start_plane(&self) -> Result<(), OverlayError> {
        if self.plane.lock().is_some() {
            return Ok(());
        }
        let at = std::net::SocketAddr::new(self.cfg.underlay_ip, self.cfg.crypt_port);
        let socket = patiently(libc::EADDRINUSE, || {
            netns::run_in_ns(&self.underlay_ns, "the underlay namespace", || {
                std::net::UdpSocket::bind(at).map_err(|e| {
                    OverlayError::io(
                        format!("binding the encrypted data path's UDP socket to {at}"),
                        e,
                    )
                })
            })
        })
        .await?;
        // Only ensure_network starts the plane, with `networks` locked: nobody raced us.
        let mut plane = self.plane.lock();
        *plane = Some(CryptPlane::start(
            socket,
            self.cfg.crypt_port,
            self.cfg.mtu,
        )?);
        tracing::info!(%at, "encrypted data path listening");
        Ok(())
    }

    /// Closes the encrypted data path's socket when no network uses it.
    fn stop_idle_plane(&self) {
        let mut plane = self.plane.lock();
        if plane.as_ref().is_some_and(CryptPlane::is_idle) {
            *plane = None;
            tracing::info!("encrypted data path closed");
        }
    }

    async fn build_sandbox(
        &self,
        id: &str,
        parsed: ParsedNetwork,
        path: &Path,
    ) -> Result<Sandbox, OverlayError> {
        let mtu = if parsed.encrypted {
            self.cfg.mtu - ENCRYPTION_MTU_COST
        } else {
            self.cfg.mtu
        };
        let handle = connect_in(path)?;
        let bridge = match link_index(&handle, BRIDGE).await? {
            Some(index) => index,
            None => {
                let msg = LinkBridge::new(BRIDGE).mtu(mtu).build();
                handle
                    .link()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(nl("creating bridge br0"))?;
                must_index(&handle, BRIDGE).await?
            }
        };
        let gateway = IpAddr::V4(parsed.gateway);
        add_address(&handle, bridge, gateway, parsed.subnet.prefix_len, BRIDGE).await?;
        let up = LinkUnspec::new_with_index(bridge).up().build();
        set_link(&handle, "bringing br0 up".into(), up).await?;
        let other = if parsed.encrypted { VXLAN } else { TAP };
        if link_index(&handle, other).await?.is_some() {
            return Err(OverlayError::InvalidArgument(format!(
                "the sandbox of network {id} has a {other} (the network was set up {} before); \
                 remove the network first",
                if parsed.encrypted {
                    "unencrypted"
                } else {
                    "encrypted"
                }
            )));
        }
        if parsed.encrypted {
            let crypt = self
                .build_tap(id, parsed.vni, path, &handle, bridge, mtu)
                .await?;
            return Ok(Sandbox {
                parsed,
                handle,
                bridge,
                mtu,
                dev: Dev::Crypt(crypt),
                peers: Vec::new(),
            });
        }
        let (vxlan, peers) = match link_index(&handle, VXLAN).await? {
            // Adopted from a previous run: its peers are whatever it programmed.
            Some(index) => (index, programmed_peers(&handle, index).await?),
            None => (
                self.create_vxlan(parsed.vni, path, &handle).await?,
                Vec::new(),
            ),
        };
        let port = LinkUnspec::new_with_index(vxlan)
            .controller(bridge)
            .up()
            .build();
        set_link(&handle, "adding vxlan0 to br0".into(), port).await?;
        Ok(Sandbox {
            parsed,
            handle,
            bridge,
            mtu,
            dev: Dev::Vxlan(vxlan),
            peers,
        })
    }

    /// Creates `tap0` in the sandbox at `path` (from a thread in it), makes it a port of
    /// the bridge, up, and starts its data path.
    async fn build_tap(
        &self,
        id: &str,
        vni: u32,
        path: &Path,
        sandbox: &Handle,
        bridge: u32,
        mtu: u32,
    ) -> Result<CryptNet, OverlayError> {
        // EBUSY: the tap0 of a data path dropped just before is still open (see
        // `start_plane`).
        let fd = patiently(libc::EBUSY, || netns::run_in(path, || open_tap(TAP))).await?;
        let index = must_index(sandbox, TAP).await?;
        let port = LinkUnspec::new_with_index(index)
            .mtu(mtu)
            .controller(bridge)
            .up()
            .build();
        set_link(sandbox, "adding tap0 to br0".into(), port).await?;
        let plane = self.plane.lock();
        let plane = plane.as_ref().ok_or_else(|| OverlayError::Io {
            op: format!("starting the data path of network {id}"),
            source: std::io::Error::other("the encrypted data path is not running"),
        })?;
        plane.add(id, vni, mtu, fd)
    }

    /// Creates the VXLAN device in the node's namespace (so its socket is on the
    /// underlay), moves it into the sandbox and names it `vxlan0` there.
    async fn create_vxlan(
        &self,
        vni: u32,
        path: &Path,
        sandbox: &Handle,
    ) -> Result<u32, OverlayError> {
        let tmp = format!("vx{vni:06x}{:04x}", rand::random::<u16>());
        let mut msg = LinkVxlan::new(&tmp, vni)
            .port(self.cfg.vxlan_port)
            .learning(false)
            .proxy(true)
            .mtu(self.cfg.mtu);
        msg = match self.cfg.underlay_ip {
            IpAddr::V4(ip) => msg.local(ip),
            IpAddr::V6(ip) => msg.local6(ip),
        };
        let port = self.cfg.vxlan_port;
        self.host
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(|e| match errno(&e) {
                Some(libc::EOPNOTSUPP) => OverlayError::Unsupported(format!(
                    "the kernel cannot create vxlan devices (module vxlan): {e}"
                )),
                Some(libc::EEXIST) => OverlayError::InvalidArgument(format!(
                    "VNI {vni} on UDP port {port} is already used by another vxlan device of this node"
                )),
                _ => nl(format!("creating vxlan device for VNI {vni}"))(e),
            })?;
        let index = must_index(&self.host, &tmp).await?;
        let ns = netns::open(path)?;
        let moved = LinkUnspec::new_with_index(index)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        if let Err(e) = set_link(&self.host, format!("moving {tmp} into the sandbox"), moved).await
        {
            let _ = self.host.link().del(index).execute().await;
            return Err(e);
        }
        let index = must_index(sandbox, &tmp).await?;
        let renamed = LinkUnspec::new_with_index(index).name(VXLAN).build();
        if let Err(e) = set_link(sandbox, format!("renaming {tmp} to vxlan0"), renamed).await {
            let _ = sandbox.link().del(index).execute().await;
            return Err(e);
        }
        Ok(index)
    }

    /// Removes the sandbox of `network_id` (idempotent, also one left by a previous run):
    /// its VXLAN device, then the namespace, which takes the bridge and every attached
    /// veth pair with it.
    pub async fn remove_network(&self, network_id: &str) -> Result<(), OverlayError> {
        check_name("network id", network_id)?;
        let path = self.sandbox_netns(network_id);
        let mut nets = self.networks.lock().await;
        let sandbox = nets.remove(network_id);
        let (handle, vxlan) = match sandbox {
            Some(sb) => {
                if let Dev::Crypt(crypt) = &sb.dev
                    && let Some(plane) = self.plane.lock().as_ref()
                {
                    plane.remove(crypt);
                }
                let vxlan = sb.dev.vxlan();
                // Dropping the data path closes tap0.
                drop(sb.dev);
                self.stop_idle_plane();
                (Some(sb.handle), vxlan)
            }
            None if netns::is_netns(&path) => {
                let handle = connect_in(&path)?;
                let vxlan = link_index(&handle, VXLAN).await?;
                (Some(handle), vxlan)
            }
            None => (None, None),
        };
        if let (Some(handle), Some(vxlan)) = (&handle, vxlan) {
            // Explicitly, so that the VNI is free at once even if the namespace lingers.
            let op = format!("deleting vxlan0 of network {network_id}");
            veth::delete_link(handle, vxlan, op).await?;
        }
        drop(handle);
        drop(nets);
        netns::remove(&path)?;
        tracing::info!(network = %network_id, "overlay network removed");
        Ok(())
    }

    /// Sets the remote endpoints of `network_id` to exactly `peers`: a permanent FDB
    /// entry (MAC → node's underlay address) and a permanent neighbour entry (IP → MAC) on
    /// `vxlan0` for each, removing those of peers no longer listed. Peers whose node is
    /// this one are skipped. Bad input changes nothing; a netlink failure midway leaves
    /// the peers programmed so far (a retry completes them).
    pub async fn set_peers(&self, network_id: &str, peers: &[Peer]) -> Result<(), OverlayError> {
        let mut nets = self.networks.lock().await;
        let sb = nets
            .get_mut(network_id)
            .ok_or_else(|| unknown(network_id))?;
        let wanted = check_peers(network_id, &sb.parsed, self.cfg.underlay_ip, peers)?;
        let vxlan = match &sb.dev {
            Dev::Vxlan(index) => *index,
            Dev::Crypt(crypt) => {
                crypt.set_peers(&wanted);
                tracing::debug!(network = %network_id, peers = wanted.len(), "encrypted overlay peers set");
                sb.peers = wanted;
                return Ok(());
            }
        };
        let stale: Vec<Peer> = sb
            .peers
            .iter()
            .filter(|p| !wanted.contains(p))
            .copied()
            .collect();
        for p in stale {
            del_peer(&sb.handle, vxlan, &p).await?;
            sb.peers.retain(|q| *q != p);
        }
        for p in wanted {
            if sb.peers.contains(&p) {
                continue;
            }
            add_peer(&sb.handle, vxlan, &p).await?;
            sb.peers.push(p);
        }
        tracing::debug!(network = %network_id, peers = sb.peers.len(), "overlay peers set");
        Ok(())
    }

    /// Sets the key ring of the encrypted network `network_id`: 1 to
    /// [`MAX_KEYS`](super::MAX_KEYS) distinct keys of
    /// [`MIN_KEY_LEN`](super::MIN_KEY_LEN) to [`MAX_KEY_LEN`](super::MAX_KEY_LEN) bytes,
    /// the primary first. Frames are sealed with the primary and accepted under any of
    /// them, so rotating without loss is three calls on every node: add the new key as a
    /// secondary, make it the primary, drop the old one. The swap is atomic for the data
    /// path (established connections carry on); the sender draws a fresh salt.
    ///
    /// [`OverlayError::UnknownNetwork`] if the network is not set up here,
    /// [`OverlayError::InvalidArgument`] if it is not encrypted or the keys are bad (the
    /// ring in use stays).
    pub async fn set_keys(&self, network_id: &str, keys: &[Vec<u8>]) -> Result<(), OverlayError> {
        let nets = self.networks.lock().await;
        let sb = sandbox(&nets, network_id)?;
        let Dev::Crypt(crypt) = &sb.dev else {
            return Err(OverlayError::InvalidArgument(format!(
                "network {network_id} is not encrypted: it has no keys"
            )));
        };
        let ring = KeyRing::new(network_id, sb.parsed.vni, keys)?;
        let ids: Vec<String> = ring
            .key_ids()
            .iter()
            .map(|id| format!("{id:08x}"))
            .collect();
        crypt.set_ring(ring);
        tracing::info!(network = %network_id, keys = ?ids, "encryption keys set (primary first)");
        Ok(())
    }

    /// The data-path counters of the encrypted network `network_id` on this node.
    /// [`OverlayError::InvalidArgument`] if it is not encrypted.
    pub async fn crypt_stats(&self, network_id: &str) -> Result<CryptStats, OverlayError> {
        let nets = self.networks.lock().await;
        let sb = sandbox(&nets, network_id)?;
        let Dev::Crypt(crypt) = &sb.dev else {
            return Err(OverlayError::InvalidArgument(format!(
                "network {network_id} is not encrypted"
            )));
        };
        let plane = self.plane.lock();
        let plane = plane.as_ref().ok_or_else(|| OverlayError::Io {
            op: format!("reading the counters of network {network_id}"),
            source: std::io::Error::other("the encrypted data path is not running"),
        })?;
        Ok(crypt.stats(plane))
    }

    /// The remote endpoints programmed on `network_id` (for `docker network inspect`).
    pub async fn peers(&self, network_id: &str) -> Result<Vec<Peer>, OverlayError> {
        let nets = self.networks.lock().await;
        let sb = sandbox(&nets, network_id)?;
        Ok(sb.peers.clone())
    }

    /// Connects the task network namespace at `task_netns` (a named namespace or
    /// `/proc/<pid>/ns/net`) to `network_id`: a veth pair with one end on the sandbox's
    /// bridge and the other in the task namespace, named `ifname`, with `addr`, the MAC
    /// [`mac_for_ip`] of it and the network's MTU, up; with a default route via the
    /// gateway when `default_route`. Returns the MAC. On failure the pair is removed.
    pub async fn attach(
        &self,
        network_id: &str,
        task_netns: &Path,
        ifname: &str,
        addr: Cidr,
        default_route: bool,
    ) -> Result<MacAddr, OverlayError> {
        check_ifname(ifname)?;
        let nets = self.networks.lock().await;
        let sb = sandbox(&nets, network_id)?;
        let ip = check_task_addr(network_id, &sb.parsed, addr)?;
        let mac = mac_for_ip(ip);
        let task = TaskNs::open(task_netns, ifname).await?;
        let bridge = Bridge {
            handle: &sb.handle,
            index: sb.bridge,
            name: BRIDGE,
            mtu: sb.mtu,
            prefixes: ("vb", "vt"),
        };
        let route = if default_route {
            Route::Add(sb.parsed.gateway)
        } else {
            Route::None
        };
        let end = TaskEnd {
            ifname,
            mac,
            addr,
            route,
        };
        veth::connect(&bridge, &task, &end).await?;
        tracing::debug!(network = %network_id, task = %task_netns.display(), %addr, %mac, "task attached");
        Ok(mac)
    }

    /// Disconnects `ifname` of the task namespace at `task_netns` from `network_id`:
    /// deletes the veth pair (idempotent: a missing interface is fine).
    pub async fn detach(
        &self,
        network_id: &str,
        task_netns: &Path,
        ifname: &str,
    ) -> Result<(), OverlayError> {
        check_ifname(ifname)?;
        if !self.networks.lock().await.contains_key(network_id) {
            return Err(unknown(network_id));
        }
        let task = connect_in(task_netns)?;
        veth::remove_link(&task, ifname).await
    }

    /// Creates (idempotent) the named network namespace `name` for a task, mounted at
    /// `<netns_dir>/<name>` like `ip netns add`, with `lo` up; returns its path. Names
    /// starting with [`SANDBOX_PREFIX`] are the sandboxes' and are refused.
    pub fn create_task_netns(&self, name: &str) -> Result<PathBuf, OverlayError> {
        check_task_netns_name(name)?;
        netns::create(&self.cfg.netns_dir, name)
    }

    /// Removes the named task namespace `name` (idempotent); its interfaces go with it
    /// once no process is left in it.
    pub fn remove_task_netns(&self, name: &str) -> Result<(), OverlayError> {
        check_task_netns_name(name)?;
        netns::remove(&self.cfg.netns_dir.join(name))
    }
}

fn check_task_netns_name(name: &str) -> Result<(), OverlayError> {
    check_name("task namespace", name)?;
    if name.starts_with(SANDBOX_PREFIX) {
        return Err(OverlayError::InvalidArgument(format!(
            "task namespace {name:?} may not start with {SANDBOX_PREFIX:?} (sandboxes)"
        )));
    }
    Ok(())
}
