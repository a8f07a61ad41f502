//! Tasks on overlay networks: the control side (which tasks are on which network,
//! on which node) and each node's data plane (VXLAN sandboxes, the task's
//! interfaces, its embedded DNS and its service VIPs).
//!
//! ```text
//! leader's store ──► feed() ──► NetworkView ──(dispatcher session)──► every node
//!                                                                      │
//!     NetPlane: set_peers, DNS records, VIP rules ◄── set_view() ◄─────┘
//!        ▲
//!        └── NetRuntime (wraps the node's Runtime): attach after create / start,
//!            detach before remove
//! ```
//!
//! The leader's dispatcher computes one [`NetworkView`] from its store — every
//! overlay network (ingress excepted) with tasks, each task with its address and
//! the data-path address of its node, each service on it with its endpoint mode
//! and VIP — and sends it to every node on its session whenever it changes, the
//! way the routing mesh's view travels ([`crate::views::ingress`]).
//!
//! On each node a [`NetPlane`] (root only: without root it logs once and does
//! nothing, and tasks stay on the host's network) runs a
//! [`swarm_net::overlay::Overlay`] on the node's data-path address. The node's
//! runtime is wrapped in a [`NetRuntime`]: when the runtime gives a task a
//! network namespace ([`swarm_runtime::Inspection::netns`]: the process runtime
//! at `create`, the Docker runtime once the container runs), the plane ensures
//! the sandbox of each of the task's overlay networks, attaches one veth per
//! network (`eth0`, `eth1`, ... in the order of the task's attachments, the
//! default route through the first), starts a DNS server on `127.0.0.11:53`
//! inside the namespace serving the records of the task's networks, and writes
//! the VIP rules ([`swarm_net::vip`]). Every view then updates the remote peers
//! of each sandbox in use (an FDB and a neighbour entry per task on another
//! node), the DNS records and the VIP rules. `remove` detaches the task first;
//! the last local task of a network takes its sandbox with it.
//!
//! Each such task also gets a veth on the node's gateway bridge
//! ([`swarm_net::gateway`], Docker's `docker_gwbridge`: `swarm_gwbridge`,
//! 172.18.0.0/16), named after its overlay interfaces (`eth<N>`), with an address
//! of the bridge and the task's default route (the overlays keep their connected
//! routes): its outbound traffic leaves through the node, masqueraded. The
//! [`NetRuntime`] reports that address as the task's
//! [`swarm_runtime::Inspection::addr`], where the node's routing mesh reaches it
//! (ingress ports, and host-mode ports the runtime does not bind). Without a
//! gateway (it could not be set up: logged once) the first overlay takes the
//! default route and the task is reached by nothing outside its overlays.
//!
//! Docker containers are attached after they start (their namespace exists only
//! then), so their first moments run without the overlay interfaces: a command
//! that resolves a service name at once may get no answer (nothing listens on
//! 127.0.0.11 yet) and should retry, as it would while the service has no task.
//! A container keeps Docker's `eth0` and its default route (Docker's bridge):
//! the overlay's interfaces come after it (`eth1`, ...) and add only their
//! connected routes, which hold the networks' tasks and VIPs. The namespace
//! (`/proc/<pid>/ns/net`) is held open while the task is attached, so detaching
//! a container that exited, or writing its VIP rules, never follows a reused
//! pid into another process's namespace. Containers get no gateway interface:
//! Docker's bridge already gives them their default route and the address the
//! node reaches them on.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Id;
use swarm_core::types::{ContainerStatus, Task};
use swarm_net::dns::{DnsConfig, DnsServer, NetworkRecords, Resolution, ServiceRecord, TaskRecord};
use swarm_net::gateway::{Gateway, GatewayConfig};
use swarm_net::overlay::{Cidr, NetworkDef, Overlay, OverlayConfig, Peer, mac_for_ip};
use swarm_net::vip::{self, VipRule};
use swarm_runtime::{Inspection, LogChunks, LogOptions, Runtime};
use tokio::sync::{Mutex, watch};
use tonic::async_trait;

use crate::views::network::{
    ENCRYPTED_OPTION, NetworkView, OverlayKeys, ViewNetwork, ViewTask, is_task_overlay, vni_of,
};

/// Where the embedded DNS answers inside a task's namespace (Docker's).
pub const DNS_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

/// How long attaching a task waits for the node's overlay (the first view that
/// tells this node its data-path address).
const OVERLAY_WAIT: Duration = Duration::from_secs(30);

