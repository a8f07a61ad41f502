//! The ingress routing mesh data plane: every node answers every published
//! port and balances new TCP connections and UDP flows over the service's
//! tasks, wherever they run.
//!
//! ```text
//!  client ──► ingress_ip:published ──► pick a backend (round robin, not draining)
//!                                        ├─ Local(addr):  connect, [PROXY v2], splice
//!                                        └─ Remote{peer}: connect peer listener,
//!                                             hand-over header ──► peer node:
//!                                             allowed source? task Local there?
//!                                             connect, [PROXY v2], ack, splice
//! ```
//!
//! Two data paths. When the process may program nftables (root) and the
//! config allows it ([`KernelPath`]), the kernel balances each port's new
//! connections and flows over its local backends with NAT rules, and only the
//! remote backends' share comes to user space (see the `kernel` module docs):
//! that is Docker's IPVS data path. Otherwise, and for ports with the PROXY
//! protocol option, everything runs in user space on tokio: on Linux a TCP direction that carries bulk
//! data (a read fills 16 KiB) moves with splice(2) through a pipe, with no copy
//! through user memory, while small requests and answers go through a small
//! buffer (cheaper for a few bytes); UDP datagrams go through one socket per
//! flow. The caller (the node) computes the backends from the store and hands
//! the whole desired state to [`Mesh::apply`] whenever it changes.
//!
//! Choices:
//! - Balancing is round robin over the non-draining backends, per published
//!   port and node, as Docker's IPVS (`rr`) does: O(1), deterministic, and fair
//!   for the short connections a mesh mostly sees; the mesh of one node cannot
//!   know the connection counts of the others, so least-connections would only
//!   be local anyway.
//! - A backend removed from the view keeps its open TCP connections until they
//!   end (as Docker does); a draining backend's connections are closed when its
//!   deadline passes, even if it is removed meanwhile. UDP flows of a removed
//!   backend are dropped at once: the client's next datagram picks again.
//! - A hand-over is acknowledged by the peer with one byte once it has
//!   connected to the task, so the first node can try another backend when the
//!   peer does not (yet) know the task.
//! - PROXY protocol v2 to backends is TCP only.
//! - On the kernel path a backend that leaves the map (removed or draining)
//!   gets no new connections at once, but its established ones flow through
//!   conntrack until they end or the task exits: the mesh does not close them
//!   at the drain deadline as the user-space path does ([`Mesh::open_count`]
//!   counts only the connections that pass through user space).

mod error;
pub mod header;
mod kernel;
mod peer;
mod relay;
mod tcp;
mod udp;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::{MeshError, NftError, PortError};
pub use kernel::DEFAULT_TABLE;

/// Whether published ports may use the kernel data path (nftables NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelPath {
    /// Use it when the process has CAP_NET_ADMIN and `nft` works; otherwise
    /// serve every port in user space (logged once at start).
    #[default]
    Auto,
    /// Never: every port in user space.
    Off,
    /// Use it or fail to start ([`MeshError::Kernel`]).
    Require,
}

/// Default idle timeout of a UDP flow: 30 s, Linux conntrack's timeout for a
/// UDP flow (`nf_conntrack_udp_timeout`), which Docker's mesh runs under.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a node's mesh listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// Address published ports listen on (the node's ingress address, e.g. 0.0.0.0 or 127.0.0.21).
    pub ingress_ip: IpAddr,
    /// This node's peer listener (TCP and UDP on the same port), where other nodes' meshes hand
    /// over connections/datagrams for tasks that run on this node. Port 0 = pick one.
    /// Give a specific address rather than 0.0.0.0: UDP replies to other nodes leave from it.
    pub peer_addr: SocketAddr,
    /// Idle timeout of a UDP flow ([`DEFAULT_UDP_IDLE_TIMEOUT`]: 30 s).
    pub udp_idle_timeout: Duration,
    /// The kernel data path: [`KernelPath::Auto`] by default.
    pub kernel: KernelPath,
    /// The nftables table (family `ip`) of the kernel path. `None`: [`DEFAULT_TABLE`] when
    /// the ingress address is unspecified, else `swarm_mesh_` and the address
    /// (`swarm_mesh_127_0_0_21`), so meshes on distinct addresses share a namespace. A mesh
    /// replaces the table at start (leftovers of a killed process) and removes it when it stops.
    pub nft_table: Option<String>,
}

