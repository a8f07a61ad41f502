//! Peers on a sandbox's VXLAN device: tunnel FDB entries (MAC → node) and neighbour
//! entries (IP → MAC) that the VXLAN ARP proxy answers from.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::Handle;

use super::linux::{errno, nl};
use super::{MacAddr, OverlayError, Peer};

pub(crate) async fn add_peer(handle: &Handle, vxlan: u32, p: &Peer) -> Result<(), OverlayError> {
    handle
        .neighbours()
        .add_bridge(vxlan, &p.mac)
        .flags(NeighbourFlags::Own)
        .destination(p.node_underlay)
        .replace()
        .execute()
        .await
        .map_err(nl(format!(
            "adding FDB entry {} -> {}",
            MacAddr(p.mac),
            p.node_underlay
        )))?;
    handle
        .neighbours()
        .add(vxlan, p.addr)
        .link_layer_address(&p.mac)
        .replace()
        .execute()
        .await
        .map_err(nl(format!(
            "adding neighbour {} -> {}",
            p.addr,
            MacAddr(p.mac)
        )))
}

/// The peers programmed on the VXLAN device `vxlan`: permanent neighbours (IP → MAC)
/// joined with the tunnel FDB entries (MAC → node). Entries without their other half are
/// left alone.
pub(crate) async fn programmed_peers(
    handle: &Handle,
    vxlan: u32,
) -> Result<Vec<Peer>, OverlayError> {
    fn ip_of(attrs: &[NeighbourAttribute]) -> Option<IpAddr> {
        attrs.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
            // A bridge FDB entry's remote comes back unparsed.
            NeighbourAttribute::Destination(NeighbourAddress::Other(raw)) => match raw.len() {
                4 => <[u8; 4]>::try_from(raw.as_slice()).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(raw.as_slice()).ok().map(IpAddr::from),
                _ => None,
            },
            _ => None,
        })
    }
    fn mac_of(attrs: &[NeighbourAttribute]) -> Option<[u8; 6]> {
        attrs.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(mac) => mac.as_slice().try_into().ok(),
            _ => None,
        })
    }
    let dump = |family| async move {
        handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_filter(|m| futures::future::ready(m.header.ifindex == vxlan))
            .try_collect::<Vec<NeighbourMessage>>()
            .await
            .map_err(nl("reading the peers of vxlan0"))
    };
    let fdb: HashMap<[u8; 6], IpAddr> = dump(AddressFamily::Bridge)
        .await?
        .iter()
        .filter(|m| m.header.flags.contains(NeighbourFlags::Own))
        .filter_map(|m| Some((mac_of(&m.attributes)?, ip_of(&m.attributes)?)))
        .collect();
    let mut peers = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        for m in dump(family).await? {
            if m.header.state != NeighbourState::Permanent {
                continue;
            }
            if let (Some(addr), Some(mac)) = (ip_of(&m.attributes), mac_of(&m.attributes))
                && let Some(node) = fdb.get(&mac)
            {
                peers.push(Peer {
                    addr,
                    mac,
                    node_underlay: *node,
                });
            }
        }
    }
    Ok(peers)
}

fn ip_attr(ip: IpAddr) -> NeighbourAttribute {
    NeighbourAttribute::Destination(match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    })
}

pub(crate) async fn del_peer(handle: &Handle, vxlan: u32, p: &Peer) -> Result<(), OverlayError> {
    let mut fdb = NeighbourMessage::default();
    fdb.header.family = AddressFamily::Bridge;
    fdb.header.ifindex = vxlan;
    fdb.header.flags = NeighbourFlags::Own;
    fdb.header.state = NeighbourState::Permanent;
    fdb.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(p.mac.to_vec()),
        ip_attr(p.node_underlay),
    ];
    let mut neigh = NeighbourMessage::default();
    neigh.header.family = match p.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    neigh.header.ifindex = vxlan;
    neigh.attributes = vec![ip_attr(p.addr)];
    for (msg, what) in [(fdb, "FDB entry"), (neigh, "neighbour")] {
        match handle.neighbours().del(msg).execute().await {
            Err(e) if errno(&e) != Some(libc::ENOENT) => {
                return Err(nl(format!("deleting {what} of peer {}", p.addr))(e));
            }
            _ => {}
        }
    }
    Ok(())
}
