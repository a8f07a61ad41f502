//! The node's overlay data plane ([`NetPlane`]): puts the node's tasks on their
//! overlay networks (sandboxes, interfaces, embedded DNS, service VIPs) and
//! follows the leader's [`NetworkView`].
//!
//! This file holds the plane's state and its verbs (attach, detach); its children:
//! `view` (following the view: peers, keys, DNS records, VIP rules),
//! `gateway` (the node's gateway bridge), `interfaces` (what a task's namespace
//! holds before the overlay's interfaces), `claims` (which process owns each
//! node's sandbox directory; collecting those of nodes that are gone) and
//! `runtime` ([`NetRuntime`], the node's runtime with the plane).
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
//! nothing, and tasks stay on the host's network) runs an overlay
//! ([`swarm_net::overlay::OverlayDriver`]; the kernel's VXLAN
//! [`swarm_net::overlay::Overlay`] unless the node was given another
//! [`OverlayFactory`]) on the node's data-path address. The node's
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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::Id;
use swarm_core::types::Task;
use swarm_net::dns::{DnsConfig, DnsServer};
use swarm_net::gateway::Gateway;
use swarm_net::overlay::{Cidr, NetworkDef, Overlay, OverlayConfig, OverlayDriver, OverlayError};
use swarm_net::vip::{self, VipRule};
use tokio::sync::{Mutex, watch};
use tonic::async_trait;

use crate::views::network::{ENCRYPTED_OPTION, NetworkView, OverlayKeys, is_task_overlay, vni_of};

mod claims;
mod gateway;
mod interfaces;
mod runtime;
mod view;

pub use runtime::NetRuntime;

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

/// Starts the overlay a node's network plane drives: the place where a host
/// plugs its own [`OverlayDriver`] in ([`ManagerConfig::overlay`],
/// [`WorkerConfig::overlay`]). The plane runs only as root; it creates each
/// task's interfaces and its embedded DNS, the driver the networks' sandboxes
/// and the traffic between nodes.
///
/// ```
/// use std::sync::Arc;
/// use swarm::net::overlay::{Overlay, OverlayConfig, OverlayDriver, OverlayError};
/// use swarm::{ManagerConfig, OverlayFactory};
///
/// /// The kernel's VXLAN, with a log line: a host would start its own driver.
/// struct Logged;
///
/// #[async_trait::async_trait]
/// impl OverlayFactory for Logged {
///     async fn start(&self, cfg: OverlayConfig) -> Result<Arc<dyn OverlayDriver>, OverlayError> {
///         println!("overlay on {:?}", cfg);
///         Ok(Arc::new(Overlay::new(cfg).await?))
///     }
/// }
///
/// let cfg = ManagerConfig::new("/var/lib/app/m1", "0.0.0.0:2377").overlay(Arc::new(Logged));
/// # let _ = cfg;
/// ```
///
/// [`ManagerConfig::overlay`]: crate::ManagerConfig::overlay
/// [`WorkerConfig::overlay`]: crate::WorkerConfig::overlay
#[async_trait]
pub trait OverlayFactory: Send + Sync {
    /// The overlay of a node as `cfg` says (its data-path address, the swarm's
    /// VXLAN port, the directory of its sandboxes), started in the calling
    /// thread's network namespace (the node's). An error leaves the node without
    /// overlay networks until a later view starts it (logged once).
    ///
    /// The plane also starts one for the sandbox directory of a node of this
    /// machine whose process is gone (underlay address `127.0.0.1`), to remove
    /// the sandboxes it left there (see `claims`).
    async fn start(&self, cfg: OverlayConfig) -> Result<Arc<dyn OverlayDriver>, OverlayError>;
}

/// The default [`OverlayFactory`]: the kernel's VXLAN [`Overlay`].
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOverlay;

#[async_trait]
impl OverlayFactory for KernelOverlay {
    async fn start(&self, cfg: OverlayConfig) -> Result<Arc<dyn OverlayDriver>, OverlayError> {
        Ok(Arc::new(Overlay::new(cfg).await?))
    }
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
    /// Starts the overlay, and the one that collects a dead node's sandboxes.
    factory: Arc<dyn OverlayFactory>,
    overlay: watch::Sender<Option<Arc<dyn OverlayDriver>>>,
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
    /// The plane of node `node_id` over the kernel's VXLAN overlay
    /// ([`KernelOverlay`]): see [`NetPlane::with_overlay`].
    #[cfg(test)]
    pub fn new(node_id: &Id) -> NetPlane {
        NetPlane::with_overlay(node_id, Arc::new(KernelOverlay))
    }

    /// The plane of node `node_id` over the overlay `factory` starts: active when
    /// the process runs as root (it then starts following views), else inert
    /// (logged once). Sandboxes go under `/run/swarm/netns/<node id>`.
    pub fn with_overlay(node_id: &Id, factory: Arc<dyn OverlayFactory>) -> NetPlane {
        if !is_root() {
            tracing::info!(
                "not root: tasks on overlay networks stay on the host network (no VXLAN, DNS or VIPs)"
            );
            return NetPlane::disabled();
        }
        let netns_dir = Path::new(swarm_net::overlay::DEFAULT_NETNS_DIR).join(node_id.as_str());
        let (views, rx) = watch::channel(Arc::new(NetworkView::default()));
        if let Err(e) = claims::claim(&netns_dir) {
            tracing::warn!(dir = %netns_dir.display(), error = %e, "could not mark the node's sandbox directory");
        }
        let inner = Arc::new(PlaneInner {
            node_id: node_id.clone(),
            netns_dir,
            views,
            factory,
            overlay: watch::channel(None).0,
            tasks: Mutex::new(HashMap::new()),
            keys: std::sync::Mutex::new(HashMap::new()),
            gateway: Mutex::new(None),
            gateway_failed: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(view::follow(Arc::downgrade(&inner), rx));
        NetPlane { inner: Some(inner) }
    }

    /// A plane that does nothing: tasks on overlay networks stay on the host's
    /// network.
    pub fn disabled() -> NetPlane {
        NetPlane { inner: None }
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
        let before = interfaces::interfaces_before(task, netns).await?;
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
                    inner.set_keys(overlay.as_ref(), &net.id, &view.keys).await;
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
                on_gateway = gateway::attach(gw, &named, ifname, fresh).await?;
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
                inner.apply(overlay.as_ref(), &view, &mut tasks).await;
                Ok(())
            }
            Err(e) => {
                if let (Some(gw), Some(at)) = (&gateway, &on_gateway) {
                    gateway::detach(gw, netns, at, fresh).await;
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
                    .drop_unused(overlay.as_ref(), &tasks, done.iter().map(|(n, _)| n))
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
                .drop_unused(overlay.as_ref(), &tasks, a.networks.iter().map(|(n, _)| n))
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

impl PlaneInner {
    /// The overlay, waiting for the view that gives this node's data-path
    /// address.
    async fn wait_overlay(&self) -> Result<Arc<dyn OverlayDriver>, NetPlaneError> {
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

    /// Removes the sandboxes of `nets` that no attached task uses.
    async fn drop_unused<'a>(
        &self,
        overlay: &dyn OverlayDriver,
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
}

/// Whether this process runs as root: `/proc/self` belongs to the effective
/// user.
fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
