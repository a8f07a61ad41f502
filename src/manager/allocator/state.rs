//! The allocator's in-memory pools and the allocation steps. Everything here is
//! rebuilt from the store by [`Pools::rebuild`], so the store stays the only
//! state: a new leader (or this one after a failed commit) starts over from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use swarm_core::types::{
    AddressFamily, Driver, Endpoint, EndpointSpec, IpamConfig, IpamOptions, Network,
    NetworkAttachment, Protocol, PublishMode, ResolutionMode, Service, Task, TaskState, VirtualIp,
};
use swarm_core::{Id, Tables};
use swarm_net::ipam::{
    AddressPool, DYNAMIC_PORTS, IpamError, PortAllocator, Subnet, SubnetPools, parse_addr,
};

use super::AllocError;
pub use crate::views::network::VXLAN_OPTION;

/// The first VXLAN ID given to an overlay network.
pub const FIRST_VXLAN_ID: u32 = 4096;

/// Default pools when the store holds no cluster object (bare stores in tests).
const DEFAULT_POOL: &str = "10.0.0.0/8";

/// One allocated network: its address pools (one per subnet) and VXLAN ID.
#[derive(Clone, Debug)]
struct NetPools {
    subnets: Vec<Subnet>,
    pools: Vec<AddressPool>,
    vxlan: Option<u32>,
}

/// Addresses a service or a task holds, by network.
type Held = Vec<(Id, Ipv4Addr)>;

/// What the allocator holds, rebuilt from the store.
#[derive(Clone, Debug)]
pub(crate) struct Pools {
    subnets: SubnetPools,
    networks: HashMap<Id, NetPools>,
    vxlans: BTreeSet<u32>,
    ports: PortAllocator,
    service_vips: HashMap<Id, Held>,
    service_ports: HashMap<Id, Vec<(Protocol, u16)>>,
    tasks: HashMap<Id, Held>,
}

/// Whether a task still holds its addresses: it does while it is in the store,
/// unless it has stopped for good and is not wanted any more.
pub(crate) fn holds_addresses(t: &Task) -> bool {
    !(t.status.state.is_terminal() && t.desired_state > TaskState::Running)
}

/// The cluster's pools, or the defaults (with an error logged) when they do
/// not parse.
pub(super) fn subnet_pools(view: &Tables) -> SubnetPools {
    let default = || SubnetPools::new(&[DEFAULT_POOL.to_string()], 24).expect("valid default");
    match view.cluster() {
        Some(c) if !c.default_address_pool.is_empty() => {
            let size = if c.subnet_size == 0 {
                24
            } else {
                c.subnet_size
            };
            SubnetPools::new(&c.default_address_pool, size).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cluster address pools unusable; using 10.0.0.0/8");
                default()
            })
        }
        _ => default(),
    }
}

/// Ingress-mode published ports of an endpoint.
pub(crate) fn ingress_ports(ports: &[swarm_core::types::PortConfig]) -> bool {
    ports.iter().any(|p| p.publish_mode == PublishMode::Ingress)
}

impl Pools {
    /// The pools as the store has them: every allocated network's subnets and
    /// VXLAN ID, every service's VIPs and ingress ports, every address of a
    /// task that still holds it. Anything inconsistent (two objects claiming
    /// one address) is logged and the later claim ignored.
    pub(crate) fn rebuild(view: &Tables) -> Pools {
        let mut p = Pools {
            subnets: subnet_pools(view),
            networks: HashMap::new(),
            vxlans: BTreeSet::new(),
            ports: PortAllocator::new(),
            service_vips: HashMap::new(),
            service_ports: HashMap::new(),
            tasks: HashMap::new(),
        };
        for n in view.list::<Network>() {
            if let Some(ipam) = &n.ipam {
                p.restore_network(&n, ipam);
            }
        }
        for s in view.list::<Service>() {
            let Some(e) = &s.endpoint else { continue };
            let mut vips = Vec::new();
            for v in &e.virtual_ips {
                if let Some(a) = p.restore_addr(&v.network_id, &v.addr, &s.id) {
                    vips.push((v.network_id.clone(), a));
                }
            }
            p.service_vips.insert(s.id.clone(), vips);
            let mut ports = Vec::new();
            for port in e
                .ports
                .iter()
                .filter(|x| x.publish_mode == PublishMode::Ingress)
            {
                match p.ports.reserve(port.protocol, port.published_port, &s.id) {
                    Ok(()) => ports.push((port.protocol, port.published_port as u16)),
                    Err(e) => {
                        tracing::error!(service = %s.id, error = %e, "published port in the store conflicts")
                    }
                }
            }
            p.service_ports.insert(s.id.clone(), ports);
        }
        for t in view.list::<Task>() {
            if t.networks.is_empty() || !holds_addresses(&t) {
                continue;
            }
            let mut held = Vec::new();
            for att in &t.networks {
                for a in &att.addresses {
                    if let Some(x) = p.restore_addr(&att.network.id, a, &t.id) {
                        held.push((att.network.id.clone(), x));
                    }
                }
            }
            p.tasks.insert(t.id.clone(), held);
        }
        p
    }

