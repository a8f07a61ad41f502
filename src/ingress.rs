//! The routing mesh's control side: which tasks back which published port.
//!
//! ```text
//! leader's store ──► feed() ──► IngressView ──(dispatcher session)──► every node
//!                                                                     │
//!             swarm_net::mesh::Mesh::apply ◄── run_node_mesh() ◄──────┘
//! ```
//!
//! The leader's dispatcher computes one [`IngressView`] for the whole swarm from
//! its store — for each service with published ports, the RUNNING tasks and
//! the mesh address of the node each runs on — and sends it to every node
//! on its session, managers included, whenever it changes. Each node turns it
//! into its mesh's backends: a task on this node is reached at its own address
//! (a container's IP; the address on the node's gateway bridge of a task in a
//! namespace of its own, see [`crate::netplane`]; the loopback address for a
//! task on the host network),
//! a task on another node through that node's mesh (its peer listener), so a
//! published port answers on every node whether or not it runs a task.
//!
//! A task whose desired state moved past RUNNING while it still runs is
//! *draining*: it gets no new connections, and its open ones are kept for its
//! stop grace period.
//!
//! Host-mode published ports are not the mesh's to balance: as in Docker, such
//! a port answers only on the nodes that run a task of the service, with that
//! node's task, and a node without one refuses the connection. A runtime that
//! binds them itself (Docker's port bindings) needs nothing more. For one that
//! does not ([`Runtime::binds_host_ports`]: the process runtime), the view
//! carries the ports each running task reported (`Task.Status.PortStatus`,
//! with a dynamic port already picked) and the task's own node serves them
//! with a local-only entry of its mesh: published port → the task's address
//! and target port, never handed over to another node. One data plane thus
//! carries both modes (TCP splice, UDP flows, PROXY headers alike).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use swarm_core::types::{
    Node, NodeState, PortConfig, Protocol, PublishMode, Service, Task, TaskState,
};
use swarm_core::{Filter, Id, Kind, Store, View};
use swarm_net::mesh;
use swarm_runtime::Runtime;
use tokio::sync::watch;

/// Service label naming the published ports whose backends get a PROXY
/// protocol v2 header carrying the client's address (Docker's moby#25526):
/// a comma-separated list of published ports, or `all`.
pub const PROXY_PROTOCOL_LABEL: &str = "swarm.proxy-protocol";

/// How long the leader gathers store changes before it sends a new view.
const FEED_WINDOW: Duration = Duration::from_millis(20);
/// How often a node retries finding the address of a local task it could not
/// inspect yet (a task that just started).
const RESOLVE_RETRY: Duration = Duration::from_millis(250);

/// The routing mesh of a node: where published ports listen and where other
/// nodes hand over connections for the tasks this node runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingMeshConfig {
    /// The address published ports listen on (Docker: every address, `0.0.0.0`).
    pub ingress_ip: IpAddr,
    /// The peer listener (TCP and UDP): other nodes' meshes reach the tasks of
    /// this node through it. Port 0 picks one.
    pub peer_addr: SocketAddr,
    /// The address other nodes reach the peer listener on; the listener's own
    /// when unset (it must then not be `0.0.0.0`).
    pub advertise_ip: Option<IpAddr>,
    /// Whether published ports may use the kernel data path (nftables NAT over
    /// the local tasks, when the process may program it; default: when it
    /// can). See [`swarm_net::mesh::KernelPath`].
    pub kernel: mesh::KernelPath,
}

impl RoutingMeshConfig {
    /// Published ports on `ingress_ip`; the peer listener on `peer_ip` with a
    /// port picked by the system.
    pub fn new(ingress_ip: IpAddr, peer_ip: IpAddr) -> RoutingMeshConfig {
        RoutingMeshConfig {
            ingress_ip,
            peer_addr: SocketAddr::new(peer_ip, 0),
            advertise_ip: None,
            kernel: mesh::KernelPath::default(),
        }
    }

    /// Sets whether published ports may use the kernel data path.
    pub fn kernel_path(mut self, kernel: mesh::KernelPath) -> RoutingMeshConfig {
        self.kernel = kernel;
        self
    }
}

/// Every published port of the swarm with its backends, as the leader sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressView {
    /// Services with published ports (ingress or host mode), by ID.
    pub services: Vec<IngressService>,
    /// The mesh address of every ready node: who may hand connections over.
    pub peers: Vec<String>,
}

