//! Checks the control API runs before a write, over a read view, so a port
//! conflict, an overlapping subnet or an exhausted pool is refused with
//! nothing changed (the allocator still copes with a conflict that slips in).

use std::collections::{BTreeMap, BTreeSet};

use swarm_core::types::{AddressFamily, IpamConfig, Network, Protocol, PublishMode, Service};
use swarm_core::{Id, Tables};
use swarm_net::ipam::{DYNAMIC_PORTS, IpamError, PortAllocator, Subnet, SubnetPools};

use super::AllocError;
use super::state::{pool_of, reserve_aux, subnet_pools};

/// Checks a user's network IPAM request against the networks in `view` and
/// the cluster's pools, changing nothing: subnets parse and overlap no other
/// network's, gateways and ranges lie inside, and a pool subnet is left when
/// one is needed.
pub(crate) fn check_network(
    view: &Tables,
    spec: &swarm_core::types::NetworkSpec,
) -> Result<(), AllocError> {
    let mut pools = rebuild_subnets(view);
    let configs = spec
        .ipam
        .as_ref()
        .map(|i| i.configs.clone())
        .unwrap_or_default();
    let v4: Vec<&IpamConfig> = configs
        .iter()
        .filter(|c| c.family != AddressFamily::Ipv6 && !c.subnet.contains(':'))
        .collect();
    if v4.is_empty() {
        pools.allocate()?;
    }
    for c in v4 {
        if c.subnet.is_empty() {
            pools.allocate()?;
            continue;
        }
        let (s, mut pool) = pool_of(c)?;
        pools.reserve(s)?;
        reserve_aux(&mut pool, &c.reserved)?;
    }
    Ok(())
}

/// The subnet pools with every network's subnets (allocated, or asked for by
/// a network not allocated yet) reserved.
fn rebuild_subnets(view: &Tables) -> SubnetPools {
    let mut pools = subnet_pools(view);
    for n in view.list::<Network>() {
        let configs = n.ipam.as_ref().or(n.spec.ipam.as_ref()).map(|i| &i.configs);
        for c in configs.into_iter().flatten() {
            if let Ok(s) = c.subnet.parse::<Subnet>() {
                let _ = pools.reserve(s);
            }
        }
    }
    pools
}

/// Checks a service's published ports against every other service in `view`,
/// changing nothing: an ingress port another service publishes (given in its
/// spec or picked for it) is refused with Docker's message, and so is a
/// request for more picked ports than the range has left.
pub(crate) fn check_ports(
    view: &Tables,
    spec: &swarm_core::types::ServiceSpec,
    me: Option<&Id>,
) -> Result<(), AllocError> {
    let Some(e) = &spec.endpoint else {
        return Ok(());
    };
    let mut ports = PortAllocator::new();
    for s in view.list::<Service>() {
        if Some(&s.id) == me {
            continue;
        }
        let given = s.spec.endpoint.iter().flat_map(|e| e.ports.iter());
        let picked = s.endpoint.iter().flat_map(|e| e.ports.iter());
        for p in given.chain(picked) {
            if p.publish_mode == PublishMode::Ingress && p.published_port != 0 {
                let _ = ports.reserve(p.protocol, p.published_port, &s.id);
            }
        }
    }
    let mut dynamic: BTreeMap<Protocol, usize> = BTreeMap::new();
    for p in e
        .ports
        .iter()
        .filter(|p| p.publish_mode == PublishMode::Ingress)
    {
        if p.published_port == 0 {
            *dynamic.entry(p.protocol).or_default() += 1;
            continue;
        }
        let Ok(port) = u16::try_from(p.published_port) else {
            continue;
        };
        if let Some(owner) = ports.owner(p.protocol, port) {
            let service = view
                .get::<Service>(owner)
                .map(|s| s.spec.annotations.name.clone())
                .unwrap_or_default();
            return Err(AllocError::PortInUse {
                port,
                service,
                service_id: owner.to_string(),
            });
        }
    }
    let mine: BTreeSet<(Protocol, u16)> = me
        .and_then(|id| view.get::<Service>(id))
        .and_then(|s| s.endpoint.clone())
        .map(|e| {
            e.ports
                .iter()
                .map(|p| (p.protocol, p.published_port as u16))
                .collect()
        })
        .unwrap_or_default();
    for (proto, n) in dynamic {
        let kept = mine
            .iter()
            .filter(|(p, port)| *p == proto && DYNAMIC_PORTS.contains(port))
            .count();
        if n > ports.free_dynamic(proto) + kept.min(n) {
            return Err(IpamError::PortsExhausted { protocol: proto }.into());
        }
    }
    Ok(())
}
