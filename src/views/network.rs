//! The overlay networks' view: every overlay network (ingress excepted) with
//! tasks, each task with its address and the data-path address of its node,
//! each service on it with its endpoint mode and VIP, and the keys of the
//! encrypted networks. The leader computes it from its store and its dispatcher
//! sends it to every node whenever it changes, the way the routing mesh's view
//! travels ([`crate::views::ingress`]); each node's network plane applies it
//! ([`crate::agent::netplane`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use swarm_core::types::{Cluster, Network, Node, ResolutionMode, Service, Task, TaskState};
use swarm_core::{Filter, Id, Kind, Store, View};
use tokio::sync::watch;

/// The option Docker shows the VXLAN IDs of an overlay network under.
pub const VXLAN_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// Option of a network's driver that asks for encryption between the nodes.
pub const ENCRYPTED_OPTION: &str = "encrypted";

/// The subsystem name of the overlay keys in the cluster object.
pub const KEY_SUBSYSTEM: &str = "networking:overlay";

/// Key length in bytes.
pub const KEY_LEN: usize = 32;

/// The overlay keys as nodes use them (sent to them with the network view).
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct OverlayKeys {
    /// Every key in force, oldest first, with its lamport time.
    pub keys: Vec<(u64, Vec<u8>)>,
    /// Index in [`keys`](OverlayKeys::keys) of the key to send with.
    pub primary: usize,
}

impl std::fmt::Debug for OverlayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("OverlayKeys")
            .field(
                "lamport_times",
                &self.keys.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            )
            .field("primary", &self.primary)
            .finish()
    }
}

impl OverlayKeys {
    /// The overlay keys held in `cluster` (none before the leader made them).
    pub fn of(cluster: &Cluster) -> OverlayKeys {
        let mut keys: Vec<(u64, Vec<u8>)> = cluster
            .network_bootstrap_keys
            .iter()
            .filter(|k| k.subsystem == KEY_SUBSYSTEM && k.key.len() == KEY_LEN)
            .map(|k| (k.lamport_time, k.key.clone()))
            .collect();
        keys.sort_by_key(|(t, _)| *t);
        let primary = keys.len().saturating_sub(2);
        OverlayKeys { keys, primary }
    }

    /// The key to send with, when there is one.
    pub fn primary_key(&self) -> Option<&[u8]> {
        self.keys.get(self.primary).map(|(_, k)| k.as_slice())
    }

    /// The keys in the order a data plane's key ring takes them: the primary
    /// first, then the others, newest first.
    pub fn ring(&self) -> Vec<Vec<u8>> {
        let mut ring: Vec<Vec<u8>> = self.primary_key().map(<[u8]>::to_vec).into_iter().collect();
        ring.extend(
            self.keys
                .iter()
                .enumerate()
                .rev()
                .filter(|(i, _)| *i != self.primary)
                .map(|(_, (_, k))| k.clone()),
        );
        ring
    }
}

/// Every overlay network with tasks, as the leader sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    /// The VXLAN UDP port of the swarm (its data-path port).
    pub vxlan_port: u16,
    /// The data-path address of every node that has one.
    pub nodes: Vec<(Id, IpAddr)>,
    /// Overlay networks (not ingress) with tasks, by ID.
    pub networks: Vec<ViewNetwork>,
    /// The keys of the encrypted networks (the cluster's, rotated by the
    /// leader's [`keymanager`](crate::manager::keymanager)); empty when no network in the
    /// view is encrypted.
    #[serde(default)]
    pub keys: OverlayKeys,
}

/// One overlay network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewNetwork {
    /// The network.
    pub id: Id,
    /// Its name.
    pub name: String,
    /// Its VXLAN ID.
    pub vni: u32,
    /// Its subnet, CIDR.
    pub subnet: String,
    /// Its gateway address.
    pub gateway: String,
    /// Whether it asks for encryption between the nodes.
    pub encrypted: bool,
    /// Its tasks (assigned up to running), by ID.
    pub tasks: Vec<ViewTask>,
    /// The services of those tasks, by ID.
    pub services: Vec<ViewService>,
}