/// One service's published ports and the tasks behind them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressService {
    /// The service.
    pub service_id: Id,
    /// Its name, for logs.
    pub name: String,
    /// Its ingress-mode published ports (TCP and UDP).
    pub ports: Vec<IngressPort>,
    /// Its running tasks (with the host-mode ports each reported).
    pub backends: Vec<IngressBackend>,
}

/// One published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressPort {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port every node answers on.
    pub published_port: u16,
    /// The port of the tasks.
    pub target_port: u16,
    /// Whether backends get a PROXY protocol v2 header.
    pub proxy_protocol: bool,
}

/// One running task of a service with published ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressBackend {
    /// The task.
    pub task_id: Id,
    /// The node it runs on.
    pub node_id: Id,
    /// That node's mesh address (`ip:port`).
    pub mesh_addr: String,
    /// `Some(grace)`: the task is being stopped; it keeps its open connections
    /// for `grace` and gets no new ones.
    pub draining_for: Option<Duration>,
    /// The host-mode ports the task's node reported for it (published port as
    /// bound there), TCP and UDP: served by that node alone.
    pub host_ports: Vec<IngressPort>,
}

/// Whether published port `port` of `s` gets PROXY protocol headers
/// ([`PROXY_PROTOCOL_LABEL`]).
fn proxied(s: &Service) -> impl Fn(u32) -> bool + '_ {
    let label = s.spec.annotations.labels.get(PROXY_PROTOCOL_LABEL);
    move |port: u32| {
        label.is_some_and(|v| {
            v.split(',').any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("all") || p.parse::<u32>() == Ok(port)
            })
        })
    }
}

/// A port the mesh can serve: TCP or UDP, both ports set and in range.
fn mesh_port(p: &PortConfig, proxy: &impl Fn(u32) -> bool) -> Option<IngressPort> {
    if p.protocol == Protocol::Sctp {
        return None;
    }
    Some(IngressPort {
        protocol: p.protocol,
        published_port: u16::try_from(p.published_port).ok().filter(|&x| x != 0)?,
        target_port: u16::try_from(p.target_port).ok().filter(|&x| x != 0)?,
        proxy_protocol: proxy(p.published_port),
    })
}

/// Whether a service asks for host-mode published ports.
fn publishes_host_ports(s: &Service) -> bool {
    let allocated = s.endpoint.as_ref().map(|e| &e.ports[..]).unwrap_or(&[]);
    let spec = s
        .spec
        .endpoint
        .as_ref()
        .map(|e| &e.ports[..])
        .unwrap_or(&[]);
    allocated
        .iter()
        .chain(spec)
        .any(|p| p.publish_mode == PublishMode::Host)
}

/// Whether a service has ports the view carries (ingress or host mode).
fn publishes(s: &Service) -> bool {
    publishes_host_ports(s) || !ingress_ports(s).is_empty()
}

/// The host-mode ports a task's node reported for it.
fn reported_host_ports(t: &Task, proxy: &impl Fn(u32) -> bool) -> Vec<IngressPort> {
    let reported = t.status.port_status.as_ref().map(|p| &p.ports[..]);
    let mut out: Vec<IngressPort> = reported
        .unwrap_or(&[])
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Host)
        .filter_map(|p| mesh_port(p, proxy))
        .collect();
    out.sort_by_key(|p| (p.published_port, p.protocol as u8));
    out
}

/// The ingress-mode TCP/UDP ports of a service: the allocated ones when the
/// allocator has filled them, else the spec's explicitly published ones.
fn ingress_ports(s: &Service) -> Vec<IngressPort> {
    let allocated = s.endpoint.as_ref().map(|e| &e.ports[..]).unwrap_or(&[]);
    let ports = if allocated.is_empty() {
        s.spec
            .endpoint
            .as_ref()
            .map(|e| &e.ports[..])
            .unwrap_or(&[])
    } else {
        allocated
    };
    let proxy = proxied(s);
    let mut out: Vec<IngressPort> = ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Ingress)
        .filter_map(|p| mesh_port(p, &proxy))
        .collect();
    out.sort_by_key(|p| (p.published_port, p.protocol as u8));
    out
}

/// The IP address in `addr` (`ip`, `ip:port` or `[v6]:port`); `None` for a
/// host name.
pub fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| addr.parse::<IpAddr>())
        .ok()
}

/// The mesh address of a node that can take connections, if any.
fn mesh_addr(n: &Node) -> Option<&str> {
    let addr = n.description.as_ref()?.mesh_addr.as_str();
    (n.status.state == NodeState::Ready && !addr.is_empty()).then_some(addr)
}