/// Why a task could not be put on its networks.
#[derive(Debug, thiserror::Error)]
pub enum NetPlaneError {
    /// The overlay refused or failed.
    #[error(transparent)]
    Overlay(#[from] swarm_net::overlay::OverlayError),
    /// The VIP rules or a socket in the task's namespace.
    #[error(transparent)]
    Vip(#[from] swarm_net::vip::VipError),
    /// The embedded DNS.
    #[error(transparent)]
    Dns(#[from] swarm_net::dns::DnsError),
    /// The gateway bridge refused or failed.
    #[error(transparent)]
    Gateway(#[from] swarm_net::gateway::GatewayError),
    /// The node's overlay is not running (no data-path address known yet).
    #[error("overlay networks are not running on this node: {0}")]
    Unavailable(String),
}

/// A task attached on this node.
struct Attached {
    /// `/proc/self/fd/<n>`, `n` being [`Attached::_handle`]'s.
    netns: PathBuf,
    /// The task's namespace, held open while it is attached.
    _handle: std::fs::File,
    /// Networks by ID, with the interface in the task.
    networks: Vec<(Id, String)>,
    dns: DnsServer,
    /// The VIP rules last written.
    vips: Option<Vec<VipRule>>,
    /// Its interface on the gateway bridge and its address there.
    gateway: Option<(String, Ipv4Addr)>,
}

struct PlaneInner {
    node_id: Id,
    /// Where sandboxes are mounted: per node, so several nodes on one machine
    /// never share one.
    netns_dir: PathBuf,
    views: watch::Sender<Arc<NetworkView>>,
    overlay: watch::Sender<Option<Arc<Overlay>>>,
    tasks: Mutex<HashMap<Id, Attached>>,
    /// The keys given to each encrypted network's sandbox, so a view that
    /// does not change them does not give them again.
    keys: std::sync::Mutex<HashMap<Id, OverlayKeys>>,
    /// The gateway bridge, set up by the first attach, removed with the last
    /// local task. Each attach in flight holds a clone of it.
    gateway: Mutex<Option<Arc<Gateway>>>,
    /// Whether setting up the gateway failed once (logged once).
    gateway_failed: std::sync::atomic::AtomicBool,
}

/// The overlay data plane of one node (see the [module docs](self)). Cheap to
/// clone.
#[derive(Clone)]
pub struct NetPlane {
    inner: Option<Arc<PlaneInner>>,
}

impl std::fmt::Debug for NetPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetPlane")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl NetPlane {
    /// The plane of node `node_id`: active when the process runs as root (it then
    /// starts following views), else inert (logged once). Sandboxes go under
    /// `/run/swarm/netns/<node id>`.
    pub fn new(node_id: &Id) -> NetPlane {
        if !is_root() {
            tracing::info!(
                "not root: tasks on overlay networks stay on the host network (no VXLAN, DNS or VIPs)"
            );
            return NetPlane { inner: None };
        }
        let netns_dir = Path::new(swarm_net::overlay::DEFAULT_NETNS_DIR).join(node_id.as_str());
        let (views, rx) = watch::channel(Arc::new(NetworkView::default()));
        if let Err(e) = claim(&netns_dir) {
            tracing::warn!(dir = %netns_dir.display(), error = %e, "could not mark the node's sandbox directory");
        }
        let inner = Arc::new(PlaneInner {
            node_id: node_id.clone(),
            netns_dir,
            views,
            overlay: watch::channel(None).0,
            tasks: Mutex::new(HashMap::new()),
            keys: std::sync::Mutex::new(HashMap::new()),
            gateway: Mutex::new(None),
            gateway_failed: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(follow(Arc::downgrade(&inner), rx));
        NetPlane { inner: Some(inner) }
    }

    /// Whether the plane does anything (root).
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Takes the leader's latest view.
    pub fn set_view(&self, view: Arc<NetworkView>) {
        if let Some(i) = &self.inner {
            i.views.send_replace(view);
        }
    }

    /// Puts `task`, whose namespace is at `netns`, on its overlay networks:
    /// sandboxes, one veth each (`fresh`; an adopted task keeps the ones it has),
    /// DNS on 127.0.0.11:53 inside, VIP rules. On failure what was attached is
    /// detached again.
    pub async fn attach(
        &self,
        task: &Task,
        netns: &Path,
        fresh: bool,
    ) -> Result<(), NetPlaneError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let overlay = inner.wait_overlay().await?;
        // A Docker container's namespace is named by its process
        // (`/proc/<pid>/ns/net`): a name that goes away when the container stops
        // and may come to name another process's namespace. Hold the namespace
        // open and name it by that handle from now on (its DNS sockets keep it
        // alive until the task is detached anyway).
        // The gateway records whose its addresses are by this path (the task's
        // own, stable while it lives), not by this process's handle.
        let named = netns.to_path_buf();
        let handle = std::fs::File::open(netns).map_err(|source| vip::VipError::Io {
            op: format!("opening {}", netns.display()),
            source,
        })?;
        let netns = &PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&handle)
        ));
        let before = interfaces_before(task, netns).await?;
        // A namespace with a default route of its own (a Docker container on
        // Docker's bridge) has its way out and its address: no gateway.
        let gateway = match before.default_route {
            true => None,
            false => inner.gateway().await,
        };
        let mut done: Vec<(Id, String)> = Vec::new();
        let mut on_gateway: Option<(String, Ipv4Addr)> = None;
        let result = async {
            for a in task.networks.iter().filter(|a| is_task_overlay(&a.network)) {
                let Some(cidr) = a.addresses.first() else {
                    continue;
                };
                let net = &a.network;
                let ipam = net.ipam.as_ref().and_then(|i| i.configs.first());
                let def = NetworkDef {
                    id: net.id.to_string(),
                    vni: vni_of(net).unwrap_or(0),
                    subnet: ipam.map(|c| c.subnet.clone()).unwrap_or_default(),
                    gateway: ipam.map(|c| c.gateway.clone()).unwrap_or_default(),
                    encrypted: net
                        .spec
                        .driver_config
                        .options
                        .contains_key(ENCRYPTED_OPTION),
                };
                overlay.ensure_network(&def).await?;
                if def.encrypted {
                    let view = inner.views.borrow().clone();
                    inner.set_keys(&overlay, &net.id, &view.keys).await;
                }
                let ifname = format!("eth{}", before.first_eth + done.len());
                if fresh {
                    let cidr: Cidr = cidr.parse()?;
                    let default_route = done.is_empty() && !before.default_route;
                    overlay
                        .attach(
                            &def.id,
                            netns,
                            &ifname,
                            cidr,
                            default_route && gateway.is_none(),
                        )
                        .await?;
                }
                done.push((net.id.clone(), ifname));
            }
            if let Some(gw) = &gateway {
                let ifname = format!("eth{}", before.first_eth + done.len());
                on_gateway = attach_gateway(gw, &named, ifname, fresh).await?;
            }
            let (udp, tcp) = vip::bind_in(netns, DNS_ADDR)?;
            let dns = DnsServer::start_with_sockets(udp, tcp, DnsConfig::new(DNS_ADDR))?;
            Ok::<DnsServer, NetPlaneError>(dns)
        }
        .await;
        match result {
            Ok(dns) => {
                tracing::info!(task = %task.id, networks = done.len(), "task attached to its overlay networks");
                let mut tasks = inner.tasks.lock().await;
                tasks.insert(
                    task.id.clone(),
                    Attached {
                        netns: netns.to_path_buf(),
                        _handle: handle,
                        networks: done,
                        dns,
                        vips: None,
                        gateway: on_gateway,
                    },
                );
                let view = inner.views.borrow().clone();
                inner.apply(&overlay, &view, &mut tasks).await;
                Ok(())
            }
            Err(e) => {
                if let (Some(gw), Some(at)) = (&gateway, &on_gateway) {
                    detach_gateway(gw, netns, at, fresh).await;
                }
                // The last task may have left while this attach held the
                // bridge: it is this attach's to remove then.
                drop(gateway);
                {
                    let tasks = inner.tasks.lock().await;
                    let mut slot = inner.gateway.lock().await;
                    PlaneInner::remove_idle_gateway(&mut slot, &tasks).await;
                }
                for (net, ifname) in &done {
                    if fresh {
                        let _ = overlay.detach(net.as_str(), netns, ifname).await;
                    }
                }
                let tasks = inner.tasks.lock().await;
                inner
                    .drop_unused(&overlay, &tasks, done.iter().map(|(n, _)| n))
                    .await;
                Err(e)
            }
        }
    }

    /// Takes `task_id` off its networks: stops its DNS, deletes its veths, and
    /// removes the sandboxes no local task uses any more. Unknown tasks are fine.
    pub async fn detach(&self, task_id: &str) {
        let Some(inner) = &self.inner else { return };
        let mut tasks = inner.tasks.lock().await;
        let Some(a) = tasks.remove(task_id) else {
            return;
        };
        a.dns.shutdown().await;
        inner.leave_gateway(&a, &tasks).await;
        let overlay = inner.overlay.borrow().clone();
        if let Some(overlay) = overlay {
            for (net, ifname) in &a.networks {
                if let Err(e) = overlay.detach(net.as_str(), &a.netns, ifname).await {
                    tracing::warn!(task = task_id, network = %net, error = %e, "could not detach");
                }
            }
            inner
                .drop_unused(&overlay, &tasks, a.networks.iter().map(|(n, _)| n))
                .await;
        }
        tracing::info!(task = task_id, "task detached from its overlay networks");
    }

    /// The address of local task `task_id` on the gateway bridge, where the node
    /// reaches it; `None` for a task not attached or without one.
    pub async fn gateway_addr(&self, task_id: &str) -> Option<IpAddr> {
        let inner = self.inner.as_ref()?;
        let tasks = inner.tasks.lock().await;
        tasks
            .get(task_id)
            .and_then(|a| a.gateway.as_ref())
            .map(|(_, ip)| IpAddr::V4(*ip))
    }

    /// The tasks attached on this node.
    #[cfg(test)]
    pub async fn attached(&self) -> Vec<Id> {
        match &self.inner {
            Some(i) => i.tasks.lock().await.keys().cloned().collect(),
            None => Vec::new(),
        }
    }
}

/// What a task's namespace holds besides the overlay's interfaces: a Docker
/// container's `eth0` on Docker's bridge, with its default route. The overlay's
/// interfaces are numbered after it (`eth1`, ...) and leave its default route
/// alone (the overlays' subnets and VIPs are connected routes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Before {
    /// The number of the first overlay interface, `eth<first_eth>`.
    first_eth: usize,
    /// Whether a default route through such an interface exists.
    default_route: bool,
}