impl MeshConfig {
    /// A config with the default UDP idle timeout.
    pub fn new(ingress_ip: IpAddr, peer_addr: SocketAddr) -> MeshConfig {
        MeshConfig {
            ingress_ip,
            peer_addr,
            udp_idle_timeout: DEFAULT_UDP_IDLE_TIMEOUT,
            kernel: KernelPath::Auto,
            nft_table: None,
        }
    }

    /// The nftables table name this config uses (see [`MeshConfig::nft_table`]).
    pub fn table_name(&self) -> String {
        match (&self.nft_table, self.ingress_ip) {
            (Some(t), _) => t.clone(),
            (None, ip) if ip.is_unspecified() => DEFAULT_TABLE.to_owned(),
            (None, ip) => format!(
                "{DEFAULT_TABLE}_{}",
                ip.to_string().replace(['.', ':'], "_")
            ),
        }
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// The whole desired state of the mesh on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressView {
    /// Every ingress-mode published port of the swarm ("both" = two entries).
    pub ports: Vec<PublishedPort>,
}

/// One published port and where its connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port every node listens on.
    pub published_port: u16,
    /// The port of the tasks.
    pub target_port: u16,
    /// Send a PROXY protocol v2 header to the backend with the client's address (moby#25526).
    /// TCP only: ignored for UDP.
    pub proxy_protocol: bool,
    /// Every running (or draining) task of the service, on any node.
    pub backends: Vec<Backend>,
}

/// One task behind a published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The task's ID (named in hand-overs to the node that runs it).
    pub task_id: String,
    /// Where the task is reached.
    pub target: Target,
    /// Some(deadline): the task is shutting down: no new connections/flows; its open
    /// connections are kept until the deadline (its stop grace period end), then closed.
    pub draining_until: Option<Instant>,
}

/// Where a backend task is reached from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The task runs on this node: connect here (its IP and the target port).
    Local(SocketAddr),
    /// The task runs on another node: hand over to that node's peer listener.
    Remote {
        /// The other node's peer listener.
        peer: SocketAddr,
    },
}

/// A published port: protocol and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PortKey {
    pub protocol: Protocol,
    pub port: u16,
}

/// A backend's state as its open connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Active,
    Draining(tokio::time::Instant),
}

/// A backend as the data plane uses it.
#[derive(Debug, Clone)]
pub(crate) struct LiveBackend {
    pub task_id: String,
    pub target: Target,
    pub draining: bool,
    pub status: watch::Receiver<Status>,
}

/// One published port as the data plane uses it (replaced whole by `apply`).
#[derive(Debug)]
pub(crate) struct PortSpec {
    pub key: PortKey,
    pub target_port: u16,
    pub proxy_protocol: bool,
    pub backends: Vec<LiveBackend>,
    /// Indices of the backends that are not draining.
    pub active: Vec<usize>,
    /// Indices of the remote backends that are not draining.
    pub remote: Vec<usize>,
    /// Open connections or flows of this port on this node (ingress and peer side).
    pub open: Arc<AtomicUsize>,
}

impl PortSpec {
    /// The backends that may take new connections, from `start` round robin:
    /// every active one, or for [`Share::Remote`] the remote ones (every
    /// active one when no remote is left: the kernel map may lag a little).
    pub fn pick(&self, share: Share, start: usize) -> impl Iterator<Item = &LiveBackend> {
        let list = match share {
            Share::Remote if !self.remote.is_empty() => &self.remote,
            _ => &self.active,
        };
        let n = list.len();
        (0..n).map(move |i| &self.backends[list[(start + i) % n]])
    }
}

/// Which backends a user-space socket of a port balances over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    /// All of them: the published port's own socket.
    All,
    /// The remote ones: the internal socket the kernel map sends their share to.
    Remote,
}