/// Computes the whole view from a store snapshot.
pub fn compute(view: &View) -> IngressView {
    let mut nodes: HashMap<Id, Option<String>> = HashMap::new();
    let mut services = Vec::new();
    for s in view.list::<Service>() {
        let ports = ingress_ports(&s);
        let host = publishes_host_ports(&s);
        if ports.is_empty() && !host {
            continue;
        }
        let proxy = proxied(&s);
        let mut backends = Vec::new();
        for t in view.tasks_by_service(&s.id) {
            if t.status.state != TaskState::Running || t.node_id.is_empty() {
                continue;
            }
            let addr = nodes
                .entry(t.node_id.clone())
                .or_insert_with(|| {
                    view.get::<Node>(&t.node_id)
                        .and_then(|n| mesh_addr(&n).map(str::to_string))
                })
                .clone();
            let Some(mesh_addr) = addr else { continue };
            let draining_for =
                (t.desired_state > TaskState::Running).then(|| swarm_runtime::stop_grace(&t));
            backends.push(IngressBackend {
                task_id: t.id.clone(),
                node_id: t.node_id.clone(),
                mesh_addr,
                draining_for,
                host_ports: if host {
                    reported_host_ports(&t, &proxy)
                } else {
                    Vec::new()
                },
            });
        }
        backends.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        services.push(IngressService {
            service_id: s.id.clone(),
            name: s.spec.annotations.name.clone(),
            ports,
            backends,
        });
    }
    services.sort_by(|a, b| a.service_id.cmp(&b.service_id));
    let mut peers: Vec<String> = view
        .list::<Node>()
        .filter_map(|n| mesh_addr(&n).map(str::to_string))
        .collect();
    peers.sort();
    IngressView { services, peers }
}

/// Whether a store change can change the view, given the services that
/// published ports in the last view.
fn relevant(c: &swarm_core::Change, published: &HashSet<Id>) -> bool {
    if let Some(t) = c.object.downcast::<Task>() {
        if !published.contains(&t.service_id) {
            return false;
        }
        let Some(old) = c.old.as_ref().and_then(|o| o.downcast::<Task>()) else {
            return true;
        };
        return old.status.state != t.status.state
            || old.desired_state != t.desired_state
            || old.node_id != t.node_id
            || old.status.port_status != t.status.port_status
            || c.action == swarm_core::Action::Remove;
    }
    if let Some(n) = c.object.downcast::<Node>() {
        let Some(old) = c.old.as_ref().and_then(|o| o.downcast::<Node>()) else {
            return true;
        };
        return mesh_addr(old) != mesh_addr(n);
    }
    if let Some(s) = c.object.downcast::<Service>() {
        return published.contains(&s.id) || publishes(s);
    }
    false
}

/// Keeps the swarm's ingress view up to date from `store` while anyone holds a
/// receiver of it. Cheap when no service publishes a port: changes of other
/// services' tasks are skipped with one lookup.
pub fn feed(store: Store) -> watch::Receiver<Arc<IngressView>> {
    feed_view(
        store,
        Filter::kinds([Kind::Service, Kind::Task, Kind::Node]),
        compute,
        |v| v.services.iter().map(|s| s.service_id.clone()).collect(),
        relevant,
    )
}

/// The shared part of the views the leader sends every node (the routing mesh's,
/// the overlay networks'): computes a view of type `V` from the store, then on
/// each batch of changes that `relevant` (given `key` of the last view) says may
/// change it, gathers what else lands in [`FEED_WINDOW`], computes it again and
/// publishes it if it differs. Stops when every receiver is dropped.
pub(crate) fn feed_view<V, K>(
    store: Store,
    filter: Filter,
    compute: fn(&View) -> V,
    key: fn(&V) -> K,
    relevant: fn(&swarm_core::Change, &K) -> bool,
) -> watch::Receiver<Arc<V>>
where
    V: PartialEq + Send + Sync + 'static,
    K: Send + 'static,
{
    let (view, mut changes) = store.view_and_watch(filter);
    let first = compute(&view);
    drop(view);
    let mut last_key = key(&first);
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = futures::StreamExt::next(&mut changes) => match e {
                    Some(e) => e,
                    None => return,
                },
                _ = tx.closed() => return,
            };
            if !event.changes.iter().any(|c| relevant(c, &last_key)) {
                continue;
            }
            // Gather what else lands in the window, then read the store once.
            let _ = tokio::time::timeout(FEED_WINDOW, async {
                while futures::StreamExt::next(&mut changes).await.is_some() {}
            })
            .await;
            let next = compute(&store.view());
            last_key = key(&next);
            tx.send_if_modified(|cur| {
                if **cur == next {
                    false
                } else {
                    *cur = Arc::new(next);
                    true
                }
            });
        }
    });
    rx
}