/// Reads [`Before`] of the namespace at `netns` (its `/proc/net/dev` and
/// `/proc/net/route`): an interface is the overlay's when it has a route into
/// one of `task`'s overlay subnets, so an adopted task finds its names again.
async fn interfaces_before(task: &Task, netns: &Path) -> Result<Before, NetPlaneError> {
    let ours: Vec<Cidr> = task
        .networks
        .iter()
        .filter(|a| is_task_overlay(&a.network))
        .filter_map(|a| a.addresses.first()?.parse().ok())
        .collect();
    let netns = netns.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        vip::run_in(&netns, || {
            let read = |file: &str| {
                let path = format!("/proc/thread-self/net/{file}");
                std::fs::read_to_string(&path).map_err(|source| vip::VipError::Io {
                    op: format!("reading {path} in the task's namespace"),
                    source,
                })
            };
            Ok((read("dev")?, read("route")?))
        })
    })
    .await
    .map_err(|e| NetPlaneError::Unavailable(format!("reading the task's interfaces: {e}")))??;
    Ok(before_of(&read.0, &read.1, &ours))
}

/// [`Before`] from the texts of `/proc/net/dev` and `/proc/net/route`, the
/// task's overlay addresses being `ours`.
fn before_of(dev: &str, route: &str, ours: &[Cidr]) -> Before {
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...: addresses in
    // hex, in the byte order of the host.
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v.to_ne_bytes())))
    };
    let routes: Vec<(&str, IpAddr, IpAddr)> = route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.first()?, hex(f.get(1)?)?, hex(f.get(7)?)?))
        })
        .collect();
    let is_ours = |ifname: &str| {
        routes.iter().any(|(i, dest, mask)| {
            *i == ifname && !mask.is_unspecified() && ours.iter().any(|c| c.contains(*dest))
        })
    };
    let foreign: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim()))
        .filter(|i| *i != "lo" && !is_ours(i))
        .collect();
    Before {
        first_eth: foreign
            .iter()
            .filter_map(|i| i.strip_prefix("eth")?.parse::<usize>().ok())
            .map(|n| n + 1)
            .max()
            .unwrap_or(0),
        default_route: routes.iter().any(|(i, dest, mask)| {
            dest.is_unspecified() && mask.is_unspecified() && foreign.contains(i)
        }),
    }
}

