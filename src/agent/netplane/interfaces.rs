//! What a task's namespace holds before the overlay's interfaces (a Docker
//! container's `eth0` and default route), read from the namespace's `/proc`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use swarm_core::types::Task;
use swarm_net::overlay::Cidr;
use swarm_net::vip;

use super::NetPlaneError;
use crate::views::network::is_task_overlay;

/// What a task's namespace holds besides the overlay's interfaces: a Docker
/// container's `eth0` on Docker's bridge, with its default route. The overlay's
/// interfaces are numbered after it (`eth1`, ...) and leave its default route
/// alone (the overlays' subnets and VIPs are connected routes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Before {
    /// The number of the first overlay interface, `eth<first_eth>`.
    pub(super) first_eth: usize,
    /// Whether a default route through such an interface exists.
    pub(super) default_route: bool,
}

/// Reads [`Before`] of the namespace at `netns` (its `/proc/net/dev` and
/// `/proc/net/route`): an interface is the overlay's when it has a route into
/// one of `task`'s overlay subnets, so an adopted task finds its names again.
pub(super) async fn interfaces_before(task: &Task, netns: &Path) -> Result<Before, NetPlaneError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/net/dev` of a namespace with `names`.
    fn dev_text(names: &[&str]) -> String {
        let mut s = String::from(
            "Inter-|   Receive                            |  Transmit\n face |bytes    packets errs\n",
        );
        for n in names {
            s.push_str(&format!("{n:>6}: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"));
        }
        s
    }

    /// A `/proc/net/route` line (addresses as the kernel prints them: hex in the
    /// host's byte order).
    fn route_line(ifname: &str, dest: [u8; 4], gw: [u8; 4], mask: [u8; 4]) -> String {
        let hex = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        format!(
            "{ifname}\t{}\t{}\t0003\t0\t0\t0\t{}\t0\t0\t0\n",
            hex(dest),
            hex(gw),
            hex(mask)
        )
    }

    const ROUTE_HEAD: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn a_fresh_namespace_gets_eth0_and_the_default_route() {
        let ours: Vec<Cidr> = vec!["10.0.1.3/24".parse().unwrap()];
        assert_eq!(
            before_of(&dev_text(&["lo"]), ROUTE_HEAD, &ours),
            Before {
                first_eth: 0,
                default_route: false
            }
        );
        // Adopted: eth0 routes into the task's subnet, so it is the overlay's.
        let route = format!(
            "{ROUTE_HEAD}{}{}",
            route_line("eth0", [0; 4], [10, 0, 1, 1], [0; 4]),
            route_line("eth0", [10, 0, 1, 0], [0; 4], [255, 255, 255, 0])
        );
        assert_eq!(
            before_of(&dev_text(&["lo", "eth0"]), &route, &ours),
            Before {
                first_eth: 0,
                default_route: false
            }
        );
    }

    #[test]
    fn a_docker_container_keeps_its_eth0_and_default_route() {
        let ours: Vec<Cidr> = vec!["10.0.1.3/24".parse().unwrap()];
        let docker = format!(
            "{ROUTE_HEAD}{}{}",
            route_line("eth0", [0; 4], [172, 17, 0, 1], [0; 4]),
            route_line("eth0", [172, 17, 0, 0], [0; 4], [255, 255, 0, 0])
        );
        let want = Before {
            first_eth: 1,
            default_route: true,
        };
        assert_eq!(before_of(&dev_text(&["lo", "eth0"]), &docker, &ours), want);
        // Adopted after a restart: eth1 is the overlay's, found again as eth1.
        let adopted = format!(
            "{docker}{}",
            route_line("eth1", [10, 0, 1, 0], [0; 4], [255, 255, 255, 0])
        );
        assert_eq!(
            before_of(&dev_text(&["lo", "eth0", "eth1"]), &adopted, &ours),
            want
        );
    }
}