/// A node's running mesh: its data plane and what it takes views from.
pub(crate) struct NodeMesh {
    mesh: mesh::Mesh,
    /// Where the node's session delivers the views the leader sends.
    pub(crate) views: watch::Sender<Arc<IngressView>>,
    /// The mesh address other nodes reach this one on.
    pub(crate) addr: String,
}

impl NodeMesh {
    /// Starts the data plane of `cfg` and the loop that keeps it following the
    /// views, resolving this node's tasks through `runtime`.
    pub(crate) async fn start(
        cfg: &RoutingMeshConfig,
        node_id: Id,
        runtime: Arc<dyn Runtime>,
        stop: watch::Receiver<bool>,
    ) -> crate::error::Result<NodeMesh> {
        let mesh_cfg = mesh::MeshConfig {
            kernel: cfg.kernel,
            ..mesh::MeshConfig::new(cfg.ingress_ip, cfg.peer_addr)
        };
        let started = mesh::Mesh::start(mesh_cfg)
            .await
            .map_err(|e| crate::error::Error::Unavailable(format!("routing mesh: {e}")))?;
        let bound = started.peer_addr();
        let ip = cfg.advertise_ip.unwrap_or(bound.ip());
        if ip.is_unspecified() {
            started.shutdown().await;
            return Err(crate::error::Error::InvalidArgument(format!(
                "routing mesh: the peer listener is on {bound}: give the address other nodes reach it on"
            )));
        }
        let addr = SocketAddr::new(ip, bound.port()).to_string();
        let (views, rx) = watch::channel(Arc::new(IngressView::default()));
        tokio::spawn(follow(started.clone(), node_id, runtime, rx, stop));
        Ok(NodeMesh {
            mesh: started,
            views,
            addr,
        })
    }

    /// [`NodeMesh::start`] when the node has a mesh (`cfg`). Other nodes reach
    /// the peer listener on its own address, or on `advertised` (the node's
    /// address) when it listens on every address, unless `cfg` names one.
    pub(crate) async fn start_if(
        cfg: Option<&RoutingMeshConfig>,
        advertised: Option<IpAddr>,
        node_id: &Id,
        runtime: &Arc<dyn Runtime>,
        stop: &watch::Receiver<bool>,
    ) -> crate::error::Result<Option<NodeMesh>> {
        let Some(cfg) = cfg else { return Ok(None) };
        let listening = Some(cfg.peer_addr.ip()).filter(|ip| !ip.is_unspecified());
        let cfg = RoutingMeshConfig {
            advertise_ip: cfg.advertise_ip.or(listening).or(advertised),
            ..cfg.clone()
        };
        NodeMesh::start(&cfg, node_id.clone(), runtime.clone(), stop.clone())
            .await
            .map(Some)
    }

    /// Closes every published port and the peer listener.
    pub(crate) async fn shutdown(&self) {
        self.mesh.shutdown().await;
    }
}