pub(crate) struct Inner {
    pub config: MeshConfig,
    pub peer_addr: SocketAddr,
    pub zero_copy: AtomicBool,
    pub peers: ArcSwap<HashSet<IpAddr>>,
    pub specs: ArcSwap<HashMap<PortKey, Arc<PortSpec>>>,
    pub stop: watch::Sender<bool>,
    rt: tokio::runtime::Handle,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    listeners: HashMap<PortKey, JoinHandle<()>>,
    statuses: HashMap<(PortKey, String), watch::Sender<Status>>,
    counters: HashMap<PortKey, Arc<AtomicUsize>>,
    peer_tasks: Vec<JoinHandle<()>>,
    stopped: bool,
    /// The kernel path, when on.
    kernel: Option<KernelState>,
    /// Internal sockets (kernel path, remote share) by port: task and port.
    internal: HashMap<PortKey, (JoinHandle<()>, u16)>,
    /// The data path each port uses, as last logged.
    paths: HashMap<PortKey, &'static str>,
}

/// The nftables table of the kernel path.
struct KernelState {
    table: String,
    ingress: std::net::Ipv4Addr,
    /// The script last applied with success (empty: none, or it failed).
    applied: String,
    /// Whether a DOCKER-USER rule accepts the forwarded connections.
    forward_accept: bool,
}

impl Inner {
    /// The spec of a port whose backend `task_id` runs here, active, on `target_port`.
    pub fn find_local(
        &self,
        key: PortKey,
        target_port: u16,
        task_id: &str,
    ) -> Option<(Arc<PortSpec>, LiveBackend, SocketAddr)> {
        let spec = self.specs.load().get(&key)?.clone();
        if spec.target_port != target_port {
            return None;
        }
        let b = spec
            .backends
            .iter()
            .find(|b| b.task_id == task_id && !b.draining)?
            .clone();
        match b.target {
            Target::Local(addr) => Some((spec, b, addr)),
            Target::Remote { .. } => None,
        }
    }

    fn stop_all(&self) -> Vec<JoinHandle<()>> {
        self.stop.send_replace(true);
        let mut st = self.state.lock();
        st.stopped = true;
        let mut handles: Vec<_> = st.listeners.drain().map(|(_, h)| h).collect();
        handles.extend(st.internal.drain().map(|(_, (h, _))| h));
        handles.append(&mut st.peer_tasks);
        if let Some(k) = st.kernel.take() {
            if k.forward_accept {
                kernel::docker_user(&k.table, false);
            }
            match kernel::run(&kernel::removal(&k.table)) {
                Ok(()) => tracing::info!(table = %k.table, "mesh: kernel rules removed"),
                Err(e) => {
                    tracing::warn!(table = %k.table, error = %e, "mesh: cannot remove the kernel rules")
                }
            }
        }
        st.statuses.clear();
        for h in &handles {
            h.abort();
        }
        handles
    }
}

/// Stops everything when the last handle of a mesh is dropped.
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.stop_all();
    }
}

