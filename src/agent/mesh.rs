//! A node's routing mesh: its data plane ([`swarm_net::mesh`]) following the
//! ingress view the leader sends ([`crate::views::ingress`]). A task on this node
//! is reached at its own address (a container's IP; the address on the node's
//! gateway bridge of a task in a namespace of its own, see
//! [`crate::agent::netplane`]; the loopback address for a task on the host
//! network), a task on another node through that node's mesh (its peer
//! listener), so a published port answers on every node whether or not it runs
//! a task. Host-mode ports a runtime does not bind itself are served here with
//! local-only entries.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::Id;
use swarm_core::types::Protocol;
use swarm_net::mesh;
use swarm_runtime::Runtime;
use tokio::sync::watch;

use crate::views::ingress::{IngressPort, IngressView};

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