/// Applies each view to `mesh` until `stop`; retries local tasks whose address
/// is not known yet.
async fn follow(
    mesh: mesh::Mesh,
    me: Id,
    runtime: Arc<dyn Runtime>,
    mut views: watch::Receiver<Arc<IngressView>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut resolver = Resolver::default();
    let mut retry = false;
    loop {
        let view = views.borrow_and_update().clone();
        let (plane, unresolved) = resolver.plane(&view, &me, runtime.as_ref()).await;
        mesh.set_peers(
            view.peers
                .iter()
                .filter_map(|p| p.parse::<SocketAddr>().ok().map(|a| a.ip()))
                .collect(),
        );
        for e in mesh.apply(plane) {
            if !retry {
                tracing::warn!(error = %e, "routing mesh: a published port is not served on this node");
            }
        }
        retry = unresolved;
        tokio::select! {
            r = views.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(RESOLVE_RETRY), if unresolved => {}
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
    mesh.shutdown().await;
}

/// What a node remembers between views: its tasks' addresses and when each
/// draining task's grace ends.
#[derive(Default)]
struct Resolver {
    addrs: HashMap<Id, LocalTask>,
    drain_deadlines: HashMap<Id, Instant>,
}

/// Where a task of this node is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LocalTask {
    /// Its own address, or loopback on the host network.
    ip: IpAddr,
    /// It runs on the host network: it binds its target ports on the node.
    host_network: bool,
}

/// The local-only mesh entries of a task of this node for the host-mode ports
/// it reported: each published port to the task's target port. A port the
/// task binds itself (on the host network, published on its target port) is
/// left to it.
fn host_entries<'a>(
    task_id: &'a Id,
    ports: &'a [IngressPort],
    task: LocalTask,
) -> impl Iterator<Item = mesh::PublishedPort> + 'a {
    ports
        .iter()
        .filter(move |p| !(task.host_network && p.published_port == p.target_port))
        .map(move |p| mesh::PublishedPort {
            protocol: match p.protocol {
                Protocol::Udp => mesh::Protocol::Udp,
                _ => mesh::Protocol::Tcp,
            },
            published_port: p.published_port,
            target_port: p.target_port,
            proxy_protocol: p.proxy_protocol,
            backends: vec![mesh::Backend {
                task_id: task_id.to_string(),
                target: mesh::Target::Local(SocketAddr::new(task.ip, p.target_port)),
                // As with Docker's bindings, the task answers until it stops.
                draining_until: None,
            }],
        })
}

impl Resolver {
    /// The data plane's view for `view` on node `me`; `true` when some local
    /// task could not be resolved yet.
    async fn plane(
        &mut self,
        view: &IngressView,
        me: &Id,
        runtime: &dyn Runtime,
    ) -> (mesh::IngressView, bool) {
        let now = Instant::now();
        let mut unresolved = false;
        let mut live: HashSet<&Id> = HashSet::new();
        let mut ports = Vec::new();
        let forward_host_ports = !runtime.binds_host_ports();
        for s in &view.services {
            let mut backends = Vec::new();
            for b in &s.backends {
                live.insert(&b.task_id);
                let host_ports = if forward_host_ports {
                    &b.host_ports[..]
                } else {
                    &[]
                };
                let target = if &b.node_id == me {
                    if s.ports.is_empty() && host_ports.is_empty() {
                        continue;
                    }
                    match self.local_task(&b.task_id, runtime).await {
                        Some(task) => {
                            ports.extend(host_entries(&b.task_id, host_ports, task));
                            Some(Err(task.ip))
                        }
                        None => {
                            unresolved = true;
                            None
                        }
                    }
                } else {
                    b.mesh_addr.parse::<SocketAddr>().ok().map(Ok)
                };
                let Some(target) = target else { continue };
                let draining_until = b.draining_for.map(|grace| {
                    *self
                        .drain_deadlines
                        .entry(b.task_id.clone())
                        .or_insert(now + grace)
                });
                backends.push((b.task_id.to_string(), target, draining_until));
            }
            for p in &s.ports {
                let protocol = match p.protocol {
                    Protocol::Udp => mesh::Protocol::Udp,
                    _ => mesh::Protocol::Tcp,
                };
                ports.push(mesh::PublishedPort {
                    protocol,
                    published_port: p.published_port,
                    target_port: p.target_port,
                    proxy_protocol: p.proxy_protocol,
                    backends: backends
                        .iter()
                        .map(|(task_id, target, draining_until)| mesh::Backend {
                            task_id: task_id.clone(),
                            target: match target {
                                Ok(peer) => mesh::Target::Remote { peer: *peer },
                                Err(ip) => mesh::Target::Local(SocketAddr::new(*ip, p.target_port)),
                            },
                            draining_until: *draining_until,
                        })
                        .collect(),
                });
            }
        }
        self.addrs.retain(|id, _| live.contains(id));
        self.drain_deadlines.retain(|id, _| live.contains(id));
        (mesh::IngressView { ports }, unresolved)
    }

    /// Where a local task is reached: its own address, or loopback for a task
    /// on the host network. `None` while the runtime does not know it yet.
    async fn local_task(&mut self, task: &Id, runtime: &dyn Runtime) -> Option<LocalTask> {
        if let Some(t) = self.addrs.get(task) {
            return Some(*t);
        }
        let inspected = runtime.inspect(task.as_str()).await.ok()?;
        if inspected.state != swarm_runtime::ContainerState::Running {
            return None;
        }
        let t = LocalTask {
            ip: inspected.addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            host_network: inspected.addr.is_none(),
        };
        self.addrs.insert(task.clone(), t);
        Some(t)
    }
}

#[cfg(test)]
mod tests;