/// One task on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewTask {
    /// The task.
    pub task_id: Id,
    /// Its DNS name, `<service>.<slot>.<task id>`.
    pub name: String,
    /// Its service.
    pub service_id: Id,
    /// Its address on the network.
    pub addr: IpAddr,
    /// The node it runs on.
    pub node_id: Id,
    /// That node's data-path address, if known.
    pub node_addr: Option<IpAddr>,
    /// Whether it runs (only running tasks resolve and take VIP traffic).
    pub running: bool,
}

/// One service on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewService {
    /// The service.
    pub service_id: Id,
    /// Its name.
    pub name: String,
    /// Its aliases on this network.
    pub aliases: Vec<String>,
    /// Endpoint mode dnsrr (else vip).
    pub dnsrr: bool,
    /// Its virtual IP on this network (vip mode, once allocated).
    pub vip: Option<IpAddr>,
}

/// The address part of `a.b.c.d/len` (or a bare address).
fn addr_of(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

/// The data-path address of a node: where its routing mesh takes hand-overs
/// (`--data-path-addr`), else the address it advertised.
fn underlay(n: &Node) -> Option<IpAddr> {
    n.description
        .as_ref()
        .and_then(|d| crate::state::ip_of(&d.mesh_addr))
        .or_else(|| crate::state::ip_of(&n.status.addr))
        .filter(|ip| !ip.is_unspecified())
}

/// Whether a network is an overlay network tasks get their own interface on.
pub(crate) fn is_task_overlay(n: &Network) -> bool {
    !n.spec.ingress && matches!(n.spec.driver_config.name.as_str(), "" | "overlay")
}

/// The VXLAN ID the allocator gave a network.
pub(crate) fn vni_of(n: &Network) -> Option<u32> {
    n.driver_state
        .as_ref()?
        .options
        .get(VXLAN_OPTION)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether a task belongs in the view: placed, not past running, not leaving.
fn in_view(t: &Task) -> bool {
    !t.node_id.is_empty()
        && t.status.state >= TaskState::Assigned
        && t.status.state <= TaskState::Running
        && t.desired_state <= TaskState::Running
}

/// Computes the whole view from a store snapshot.
pub fn compute(view: &View) -> NetworkView {
    let vxlan_port = view
        .cluster()
        .and_then(|c| u16::try_from(c.vxlan_udp_port).ok())
        .filter(|p| *p != 0)
        .unwrap_or(swarm_net::overlay::VXLAN_PORT);
    let mut nodes: HashMap<Id, Option<IpAddr>> = HashMap::new();
    let mut networks: BTreeMap<Id, ViewNetwork> = BTreeMap::new();
    let mut services: BTreeMap<Id, HashSet<Id>> = BTreeMap::new();
    for t in view.list::<Task>() {
        if !in_view(&t) {
            continue;
        }
        for a in &t.networks {
            let net = view
                .get::<Network>(&a.network.id)
                .unwrap_or(a.network.clone());
            if !is_task_overlay(&net) {
                continue;
            }
            let Some(addr) = a.addresses.first().and_then(|c| addr_of(c)) else {
                continue;
            };
            let Some(entry) = network_entry(&mut networks, &net) else {
                continue;
            };
            let node_addr = *nodes
                .entry(t.node_id.clone())
                .or_insert_with(|| view.get::<Node>(&t.node_id).and_then(|n| underlay(&n)));
            entry.tasks.push(ViewTask {
                task_id: t.id.clone(),
                name: swarm_runtime::container_name(&t),
                service_id: t.service_id.clone(),
                addr,
                node_id: t.node_id.clone(),
                node_addr,
                running: t.status.state == TaskState::Running,
            });
            if !t.service_id.is_empty() {
                services
                    .entry(net.id.clone())
                    .or_default()
                    .insert(t.service_id.clone());
            }
        }
    }
    for (net_id, ids) in services {
        let Some(entry) = networks.get_mut(&net_id) else {
            continue;
        };
        for sid in ids {
            let Some(s) = view.get::<Service>(&sid) else {
                continue;
            };
            entry.services.push(view_service(&s, &net_id));
        }
    }
    let mut out: Vec<ViewNetwork> = networks.into_values().collect();
    for n in &mut out {
        n.tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    }
    let mut node_addrs: Vec<(Id, IpAddr)> = view
        .list::<Node>()
        .filter_map(|n| underlay(&n).map(|a| (n.id.clone(), a)))
        .collect();
    node_addrs.sort();
    let keys = match out.iter().any(|n| n.encrypted) {
        true => view
            .cluster()
            .map(|c| OverlayKeys::of(&c))
            .unwrap_or_default(),
        false => Default::default(),
    };
    NetworkView {
        vxlan_port,
        nodes: node_addrs,
        networks: out,
        keys,
    }
}

/// The entry of `net` in `networks`, created on first use; `None` for a network
/// not allocated yet.
fn network_entry<'a>(
    networks: &'a mut BTreeMap<Id, ViewNetwork>,
    net: &Network,
) -> Option<&'a mut ViewNetwork> {
    if !networks.contains_key(&net.id) {
        let vni = vni_of(net)?;
        let ipam = net.ipam.as_ref()?.configs.first()?;
        networks.insert(
            net.id.clone(),
            ViewNetwork {
                id: net.id.clone(),
                name: net.spec.annotations.name.clone(),
                vni,
                subnet: ipam.subnet.clone(),
                gateway: ipam.gateway.clone(),
                encrypted: net
                    .spec
                    .driver_config
                    .options
                    .contains_key(ENCRYPTED_OPTION),
                tasks: Vec::new(),
                services: Vec::new(),
            },
        );
    }
    networks.get_mut(&net.id)
}

