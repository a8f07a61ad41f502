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
//! namespace of its own, see [`crate::agent::netplane`]; the loopback address for a
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
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::types::{
    Node, NodeState, PortConfig, Protocol, PublishMode, Service, Task, TaskState,
};
use swarm_core::{Filter, Id, Kind, Store, View};
use tokio::sync::watch;

/// Service label naming the published ports whose backends get a PROXY
/// protocol v2 header carrying the client's address (Docker's moby#25526):
/// a comma-separated list of published ports, or `all`.
pub const PROXY_PROTOCOL_LABEL: &str = "swarm.proxy-protocol";

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
    super::feed_view(
        store,
        Filter::kinds([Kind::Service, Kind::Task, Kind::Node]),
        compute,
        |v| v.services.iter().map(|s| s.service_id.clone()).collect(),
        relevant,
    )
}

#[cfg(test)]
mod tests;