    fn restore_network(&mut self, n: &Network, ipam: &IpamOptions) {
        let mut np = NetPools {
            subnets: Vec::new(),
            pools: Vec::new(),
            vxlan: None,
        };
        for c in &ipam.configs {
            match pool_of(c).and_then(|(s, pool)| self.subnets.reserve(s).map(|()| (s, pool))) {
                Ok((s, pool)) => {
                    np.subnets.push(s);
                    np.pools.push(pool);
                }
                Err(e) => {
                    tracing::error!(network = %n.id, error = %e, "network subnet in the store unusable")
                }
            }
        }
        if let Some(v) = n
            .driver_state
            .as_ref()
            .and_then(|d| d.options.get(VXLAN_OPTION))
            .and_then(|v| v.split(',').next()?.trim().parse::<u32>().ok())
            && self.vxlans.insert(v)
        {
            np.vxlan = Some(v);
        }
        self.networks.insert(n.id.clone(), np);
    }

    fn restore_addr(&mut self, net: &Id, addr: &str, owner: &Id) -> Option<Ipv4Addr> {
        let a = parse_addr(addr).ok()?;
        let np = self.networks.get_mut(net)?;
        let pool = np.pools.iter_mut().find(|p| p.subnet().contains(a))?;
        match pool.reserve(a) {
            Ok(()) => Some(a),
            Err(e) => {
                tracing::error!(owner = %owner, error = %e, "address in the store held twice");
                None
            }
        }
    }

    /// Whether the network has its subnets.
    pub(crate) fn network_allocated(&self, id: &Id) -> bool {
        self.networks.contains_key(id)
    }