fn view_service(s: &Service, net_id: &Id) -> ViewService {
    let dnsrr = s
        .spec
        .endpoint
        .as_ref()
        .is_some_and(|e| e.mode == ResolutionMode::Dnsrr);
    let vip = s.endpoint.as_ref().and_then(|e| {
        e.virtual_ips
            .iter()
            .find(|v| v.network_id == *net_id)
            .and_then(|v| addr_of(&v.addr))
    });
    let aliases = s
        .spec
        .task
        .networks
        .iter()
        .filter(|a| a.target == net_id.as_str())
        .flat_map(|a| a.aliases.iter().cloned())
        .collect();
    ViewService {
        service_id: s.id.clone(),
        name: s.spec.annotations.name.clone(),
        aliases,
        dnsrr,
        vip,
    }
}

/// Whether a task has an attachment that can be in the view.
fn on_overlay(t: &Task) -> bool {
    t.networks.iter().any(|a| is_task_overlay(&a.network))
}

/// Whether a store change can change the view, given the services in the last
/// one.
fn relevant(c: &swarm_core::Change, services: &HashSet<Id>) -> bool {
    if let Some(t) = c.object.downcast::<Task>() {
        let old = c.old.as_ref().and_then(|o| o.downcast::<Task>());
        if !on_overlay(t) && !old.is_some_and(|o| on_overlay(o)) {
            return false;
        }
        let Some(old) = old else { return true };
        return c.action == swarm_core::Action::Remove
            || in_view(old) != in_view(t)
            || (old.status.state == TaskState::Running) != (t.status.state == TaskState::Running)
            || old.node_id != t.node_id
            || old.networks != t.networks;
    }
    if let Some(n) = c.object.downcast::<Node>() {
        let Some(old) = c.old.as_ref().and_then(|o| o.downcast::<Node>()) else {
            return true;
        };
        return underlay(old) != underlay(n);
    }
    if let Some(s) = c.object.downcast::<Service>() {
        return services.contains(&s.id);
    }
    // Networks and the cluster (its data-path port) change rarely.
    true
}

/// Keeps the swarm's network view up to date from `store` while anyone holds a
/// receiver of it (the same batching as the routing mesh's feed).
pub fn feed(store: Store) -> watch::Receiver<Arc<NetworkView>> {
    super::feed_view(
        store,
        Filter::kinds([
            Kind::Service,
            Kind::Task,
            Kind::Node,
            Kind::Network,
            Kind::Cluster,
        ]),
        compute,
        |v| {
            v.networks
                .iter()
                .flat_map(|n| n.services.iter().map(|s| s.service_id.clone()))
                .collect()
        },
        relevant,
    )
}

#[cfg(test)]
pub(crate) mod tests;