/// The routing mesh of one node. Cheap to clone; the mesh stops when
/// [`Mesh::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
    _owner: Arc<Owner>,
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("ingress_ip", &self.inner.config.ingress_ip)
            .field("peer_addr", &self.inner.peer_addr)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// Binds the peer listener (TCP and UDP on one port) and starts serving it,
    /// and sets up the kernel path as [`MeshConfig::kernel`] says (its table
    /// replaced, empty). Published ports come with [`Mesh::apply`]. Outside a
    /// tokio runtime: [`MeshError::NoRuntime`]; kernel path required and not
    /// available: [`MeshError::Kernel`].
    ///
    /// The nftables rules live in the network namespace of the thread that
    /// starts the mesh and calls `apply`, `shutdown` or drops the last handle:
    /// keep them in one namespace.
    pub async fn start(config: MeshConfig) -> Result<Mesh, MeshError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| MeshError::NoRuntime)?;
        let kernel = match config.kernel {
            KernelPath::Off => {
                kernel::clear_leftovers(&config);
                None
            }
            KernelPath::Auto | KernelPath::Require => match kernel::setup(&config) {
                Ok(k) => {
                    tracing::info!(table = %k.table, "mesh: kernel data path on (nftables)");
                    Some(k)
                }
                Err(e) if config.kernel == KernelPath::Require => return Err(MeshError::Kernel(e)),
                Err(e) => {
                    tracing::info!(reason = %e, "mesh: kernel data path unavailable: every port in user space");
                    None
                }
            },
        };
        let (tcp, udp) = match peer::bind(config.peer_addr) {
            Ok(x) => x,
            Err(e) => {
                if let Some(k) = &kernel {
                    if k.forward_accept {
                        kernel::docker_user(&k.table, false);
                    }
                    let _ = kernel::run(&kernel::removal(&k.table));
                }
                return Err(e);
            }
        };
        let peer_addr = tcp.local_addr().map_err(|source| MeshError::PeerListen {
            protocol: Protocol::Tcp,
            addr: config.peer_addr,
            source,
        })?;
        let inner = Arc::new(Inner {
            config,
            peer_addr,
            zero_copy: AtomicBool::new(cfg!(target_os = "linux")),
            peers: ArcSwap::from_pointee(HashSet::new()),
            specs: ArcSwap::from_pointee(HashMap::new()),
            stop: watch::channel(false).0,
            rt,
            state: Mutex::new(State::default()),
        });
        let tasks = vec![
            tokio::spawn(peer::serve_tcp(inner.clone(), tcp)),
            tokio::spawn(peer::serve_udp(inner.clone(), Arc::new(udp))),
        ];
        {
            let mut st = inner.state.lock();
            st.peer_tasks = tasks;
            st.kernel = kernel;
        }
        tracing::info!(%peer_addr, ingress = %inner.config.ingress_ip, "routing mesh started");
        Ok(Mesh {
            _owner: Arc::new(Owner(inner.clone())),
            inner,
        })
    }

    /// The bound peer listener address (TCP and UDP).
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    /// Sets the whole desired state: opens listeners for new ports, closes removed ones, swaps
    /// backend sets atomically (existing connections keep going). Returns one error per port
    /// that could not be bound (the others still apply). Cheap to call often (idempotent).
    pub fn apply(&self, view: IngressView) -> Vec<PortError> {
        let _rt = self.inner.rt.enter();
        let mut errors = Vec::new();
        let mut st = self.inner.state.lock();
        if st.stopped {
            return errors;
        }
        let mut specs = HashMap::new();
        let mut statuses = HashMap::new();
        for port in view.ports {
            let key = PortKey {
                protocol: port.protocol,
                port: port.published_port,
            };
            if key.port == 0 {
                errors.push(PortError::Zero {
                    protocol: key.protocol,
                });
                continue;
            }
            if specs.contains_key(&key) {
                errors.push(PortError::Duplicate {
                    protocol: key.protocol,
                    port: key.port,
                });
                continue;
            }
            let mut backends: Vec<LiveBackend> = Vec::with_capacity(port.backends.len());
            for b in port.backends {
                if backends.iter().any(|x| x.task_id == b.task_id) {
                    continue;
                }
                let status = match b.draining_until {
                    Some(d) => Status::Draining(tokio::time::Instant::from_std(d)),
                    None => Status::Active,
                };
                let id = (key, b.task_id.clone());
                let tx = match st.statuses.remove(&id) {
                    Some(tx) => {
                        tx.send_if_modified(|s| std::mem::replace(s, status) != status);
                        tx
                    }
                    None => watch::channel(status).0,
                };
                backends.push(LiveBackend {
                    task_id: b.task_id,
                    target: b.target,
                    draining: b.draining_until.is_some(),
                    status: tx.subscribe(),
                });
                statuses.insert(id, tx);
            }
            let open = st.counters.entry(key).or_default().clone();
            let active: Vec<usize> = (0..backends.len())
                .filter(|&i| !backends[i].draining)
                .collect();
            let remote = active
                .iter()
                .copied()
                .filter(|&i| matches!(backends[i].target, Target::Remote { .. }))
                .collect();
            let spec = PortSpec {
                key,
                target_port: port.target_port,
                proxy_protocol: port.proxy_protocol,
                backends,
                active,
                remote,
                open,
            };
            specs.insert(key, Arc::new(spec));
        }
        // The new backend sets first, so a new listener never sees an old set;
        // dropping the old senders tells connections their backend left.
        self.inner.specs.store(Arc::new(specs));
        st.statuses = statuses;
        let specs = self.inner.specs.load();
        st.listeners.retain(|key, task| {
            let keep = specs.contains_key(key);
            if !keep {
                tracing::info!(port = key.port, protocol = %key.protocol, "mesh: port closed");
                task.abort();
            }
            keep
        });
        st.counters.retain(|key, _| specs.contains_key(key));
        let mut keys: Vec<PortKey> = specs.keys().copied().collect();
        keys.sort_by_key(|k| (k.port, k.protocol));
        for key in keys {
            if st.listeners.contains_key(&key) {
                continue;
            }
            let addr = SocketAddr::new(self.inner.config.ingress_ip, key.port);
            let started = match key.protocol {
                Protocol::Tcp => tcp::bind(addr)
                    .map(|l| tokio::spawn(tcp::serve(self.inner.clone(), key, l, Share::All))),
                Protocol::Udp => udp::bind(addr).map(|s| {
                    tokio::spawn(udp::serve(self.inner.clone(), key, Arc::new(s), Share::All))
                }),
            };
            match started {
                Ok(task) => {
                    tracing::info!(%addr, protocol = %key.protocol, "mesh: port published");
                    st.listeners.insert(key, task);
                }
                Err(source) => {
                    tracing::warn!(%addr, protocol = %key.protocol, error = %source, "mesh: cannot publish port");
                    errors.push(PortError::Listen {
                        protocol: key.protocol,
                        addr,
                        source,
                    });
                }
            }
        }
        self.inner.apply_kernel(&mut st, &specs);
        errors
    }

    /// Sets which source IPs may use the peer listener (the swarm's node addresses).
    pub fn set_peers(&self, allowed: HashSet<IpAddr>) {
        self.inner.peers.store(Arc::new(allowed));
    }

    /// Chooses how TCP bytes are moved: splice(2) through a pipe once a
    /// direction carries bulk data (`true`, the default on Linux) or tokio's
    /// user-space copy throughout (`false`; the only mode elsewhere). Applies
    /// to connections opened afterwards.
    pub fn set_zero_copy(&self, on: bool) {
        self.inner
            .zero_copy
            .store(on && cfg!(target_os = "linux"), Ordering::Relaxed);
    }

    /// Open TCP connections (accepted here or handed over to here) or live UDP
    /// flows of a published port on this node.
    pub fn open_count(&self, protocol: Protocol, published_port: u16) -> usize {
        let key = PortKey {
            protocol,
            port: published_port,
        };
        self.inner
            .specs
            .load()
            .get(&key)
            .map_or(0, |s| s.open.load(Ordering::Relaxed))
    }

    /// Closes every listener, connection and flow, and waits until the
    /// listening sockets are closed. Later `apply` calls do nothing.
    pub async fn shutdown(&self) {
        for h in self.inner.stop_all() {
            let _ = h.await;
        }
        tracing::info!(peer_addr = %self.inner.peer_addr, "routing mesh stopped");
    }
}

/// Counts an open connection or flow while alive.
pub(crate) struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    pub fn new(counter: &Arc<AtomicUsize>) -> OpenGuard {
        counter.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counter.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves when a connection or flow of a backend must end: the mesh stops,
/// or the backend's drain deadline passes, or (when `end_when_removed`) the
/// backend leaves the view. A backend removed while active keeps its
/// connections otherwise; one removed while draining keeps its deadline.
pub(crate) async fn must_close(
    mut status: watch::Receiver<Status>,
    mut stop: watch::Receiver<bool>,
    end_when_removed: bool,
) {
    async fn deadline(s: Status) {
        match s {
            Status::Draining(d) => tokio::time::sleep_until(d).await,
            Status::Active => std::future::pending().await,
        }
    }
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopping);
    loop {
        let current = *status.borrow_and_update();
        tokio::select! {
            _ = &mut stopping => return,
            _ = deadline(current) => return,
            changed = status.changed() => {
                if changed.is_err() {
                    if end_when_removed {
                        return;
                    }
                    tokio::select! {
                        _ = &mut stopping => return,
                        _ = deadline(current) => return,
                    }
                }
            }
        }
    }
}