    /// Gives subnets, a gateway and (overlay) a VXLAN ID to a network: its
    /// `ipam` and `driver_state` as they should be written.
    pub(crate) fn allocate_network(
        &mut self,
        n: &Network,
    ) -> Result<(IpamOptions, Driver), IpamError> {
        let wanted: Vec<IpamConfig> = n
            .spec
            .ipam
            .as_ref()
            .map(|i| {
                i.configs
                    .iter()
                    .filter(|c| c.family != AddressFamily::Ipv6 && !c.subnet.contains(':'))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut np = NetPools {
            subnets: Vec::new(),
            pools: Vec::new(),
            vxlan: None,
        };
        let mut configs = Vec::new();
        let mut result = Ok(());
        if wanted.is_empty() {
            match self
                .subnets
                .allocate()
                .and_then(|s| Ok((s, AddressPool::new(s, None, None)?)))
            {
                Ok((s, pool)) => {
                    np.subnets.push(s);
                    configs.push(config_of(&pool, &BTreeMap::new()));
                    np.pools.push(pool);
                }
                Err(e) => result = Err(e),
            }
        }
        for c in &wanted {
            if result.is_err() {
                break;
            }
            let step = if c.subnet.is_empty() {
                self.subnets.allocate().and_then(|s| {
                    np.subnets.push(s);
                    let mut pool = AddressPool::new(s, None, None)?;
                    reserve_aux(&mut pool, &c.reserved)?;
                    Ok(pool)
                })
            } else {
                pool_of(c).and_then(|(s, mut pool)| {
                    self.subnets.reserve(s)?;
                    np.subnets.push(s);
                    reserve_aux(&mut pool, &c.reserved)?;
                    Ok(pool)
                })
            };
            match step {
                Ok(pool) => {
                    configs.push(config_of(&pool, &c.reserved));
                    np.pools.push(pool);
                }
                Err(e) => result = Err(e),
            }
        }
        if let Err(e) = result {
            for s in &np.subnets {
                self.subnets.release(s);
            }
            return Err(e);
        }
        let mut driver = Driver {
            name: n.spec.driver_config.name.clone(),
            options: BTreeMap::new(),
        };
        if driver.name.is_empty() || driver.name == "overlay" {
            driver.name = "overlay".into();
            let id = (FIRST_VXLAN_ID..)
                .find(|v| !self.vxlans.contains(v))
                .unwrap_or(FIRST_VXLAN_ID);
            self.vxlans.insert(id);
            np.vxlan = Some(id);
            driver.options.insert(VXLAN_OPTION.into(), id.to_string());
        }
        self.networks.insert(n.id.clone(), np);
        Ok((
            IpamOptions {
                driver: Driver {
                    name: "default".into(),
                    options: BTreeMap::new(),
                },
                configs,
            },
            driver,
        ))
    }

    /// Frees a removed network's subnets and VXLAN ID.
    pub(crate) fn free_network(&mut self, id: &Id) {
        if let Some(np) = self.networks.remove(id) {
            for s in &np.subnets {
                self.subnets.release(s);
            }
            if let Some(v) = np.vxlan {
                self.vxlans.remove(&v);
            }
        }
    }

    /// The first free address of a network (its first subnet with room).
    fn take_addr(&mut self, net: &Id) -> Result<(Ipv4Addr, Subnet), AllocError> {
        let np = self.pools_of(net)?;
        let mut last = None;
        for pool in &mut np.pools {
            match pool.allocate() {
                Ok(a) => return Ok((a, pool.subnet())),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || AllocError::NoSubnet {
                network: net.clone(),
            },
            AllocError::Ipam,
        ))
    }

    /// Takes a given (static) address on a network.
    fn take_static(&mut self, net: &Id, addr: &str) -> Result<(Ipv4Addr, Subnet), AllocError> {
        let a = parse_addr(addr)?;
        let np = self.pools_of(net)?;
        let pool = np
            .pools
            .iter_mut()
            .find(|p| p.subnet().contains(a))
            .ok_or_else(|| AllocError::AddressOutsideNetwork {
                addr: addr.to_string(),
                network: net.clone(),
            })?;
        pool.reserve(a)?;
        Ok((a, pool.subnet()))
    }

    /// An allocated network's pools.
    fn pools_of(&mut self, net: &Id) -> Result<&mut NetPools, AllocError> {
        self.networks
            .get_mut(net)
            .ok_or_else(|| AllocError::NetworkNotAllocated {
                network: net.clone(),
            })
    }

    fn give_back(&mut self, held: &[(Id, Ipv4Addr)]) {
        for (net, a) in held {
            if let Some(np) = self.networks.get_mut(net)
                && let Some(pool) = np.pools.iter_mut().find(|p| p.subnet().contains(*a))
            {
                pool.release(*a);
            }
        }
    }

    /// Gives back the addresses of `held` that are not in `kept`.
    fn give_back_except(&mut self, held: &[(Id, Ipv4Addr)], kept: &[(Id, Ipv4Addr)]) {
        let gone: Held = held.iter().filter(|x| !kept.contains(x)).cloned().collect();
        self.give_back(&gone);
    }

    /// Whether a service's allocated endpoint matches its spec and networks.
    pub(crate) fn service_current(&self, s: &Service, vip_networks: &[Id]) -> bool {
        // A service with nothing to allocate keeps no endpoint.
        let none = Endpoint::default();
        let e = s.endpoint.as_ref().unwrap_or(&none);
        let have: BTreeSet<&Id> = e.virtual_ips.iter().map(|v| &v.network_id).collect();
        e.spec.clone().unwrap_or_default() == s.spec.endpoint.clone().unwrap_or_default()
            && have == vip_networks.iter().collect::<BTreeSet<_>>()
            && self.service_vips.contains_key(&s.id)
    }

    /// The endpoint a service should have: its published ports (given ones
    /// reserved, the others picked, a port picked before kept), and a VIP on
    /// each of `vip_networks` (the VIPs it has kept). All or nothing: on error
    /// the pools are as they were. Ports and VIPs the service no longer needs
    /// are freed.
    pub(crate) fn allocate_service(
        &mut self,
        s: &Service,
        vip_networks: &[Id],
        name_of: impl Fn(&str) -> String,
    ) -> Result<Endpoint, AllocError> {
        let spec: EndpointSpec = s.spec.endpoint.clone().unwrap_or_default();
        let old = s.endpoint.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let owner = s.id.as_str();
        let mut taken: Vec<(Protocol, u16)> = Vec::new();
        let mut ports = Vec::new();
        // Ports this service picked itself last time, which it may keep.
        let mut picked: Vec<(Protocol, u32, u16)> =
            old.ports
                .iter()
                .filter(|q| {
                    q.publish_mode == PublishMode::Ingress
                        && DYNAMIC_PORTS.contains(&(q.published_port as u16))
                        && !old_spec.ports.iter().any(|o| {
                            o.published_port == q.published_port && o.protocol == q.protocol
                        })
                })
                .map(|q| (q.protocol, q.target_port, q.published_port as u16))
                .collect();
        let held_before: BTreeSet<(Protocol, u16)> = self
            .service_ports
            .get(&s.id)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let undo = |me: &mut Pools, taken: &[(Protocol, u16)]| {
            for (proto, port) in taken {
                if !held_before.contains(&(*proto, *port)) {
                    me.ports.release(*proto, *port);
                }
            }
        };
        for p in &spec.ports {
            let mut p = p.clone();
            if p.publish_mode == PublishMode::Ingress {
                let r = if p.published_port != 0 {
                    self.ports
                        .reserve(p.protocol, p.published_port, owner)
                        .map(|()| p.published_port as u16)
                } else if let Some(i) = picked
                    .iter()
                    .position(|(proto, target, _)| *proto == p.protocol && *target == p.target_port)
                    && self.ports.owner(p.protocol, picked[i].2) == Some(owner)
                {
                    Ok(picked.remove(i).2)
                } else {
                    self.ports.allocate(p.protocol, owner)
                };
                match r {
                    Ok(port) => {
                        taken.push((p.protocol, port));
                        p.published_port = u32::from(port);
                    }
                    Err(e) => {
                        undo(self, &taken);
                        return Err(match e {
                            IpamError::PortInUse { port, owner, .. } => AllocError::PortInUse {
                                port,
                                service: name_of(&owner),
                                service_id: owner,
                            },
                            e => e.into(),
                        });
                    }
                }
            }
            ports.push(p);
        }
        let old_vips: HashMap<&Id, &VirtualIp> =
            old.virtual_ips.iter().map(|v| (&v.network_id, v)).collect();
        let held_vips = self.service_vips.get(&s.id).cloned().unwrap_or_default();
        let mut new_vips: Held = Vec::new();
        let mut virtual_ips = Vec::new();
        for net in vip_networks {
            if let Some(v) = old_vips.get(net)
                && let Some((_, a)) = held_vips.iter().find(|(n, _)| n == net)
            {
                virtual_ips.push((*v).clone());
                new_vips.push((net.clone(), *a));
                continue;
            }
            match self.take_addr(net) {
                Ok((a, subnet)) => {
                    new_vips.push((net.clone(), a));
                    virtual_ips.push(VirtualIp {
                        network_id: net.clone(),
                        addr: subnet.with_prefix(a),
                    });
                }
                Err(e) => {
                    // The VIPs taken so far go back; those it held stay.
                    self.give_back_except(&new_vips, &held_vips);
                    undo(self, &taken);
                    return Err(e);
                }
            }
        }
        // Success: free what the service no longer uses.
        self.give_back_except(&held_vips, &new_vips);
        for (proto, port) in &held_before {
            if !taken.contains(&(*proto, *port)) && self.ports.owner(*proto, *port) == Some(owner) {
                self.ports.release(*proto, *port);
            }
        }
        self.service_vips.insert(s.id.clone(), new_vips);
        self.service_ports.insert(s.id.clone(), taken);
        Ok(Endpoint {
            spec: Some(spec),
            ports,
            virtual_ips,
        })
    }

    /// Frees a removed service's VIPs and ports.
    pub(crate) fn free_service(&mut self, id: &Id) {
        if let Some(vips) = self.service_vips.remove(id) {
            self.give_back(&vips);
        }
        for (proto, port) in self.service_ports.remove(id).unwrap_or_default() {
            if self.ports.owner(proto, port) == Some(id.as_str()) {
                self.ports.release(proto, port);
            }
        }
    }

    /// Attachments for a task: an address on each of `networks` (network,
    /// aliases, static addresses). All or nothing.
    pub(crate) fn allocate_task(
        &mut self,
        task: &Id,
        networks: &[(Arc<Network>, Vec<String>, Vec<String>)],
    ) -> Result<Vec<NetworkAttachment>, AllocError> {
        if let Some(old) = self.tasks.remove(task) {
            self.give_back(&old);
        }
        let mut held: Held = Vec::new();
        let mut out = Vec::new();
        for (net, aliases, statics) in networks {
            let r = if let Some(a) = statics.first() {
                self.take_static(&net.id, a)
            } else {
                self.take_addr(&net.id)
            };
            match r {
                Ok((a, subnet)) => {
                    held.push((net.id.clone(), a));
                    out.push(NetworkAttachment {
                        network: net.clone(),
                        addresses: vec![subnet.with_prefix(a)],
                        aliases: aliases.clone(),
                    });
                }
                Err(e) => {
                    self.give_back(&held);
                    return Err(AllocError::OnNetwork {
                        network: net.spec.annotations.name.clone(),
                        error: Box::new(e),
                    });
                }
            }
        }
        self.tasks.insert(task.clone(), held);
        Ok(out)
    }

    /// Frees a task's addresses (removed, or stopped for good and unwanted).
    pub(crate) fn free_task(&mut self, id: &Id) {
        if let Some(held) = self.tasks.remove(id) {
            self.give_back(&held);
        }
    }

    /// Whether the service has an endpoint allocated by these pools.
    pub(crate) fn service_allocated(&self, id: &Id) -> bool {
        self.service_vips.contains_key(id)
    }

    /// Whether the task holds addresses.
    pub(crate) fn task_holds(&self, id: &Id) -> bool {
        self.tasks.contains_key(id)
    }
}

/// The VIP networks of a service: in endpoint mode vip, each network it
/// attaches to, then the ingress network when it publishes ingress ports.
pub(crate) fn vip_networks(s: &Service, attached: &[Id], ingress: Option<&Id>) -> Vec<Id> {
    let spec = s.spec.endpoint.clone().unwrap_or_default();
    if spec.mode == ResolutionMode::Dnsrr {
        return Vec::new();
    }
    let mut v: Vec<Id> = attached.to_vec();
    if ingress_ports(&spec.ports)
        && let Some(i) = ingress
        && !v.contains(i)
    {
        v.push(i.clone());
    }
    v
}

pub(super) fn pool_of(c: &IpamConfig) -> Result<(Subnet, AddressPool), IpamError> {
    let s: Subnet = c.subnet.parse()?;
    let range = if c.range.is_empty() {
        None
    } else {
        Some(c.range.parse::<Subnet>()?)
    };
    let gw = if c.gateway.is_empty() {
        None
    } else {
        Some(parse_addr(&c.gateway)?)
    };
    Ok((s, AddressPool::new(s, range, gw)?))
}

pub(super) fn reserve_aux(
    pool: &mut AddressPool,
    aux: &BTreeMap<String, String>,
) -> Result<(), IpamError> {
    for a in aux.values() {
        pool.reserve(parse_addr(a)?)?;
    }
    Ok(())
}

fn config_of(pool: &AddressPool, reserved: &BTreeMap<String, String>) -> IpamConfig {
    IpamConfig {
        family: AddressFamily::Ipv4,
        subnet: pool.subnet().to_string(),
        range: if pool.range() == pool.subnet() {
            String::new()
        } else {
            pool.range().to_string()
        },
        gateway: pool.gateway().to_string(),
        reserved: reserved.clone(),
    }
}