/// The file naming the process that owns a node's sandbox directory.
const OWNER_FILE: &str = "owner";

/// `<pid> <start time>` of this process (the pair names one process for the
/// life of the system).
fn me() -> Option<String> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let start = stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?;
    Some(format!("{} {start}", std::process::id()))
}

/// Whether the process named by an owner file's `<pid> <start time>` lives.
fn owner_alive(owner: &str) -> bool {
    let mut w = owner.split_whitespace();
    let (Some(pid), Some(start)) = (w.next(), w.next()) else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(19).map(|s| s == start))
            .unwrap_or(false)
    })
}

/// Marks `dir` (this node's sandboxes) as owned by this process.
fn claim(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(OWNER_FILE), me().unwrap_or_default())
}

/// Removes the sandboxes of nodes whose process is gone (a node killed while
/// it had tasks on overlay networks, then never started again on this
/// machine): their VXLAN devices would otherwise hold their VNIs on the
/// underlay. A node restarted later recreates what it needs (its adopted
/// tasks then lose their interfaces). Directories of live nodes, and this
/// node's own, are left alone.
async fn collect_dead_nodes(mine: &Path) {
    let Some(root) = mine.parent() else { return };
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        if dir == mine || !dir.is_dir() {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        if owner_alive(&owner) {
            continue;
        }
        let mut cfg = OverlayConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        cfg.netns_dir = dir.clone();
        let Ok(overlay) = Overlay::new(cfg).await else {
            return;
        };
        let sandboxes: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| {
                f.file_name()
                    .to_str()?
                    .strip_prefix(swarm_net::overlay::SANDBOX_PREFIX)
                    .map(str::to_string)
            })
            .collect();
        for net in sandboxes {
            if let Err(e) = overlay.remove_network(&net).await {
                tracing::warn!(dir = %dir.display(), network = %net, error = %e, "could not remove a dead node's sandbox");
            }
        }
        let _ = std::fs::remove_file(dir.join(OWNER_FILE));
        if std::fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed the sandboxes of a node that is gone");
        }
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the effective
/// user.
fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Puts a task on the gateway bridge as `ifname` (`fresh`), or takes back the
/// address an adopted task has there; `None` for an adopted task without one.
async fn attach_gateway(
    gw: &Gateway,
    netns: &Path,
    ifname: String,
    fresh: bool,
) -> Result<Option<(String, Ipv4Addr)>, NetPlaneError> {
    let ip = if fresh {
        Some(gw.attach(netns, &ifname).await?)
    } else {
        gw.adopt(netns, &ifname).await?
    };
    Ok(ip.map(|ip| (ifname, ip)))
}

/// Takes a task off the gateway bridge (its veth only when `fresh`: an adopted
/// task's stays) and frees its address.
async fn detach_gateway(
    gw: &Gateway,
    netns: &Path,
    (ifname, ip): &(String, Ipv4Addr),
    fresh: bool,
) {
    if !fresh {
        gw.release(*ip);
        return;
    }
    if let Err(e) = gw.detach(netns, ifname, *ip).await {
        tracing::warn!(netns = %netns.display(), error = %e, "could not detach from the gateway bridge");
    }
}

impl PlaneInner {
    /// The node's gateway bridge, set up on first use in this thread's namespace
    /// (the node's); `None` when it could not be (logged once).
    async fn gateway(&self) -> Option<Arc<Gateway>> {
        let mut slot = self.gateway.lock().await;
        if slot.is_none() {
            match Gateway::new(GatewayConfig::default()).await {
                Ok(gw) => *slot = Some(Arc::new(gw)),
                Err(e) => {
                    if !self
                        .gateway_failed
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::warn!(error = %e, "no gateway bridge: tasks on overlay networks get no outbound route and are not reached by the routing mesh");
                    }
                }
            }
        }
        slot.clone()
    }

    /// Takes the detached task `a` off the gateway bridge; with no local task
    /// left (`tasks`, locked by the caller) and no attach in flight, removes the
    /// bridge, as the last task of a network removes its sandbox.
    async fn leave_gateway(&self, a: &Attached, tasks: &HashMap<Id, Attached>) {
        let mut slot = self.gateway.lock().await;
        let Some(gw) = slot.clone() else { return };
        if let Some(at) = &a.gateway {
            detach_gateway(&gw, &a.netns, at, true).await;
        }
        drop(gw);
        Self::remove_idle_gateway(&mut slot, tasks).await;
    }

    /// Removes the gateway bridge when no local task is attached (`tasks`) and
    /// no attach is in flight (each holds a clone of it).
    async fn remove_idle_gateway(slot: &mut Option<Arc<Gateway>>, tasks: &HashMap<Id, Attached>) {
        let idle = slot.as_ref().is_some_and(|gw| Arc::strong_count(gw) == 1);
        if tasks.is_empty()
            && idle
            && let Some(gw) = slot.take().and_then(Arc::into_inner)
        {
            match gw.remove().await {
                Ok(true) => tracing::info!("gateway bridge removed"),
                Ok(false) => tracing::debug!("gateway bridge kept: another node on it has tasks"),
                Err(e) => tracing::warn!(error = %e, "could not remove the gateway bridge"),
            }
        }
    }

    /// The overlay, waiting for the view that gives this node's data-path
    /// address.
    async fn wait_overlay(&self) -> Result<Arc<Overlay>, NetPlaneError> {
        let mut rx = self.overlay.subscribe();
        let got = tokio::time::timeout(OVERLAY_WAIT, rx.wait_for(|o| o.is_some())).await;
        match got {
            Ok(Ok(o)) => Ok(o.clone().expect("waited for Some")),
            _ => Err(NetPlaneError::Unavailable(format!(
                "no data-path address of node {} in {OVERLAY_WAIT:?}",
                self.node_id
            ))),
        }
    }

    /// Gives the encrypted network `net` the swarm's keys when they are not the
    /// ones it has (a sandbox without keys drops every frame until it gets some).
    async fn set_keys(&self, overlay: &Overlay, net: &Id, keys: &OverlayKeys) {
        if keys.keys.is_empty() {
            tracing::warn!(network = %net, "no overlay keys from the managers yet: the encrypted network carries nothing until they come");
            return;
        }
        let current = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(net)
            .cloned();
        if current.as_ref() == Some(keys) {
            return;
        }
        match overlay.set_keys(net.as_str(), &keys.ring()).await {
            Ok(()) => {
                tracing::info!(network = %net, ?keys, "encrypted network keys set");
                self.keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(net.clone(), keys.clone());
            }
            Err(e) => {
                tracing::warn!(network = %net, error = %e, "could not set the network's keys")
            }
        }
    }

    /// Removes the sandboxes of `nets` that no attached task uses.
    async fn drop_unused<'a>(
        &self,
        overlay: &Overlay,
        tasks: &HashMap<Id, Attached>,
        nets: impl Iterator<Item = &'a Id>,
    ) {
        for net in nets {
            let used = tasks
                .values()
                .any(|t| t.networks.iter().any(|(n, _)| n == net));
            if !used {
                self.keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(net);
                match overlay.remove_network(net.as_str()).await {
                    Ok(()) => tracing::info!(network = %net, "overlay sandbox removed"),
                    Err(e) => {
                        tracing::warn!(network = %net, error = %e, "could not remove a sandbox")
                    }
                }
            }
        }
    }

    /// Applies `view` to the sandboxes and tasks attached here.
    async fn apply(
        &self,
        overlay: &Overlay,
        view: &NetworkView,
        tasks: &mut HashMap<Id, Attached>,
    ) {
        let by_id: HashMap<&Id, &ViewNetwork> = view.networks.iter().map(|n| (&n.id, n)).collect();
        let used: HashSet<&Id> = tasks
            .values()
            .flat_map(|t| t.networks.iter().map(|(n, _)| n))
            .collect();
        for net in &used {
            let peers: Vec<Peer> = by_id
                .get(net)
                .map(|n| {
                    n.tasks
                        .iter()
                        .filter(|t| t.node_id != self.node_id)
                        .filter_map(|t| {
                            let IpAddr::V4(v4) = t.addr else { return None };
                            Some(Peer {
                                addr: t.addr,
                                mac: mac_for_ip(v4).0,
                                node_underlay: t.node_addr?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Err(e) = overlay.set_peers(net.as_str(), &peers).await {
                tracing::warn!(network = %net, error = %e, "could not program the network's peers");
            }
            if by_id.get(net).is_some_and(|n| n.encrypted) {
                self.set_keys(overlay, net, &view.keys).await;
            }
        }
        for (task_id, t) in tasks.iter_mut() {
            let mut rules = Vec::new();
            for (net, _) in &t.networks {
                let Some(n) = by_id.get(net) else {
                    t.dns.remove_network(net.as_str());
                    continue;
                };
                let (records, vips) = records_of(n);
                rules.extend(vips);
                if let Err(e) = t.dns.set_network(net.as_str(), records) {
                    tracing::warn!(task = %task_id, network = %net, error = %e, "DNS records refused");
                }
            }
            if t.vips.as_ref() != Some(&rules) {
                let (netns, r) = (t.netns.clone(), rules.clone());
                let done = tokio::task::spawn_blocking(move || vip::program(&netns, &r)).await;
                match done {
                    Ok(Ok(())) => t.vips = Some(rules),
                    Ok(Err(e)) => {
                        tracing::warn!(task = %task_id, error = %e, "could not program the VIPs")
                    }
                    Err(e) => tracing::warn!(task = %task_id, error = %e, "VIP worker failed"),
                }
            }
        }
    }
}

/// The DNS records and the VIP rules of one network.
fn records_of(n: &ViewNetwork) -> (NetworkRecords, Vec<VipRule>) {
    let mut services = Vec::new();
    let mut vips = Vec::new();
    for s in &n.services {
        let tasks: Vec<&ViewTask> = n
            .tasks
            .iter()
            .filter(|t| t.service_id == s.service_id && t.running)
            .collect();
        let mode = match (s.dnsrr, s.vip) {
            (false, Some(vip)) => {
                if let IpAddr::V4(v4) = vip {
                    vips.push(VipRule {
                        vip: v4,
                        backends: tasks
                            .iter()
                            .filter_map(|t| match t.addr {
                                IpAddr::V4(a) => Some(a),
                                IpAddr::V6(_) => None,
                            })
                            .collect(),
                    });
                }
                Resolution::Vip(vip)
            }
            _ => Resolution::Dnsrr,
        };
        services.push(ServiceRecord {
            name: s.name.clone(),
            aliases: s.aliases.clone(),
            mode,
            tasks: tasks
                .iter()
                .map(|t| TaskRecord {
                    name: t.name.clone(),
                    addr: t.addr,
                })
                .collect(),
        });
    }
    (NetworkRecords { services }, vips)
}

/// Starts the overlay once the view names this node's address, and applies
/// every view, until the plane is dropped.
async fn follow(plane: std::sync::Weak<PlaneInner>, mut views: watch::Receiver<Arc<NetworkView>>) {
    if let Some(inner) = plane.upgrade() {
        collect_dead_nodes(&inner.netns_dir).await;
    }
    let mut warned = false;
    loop {
        let view = views.borrow_and_update().clone();
        let Some(inner) = plane.upgrade() else { return };
        let mut overlay = inner.overlay.borrow().clone();
        if overlay.is_none()
            && let Some((_, ip)) = view.nodes.iter().find(|(n, _)| *n == inner.node_id)
        {
            let mut cfg = OverlayConfig::new(*ip);
            cfg.vxlan_port = view.vxlan_port;
            cfg.netns_dir = inner.netns_dir.clone();
            match Overlay::new(cfg).await {
                Ok(o) => {
                    let o = Arc::new(o);
                    inner.overlay.send_replace(Some(o.clone()));
                    overlay = Some(o);
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "overlay networks unavailable on this node");
                }
                Err(_) => {}
            }
        }
        if let Some(overlay) = overlay {
            let mut tasks = inner.tasks.lock().await;
            inner.apply(&overlay, &view, &mut tasks).await;
        }
        drop(inner);
        if views.changed().await.is_err() {
            return;
        }
    }
}

/// A node's runtime with its overlay networks: attaches a task that has a
/// network namespace to its networks after `create` (process runtime) or after
/// `start` (Docker), and detaches it before `remove`. Every other verb is the
/// wrapped runtime's.
pub struct NetRuntime {
    inner: Arc<dyn Runtime>,
    plane: NetPlane,
    /// Tasks created through this wrapper and not attached yet (Docker: until
    /// they start).
    pending: parking_lot::Mutex<HashMap<String, Task>>,
}

impl std::fmt::Debug for NetRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRuntime")
            .field("runtime", &self.inner.name())
            .field("plane", &self.plane)
            .finish()
    }
}

impl NetRuntime {
    /// `inner` with the overlay networks of `plane`.
    pub fn new(inner: Arc<dyn Runtime>, plane: NetPlane) -> NetRuntime {
        NetRuntime {
            inner,
            plane,
            pending: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Gives an inspected task with no address of its own its address on the
    /// gateway bridge, where the node (its routing mesh) reaches it.
    async fn fill_addr(&self, task_id: &str, i: &mut Inspection) {
        if i.addr.is_none() && i.netns.is_some() {
            i.addr = self.plane.gateway_addr(task_id).await;
        }
    }

    /// Attaches `task` if the runtime gave it a namespace; `Ok(false)` when it has
    /// none (yet, or any more: a Docker container that already exited).
    ///
    /// A Docker container's namespace is named by its process
    /// (`/proc/<pid>/ns/net`): the namespace is opened first, then the runtime
    /// asked again that the task still runs with it, so what is attached is the
    /// task's (not the namespace of a process that took a reused pid), and a
    /// task that ended meanwhile is not failed for it.
    async fn attach_if_ready(&self, task: &Task) -> swarm_runtime::Result<bool> {
        let id = task.id.as_str();
        let Some(netns) = self.inner.inspect(id).await?.netns else {
            return Ok(false);
        };
        let pinned = std::fs::File::open(&netns);
        let still = self.inner.inspect(id).await?.netns;
        let pinned = match pinned {
            Ok(f) if still.as_deref() == Some(netns.as_path()) => f,
            // The task left its namespace (it exited) in between.
            _ if still.is_none() => return Ok(false),
            Ok(_) => {
                return Err(swarm_runtime::Error::StartFailed {
                    message: format!(
                        "the task's namespace moved from {} while attaching it",
                        netns.display()
                    ),
                    rejected: false,
                });
            }
            Err(e) => {
                return Err(swarm_runtime::Error::StartFailed {
                    message: format!("opening the task's namespace {}: {e}", netns.display()),
                    rejected: false,
                });
            }
        };
        let path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pinned)
        ));
        self.plane.attach(task, &path, true).await.map_err(|e| {
            swarm_runtime::Error::StartFailed {
                message: format!("attaching the task's overlay networks: {e}"),
                rejected: false,
            }
        })?;
        Ok(true)
    }
}

#[async_trait]
impl Runtime for NetRuntime {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn binds_host_ports(&self) -> bool {
        self.inner.binds_host_ports()
    }

    async fn prepare(&self, task: &Task) -> swarm_runtime::Result<()> {
        self.inner.prepare(task).await
    }

    async fn create(&self, task: &Task) -> swarm_runtime::Result<ContainerStatus> {
        let status = self.inner.create(task).await?;
        if !self.plane.enabled() || !swarm_runtime::has_overlay(task) {
            return Ok(status);
        }
        match self.attach_if_ready(task).await {
            Ok(true) => {}
            Ok(false) => {
                self.pending
                    .lock()
                    .insert(task.id.to_string(), task.clone());
            }
            Err(e) => {
                let _ = self.inner.remove(task.id.as_str()).await;
                return Err(e);
            }
        }
        Ok(status)
    }

    async fn start(&self, task_id: &str) -> swarm_runtime::Result<()> {
        self.inner.start(task_id).await?;
        let pending = self.pending.lock().remove(task_id);
        if let Some(task) = pending {
            self.attach_if_ready(&task).await?;
        }
        Ok(())
    }

    async fn wait(&self, task_id: &str) -> swarm_runtime::Result<i32> {
        self.inner.wait(task_id).await
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> swarm_runtime::Result<()> {
        self.inner.stop(task_id, grace).await
    }

    async fn remove(&self, task_id: &str) -> swarm_runtime::Result<()> {
        self.pending.lock().remove(task_id);
        self.plane.detach(task_id).await;
        self.inner.remove(task_id).await
    }

    async fn inspect(&self, task_id: &str) -> swarm_runtime::Result<Inspection> {
        let mut i = self.inner.inspect(task_id).await?;
        self.fill_addr(task_id, &mut i).await;
        Ok(i)
    }

    async fn list(&self) -> swarm_runtime::Result<Vec<Inspection>> {
        let mut all = self.inner.list().await?;
        for i in &mut all {
            let task_id = i.labels.task_id.clone();
            self.fill_addr(&task_id, i).await;
        }
        Ok(all)
    }

    async fn logs(&self, task_id: &str, options: LogOptions) -> swarm_runtime::Result<LogChunks> {
        self.inner.logs(task_id, options).await
    }
}

#[cfg(test)]
mod tests;
